"""A crashed run does not block billing (issue 16 item 7).

- ``kill -9`` of ``billbot run`` midway; the next ``billbot run`` right away takes the run over (its process
  is gone) and completes it: every pre-invoice invoiced once, numbers without a gap;
- a run on another machine is taken over once its heartbeat is older than 60 s, and refused before;
- a running run keeps its heartbeat fresh from a thread, between chunks too;
- jobs locks are leases: renewed while held, taken over after a minute without renewal or at once when
  the holder's process is gone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from billing.errors import Conflict
from bot import jobs
from bot.workflows import billing_run
from bot.workflows.billing_run import run_billing
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.models import AuditLog, BillingRun, Invoice, InvoiceLine, PreInvoice, Setting
from tests.factories import OPERATOR, add_user, load, monthly_advertisers

ROOT = Path(__file__).resolve().parents[2]
BILLBOT = str(Path(sys.executable).with_name("billbot"))
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
N = 1000


def _invoices(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Invoice)) or 0)


def _assert_complete(db: Database, n: int) -> None:
    with db.read() as s:
        numbers = sorted(s.execute(select(Invoice.number)).scalars())
        assert numbers == [f"INV-2026-{i:06d}" for i in range(1, n + 1)]  # no gap, no duplicate
        dup = s.execute(select(InvoiceLine.preinvoice_line_id, func.count()).group_by(InvoiceLine.preinvoice_line_id)
                        .having(func.count() > 1)).all()
        assert dup == []
        assert {p.state for p in s.execute(select(PreInvoice)).scalars()} == {"invoiced"}


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_kill_9_midway_then_billbot_run_completes_the_run(db: Database, key: Any, backend: str) -> None:
    load(db, monthly_advertisers(N))
    add_user(db, OPERATOR, ["operator"])  # `billbot run` acts as a known operator (BILLBOT_USER)
    create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([BILLBOT, "run", "--period", "2026-02", "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _invoices(db) == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    killed_at = time.monotonic()
    done_before = _invoices(db)
    assert 0 < done_before < N, "the run was not killed midway"
    with db.read() as s:
        assert s.execute(select(BillingRun.state)).scalar_one() == "running"  # left behind by the dead process

    r = subprocess.run([BILLBOT, "run", "--period", "2026-02", "--json"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - killed_at < 60
    _assert_complete(db, N)
    with db.read() as s:
        states = list(s.execute(select(BillingRun.state).order_by(BillingRun.id)).scalars())
        assert states == ["failed", "done"]
        assert s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "billing_run.abandoned")) == 1


def _running_elsewhere(db: Database, beat: datetime) -> None:
    with db.transaction() as s:
        s.add(BillingRun(period="2026-02", period_start=date(2026, 2, 1), period_end=date(2026, 2, 28),
                         state="running", started_by="U9", started_at=beat,
                         summary={"heartbeat": beat.isoformat(), "holder": {"host": "another-host", "pid": 1}},
                         lock_key="billing:2026-02-01..2026-02-28"))


def test_a_run_on_another_host_is_taken_over_after_60_seconds_without_heartbeat(db: Database, key: Any) -> None:
    load(db, monthly_advertisers(2))
    create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)
    now = datetime.now(UTC)
    _running_elsewhere(db, now - timedelta(seconds=30))
    with pytest.raises(Conflict, match="already running"):
        run_billing(db, period="2026-02", actor="cli:op", key=key, today=date(2026, 3, 1), now=now)
    with db.transaction() as s:
        run = s.get(BillingRun, 1)
        assert run is not None
        run.summary = {**run.summary, "heartbeat": (now - timedelta(seconds=61)).isoformat()}
    r = run_billing(db, period="2026-02", actor="cli:op", key=key, today=date(2026, 3, 1), now=now)
    assert r.created == ["INV-2026-000001", "INV-2026-000002"]


def test_a_running_run_beats_between_chunks(db: Database, key: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    load(db, monthly_advertisers(2))
    create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)
    monkeypatch.setattr(billing_run, "HEARTBEAT_EVERY", 0.05)
    monkeypatch.setattr(billing_run, "CHUNK_SIZE", 1)
    beats: list[str] = []
    real = billing_run.settle_advertisers

    def slow(*a: Any, **kw: Any) -> Any:
        time.sleep(0.3)  # a long chunk: the heartbeat thread must beat meanwhile
        with db.read() as s:
            beats.append(s.execute(select(BillingRun.summary)).scalar_one()["heartbeat"])
        return real(*a, **kw)

    monkeypatch.setattr(billing_run, "settle_advertisers", slow)
    run_billing(db, period="2026-02", actor="cli:op", key=key, today=date(2026, 3, 1))
    assert len(set(beats)) == len(beats) == 2  # each chunk saw a newer beat than the run's start


def test_locks_are_leases_renewed_by_their_holder(db: Database) -> None:
    ttl = timedelta(seconds=0.4)
    with jobs.lock("run:2026-10", holder="worker-1", ttl=ttl):
        time.sleep(1.0)  # more than twice the lease: renewed meanwhile
        assert jobs.is_locked("run:2026-10")
        with pytest.raises(Conflict, match="busy"):
            jobs.acquire_lock("run:2026-10", holder="worker-2")
    assert not jobs.is_locked("run:2026-10")


def test_a_dead_holders_lock_is_taken_over_within_a_minute(db: Database) -> None:
    t0 = datetime.now(UTC)
    # a worker on another machine took it and died: its lease ends 60 s later
    jobs.acquire_lock("run:2026-10", holder="worker-dead", now=t0)
    with pytest.raises(Conflict):
        jobs.acquire_lock("run:2026-10", holder="worker-2", now=t0 + timedelta(seconds=30))
    assert jobs.acquire_lock("run:2026-10", holder="worker-2", now=t0 + timedelta(seconds=61))
    # a process of this machine that is gone: taken over at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with db.transaction() as s:
        row = s.get(Setting, "lock:sync:x")
        value = {"token": "t", "holder": "gone", "since": t0.isoformat(),
                 "expires": (t0 + timedelta(hours=1)).isoformat(),
                 "process": {"host": socket.gethostname(), "pid": dead.pid}}
        if row is None:
            s.add(Setting(key="lock:sync:x", value=json.dumps(value)))
    assert jobs.acquire_lock("sync:x", holder="me")


def test_a_requeued_job_reclaims_what_its_dead_attempt_held(db: Database, key: Any) -> None:
    """On another machine the dead worker's pid cannot be checked; the queue hands a job out again only
    when its worker stopped heartbeating, so the same job's holder is reclaimed at once."""
    t0 = datetime.now(UTC)
    jobs.acquire_lock("run:2026-02", holder="slack:U1:C1:1.1", now=t0)
    with db.transaction() as s:  # as if taken on another host
        row = s.get(Setting, "lock:run:2026-02")
        assert row is not None
        row.value = json.dumps({**json.loads(row.value), "process": {"host": "another-host", "pid": 1}})
    with pytest.raises(Conflict):
        jobs.acquire_lock("run:2026-02", holder="slack:U2:C1:2.2", reclaim=True)  # another command: refused
    assert jobs.acquire_lock("run:2026-02", holder="slack:U1:C1:1.1", reclaim=True)

    load(db, monthly_advertisers(1))
    create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)
    _running_elsewhere(db, datetime.now(UTC))
    with db.transaction() as s:
        run = s.get(BillingRun, 1)
        assert run is not None
        run.summary = {**run.summary, "job": "slack:U1:C1:1.1"}
    with pytest.raises(Conflict, match="already running"):
        run_billing(db, period="2026-02", actor="cli:op", key=key, today=date(2026, 3, 1), job="slack:U2:C1:2.2")
    r = run_billing(db, period="2026-02", actor="cli:op", key=key, today=date(2026, 3, 1), job="slack:U1:C1:1.1")
    assert r.created == ["INV-2026-000001"]
