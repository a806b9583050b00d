"""A billing run that scales out (issue 22): on PostgreSQL its chunks are settled by any number of
``billbot worker`` processes in parallel; a worker killed mid-chunk loses nothing.

Runs only under ``--db postgres`` (``tests/tasks/conftest.py``). Procrastinate's schema lives in this
module's own fresh database, never in the shared test database that ``tests/conftest.py`` truncates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot import context, jobs
from bot.signing import load_key
from bot.workflows.audit import verify_chain
from bot.workflows.billing_run import CHUNK_SIZE
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database, dispose_all
from storage.migrate import upgrade
from tests.conftest import create_pg_database, drop_pg_database
from tests.factories import advertiser, campaign, entity, linear, load, scenario
from tests.harness import stop_process as stop

ROOT = Path(__file__).resolve().parents[2]
BILLBOT = str(Path(sys.executable).with_name("billbot"))
N = 5 * CHUNK_SIZE  # five chunks, advertisers of two legal entities (two number series) in every chunk


@pytest.fixture
def pg(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    name = f"billbot_scaleout_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    url = create_pg_database(name)
    db = Database(url)
    upgrade(db)
    assert jobs.apply_schema(url) is True
    key_path = tmp_path / "signing_key.pem"
    load_key(str(key_path), generate=True)  # distributed mode never generates one itself
    for k, v in {"DATABASE_URL": url, "BILLBOT_MODE": "distributed", "SIGNING_KEY_PATH": str(key_path),
                 "BILLBOT_VAR_DIR": str(tmp_path / "var")}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("BILLBOT_JOBS", raising=False)
    context.reset()
    try:
        yield db
    finally:
        jobs.close_apps()
        context.reset()
        dispose_all()
        drop_pg_database(name)


def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    with db.engine.connect() as c:
        return [tuple(r) for r in c.execute(text(sql), params)]


def wait_until(cond: Any, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def worker(name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [BILLBOT, "worker", "--queue", "billing", "--name", name, "--heartbeat", "0.5", "--stalled-after", "2"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def two_entities(n: int) -> dict[str, Any]:
    les = ["northwind", "southwind"]
    return scenario(
        entities=[entity("northwind"), entity("southwind", series="SW-{year}-{seq:06d}")],
        advertisers=[advertiser(f"adv-{i:04d}", f"Autohaus {i:04d}", le=les[i % 2]) for i in range(n)],
        campaigns=[campaign(f"c-{i:04d}", f"adv-{i:04d}", [linear(f"i-{i:04d}", "12000.00", period="even")])
                   for i in range(n)])


def test_two_workers_settle_the_chunks_and_one_killed_mid_chunk_loses_nothing(pg: Database) -> None:
    load(pg, two_entities(N))
    create_preinvoices(pg, period="2026-02", actor="cli:test", key=context.get_key(), now=datetime.now(UTC))
    with pg.engine.begin() as c:  # the sequences exist, so the test can hold them
        c.execute(text("INSERT INTO number_sequences (legal_entity_id, series, year, last_seq) VALUES "
                       "('northwind', 'INV-{year}-{seq:06d}', 2026, 0), ('southwind', 'SW-{year}-{seq:06d}', 2026, 0)"))
    h = jobs.submit("billing_run", period="2026-02", actor="U01OPERATOR", today="2026-03-02")
    assert h.mode == "distributed"

    # the test holds both sequence rows: each worker builds its chunk's invoices, then waits to number them
    holder = pg.engine.connect()
    tx = holder.begin()
    holder.execute(text("SELECT * FROM number_sequences FOR UPDATE"))
    w1, w2 = worker("w1"), worker("w2")
    rescued: list[int] = []
    try:
        wait_until(lambda: rows(pg, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'billing_chunk' "
                                    "AND status = 'doing'")[0][0] == 2
                   and rows(pg, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND query ILIKE '%number_sequences%'")[0][0] == 2)
        assert rows(pg, "SELECT count(*) FROM invoices") == [(0,)]  # both mid-chunk, nothing committed
        os.kill(w1.pid, signal.SIGKILL)  # no graceful shutdown: its chunk's job stays 'doing'
        w1.wait(10)
        tx.rollback()
        holder.close()
        time.sleep(2.5)  # longer than --stalled-after: w1's heartbeat is stale
        rescued = jobs.retry_stalled_jobs(seconds_since_heartbeat=2)  # what the clock's sweep does
        assert len(rescued) == 1
        wait_until(lambda: rows(pg, "SELECT state FROM billing_runs") == [("done",)])
    finally:
        if not rescued:
            holder.close()
        stop(w1)
        stop(w2)

    # every advertiser billed once, numbers gapless per legal entity and series
    assert rows(pg, "SELECT count(*), count(DISTINCT advertiser_id) FROM invoices") == [(N, N)]
    assert rows(pg, "SELECT count(*) FROM preinvoices WHERE state <> 'invoiced'") == [(0,)]
    for le, series in (("northwind", "INV"), ("southwind", "SW")):
        numbers = [r[0] for r in rows(pg, "SELECT number FROM invoices WHERE legal_entity_id = :le ORDER BY seq",
                                      le=le)]
        assert numbers == [f"{series}-2026-{i:06d}" for i in range(1, N // 2 + 1)]
    assert rows(pg, "SELECT legal_entity_id, last_seq FROM number_sequences ORDER BY 1") == [
        ("northwind", N // 2), ("southwind", N // 2)]
    # five chunks, each settled once: the killed worker's chunk by the job re-queued for it
    assert rows(pg, "SELECT task_name, status FROM procrastinate_jobs WHERE id = :i", i=rescued[0]) == [
        ("billing_chunk", "succeeded")]
    assert rows(pg, "SELECT task_name, status, count(*) FROM procrastinate_jobs WHERE queue_name = 'billing' "
                    "GROUP BY 1, 2 ORDER BY 1") == [("billing_chunk", "succeeded", 5), ("billing_run", "succeeded", 1)]
    with pg.read() as s:
        from storage.models import BillingRun

        run = s.query(BillingRun).one()
        assert (run.lock_key, run.summary["done"], run.summary["total"], run.summary["created"]) == (None, N, N, N)
        assert sorted(run.summary["chunks_done"]) == list(range(5))
        assert verify_chain(s, context.get_key().public_key()).ok  # chunks audited in parallel: one chain
    created = rows(pg, "SELECT count(*), count(DISTINCT message) FROM job_log WHERE message LIKE 'Document %'")
    assert created == [(N, N)]  # one "created" line per invoice: the killed attempt left none
