"""Distributed mode on PostgreSQL: Procrastinate workers in subprocesses against one queue.

Runs only under ``--db postgres`` (SQLite has no distributed mode; ``conftest.py`` leaves this module
out of the collection there). Procrastinate's schema lives in this test's OWN fresh database, never in the shared
test database that ``tests/conftest.py`` truncates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bot import context, jobs
from storage.db import Database, dispose_all
from storage.migrate import upgrade
from tests.conftest import create_pg_database, drop_pg_database
from tests.harness import stop_process as stop
from tests.tasks import pg_tasks  # noqa: F401 - registers the test tasks here too

ROOT = Path(__file__).resolve().parents[2]
BILLBOT = str(Path(sys.executable).with_name("billbot"))


@pytest.fixture(scope="module")
def pg_url(backend) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """One fresh database for this module: our schema, Procrastinate's schema, a runs table."""
    name = f"billbot_jobs_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    url = create_pg_database(name)
    db = Database(url)
    upgrade(db)
    with db.engine.begin() as c:
        c.execute(text("CREATE TABLE test_task_runs (id serial PRIMARY KEY, kind text, n int, phase text, pid int)"))
    assert jobs.apply_schema(url) is True
    assert jobs.apply_schema(url) is False  # idempotent
    yield url
    jobs.close_apps()
    dispose_all()
    drop_pg_database(name)


@pytest.fixture
def pg(pg_url, tmp_path, monkeypatch) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("BILLBOT_MODE", "distributed")
    monkeypatch.delenv("BILLBOT_JOBS", raising=False)
    monkeypatch.setenv("BILLBOT_VAR_DIR", str(tmp_path / "var"))
    context.reset()
    db = Database(pg_url)
    with db.engine.begin() as c:
        c.execute(text("TRUNCATE test_task_runs, procrastinate_jobs, procrastinate_workers RESTART IDENTITY CASCADE"))
    yield db
    jobs.close_apps()
    context.reset()


def start_worker(name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BILLBOT, "worker", "--import", "tests.tasks.pg_tasks", "--queue", "test", "--name", name,
         "--heartbeat", "0.5", "--stalled-after", "2", *extra],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def rows(db: Database, sql: str, **params) -> list:  # type: ignore[no-untyped-def]
    with db.engine.connect() as c:
        return list(c.execute(text(sql), params))


def wait_until(cond, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_two_workers_run_each_submitted_sync_and_billing_run_once(pg):
    assert jobs.mode() == "distributed"
    # the web role submits: jobs land in procrastinate_jobs, nothing runs in this process
    handles = [jobs.submit("test_sync", source="tracker", n=i) for i in range(6)]
    handles += [jobs.submit("test_billing_run", period="2026-02", n=i) for i in range(6)]
    assert all(h.mode == "distributed" and h.id.isdigit() for h in handles)
    assert rows(pg, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")[0][0] == 12

    # two workers (threads here; the kill test below runs `billbot worker` subprocesses)
    errors = []

    def work(name: str) -> None:
        try:
            jobs.run_worker(queues=["test"], name=name, wait=False, heartbeat=0.5, stalled_after=2)
        except Exception as e:  # pragma: no cover - surfaced below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(f"w{i}",)) for i in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert errors == []
    assert rows(pg, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")[0][0] == 12
    runs = rows(pg, "SELECT kind, n, count(*) FROM test_task_runs WHERE phase = 'done' GROUP BY kind, n ORDER BY 1, 2")
    assert runs == [("run", i, 1) for i in range(6)] + [("sync", i, 1) for i in range(6)]
    locks = rows(pg, "SELECT DISTINCT lock FROM procrastinate_jobs ORDER BY 1")
    assert locks[0][0] == "run:2026-02-0" and locks[-1][0] == "sync:tracker-5"
    assert rows(pg, "SELECT count(*) FROM kv WHERE key LIKE 'lock:%'")[0][0] == 0  # every DB lock released


def test_a_worker_killed_mid_task_leaves_the_job_retried_not_lost(pg):
    h = jobs.submit("test_slow", n=1)
    first = start_worker("doomed")
    try:
        wait_until(lambda: rows(pg, "SELECT count(*) FROM test_task_runs WHERE kind='slow' AND phase='start'")[0][0] == 1)
        os.kill(first.pid, signal.SIGKILL)  # no graceful shutdown: the job stays 'doing'
        first.wait(10)
        assert rows(pg, "SELECT status FROM procrastinate_jobs WHERE id = :i", i=int(h.id))[0][0] == "doing"
        time.sleep(2.5)  # longer than --stalled-after: the dead worker's heartbeat is now stale
    finally:
        stop(first)
    # a fresh worker (here in-process) retries the stalled job at start-up, then runs it
    jobs.run_worker(queues=["test"], name="rescuer", wait=False, heartbeat=0.5, stalled_after=2)
    assert rows(pg, "SELECT status FROM procrastinate_jobs WHERE id = :i", i=int(h.id))[0][0] == "succeeded"
    phases = rows(pg, "SELECT phase, count(*), count(DISTINCT pid) FROM test_task_runs WHERE kind='slow' GROUP BY phase ORDER BY 1")
    assert phases == [("done", 1, 1), ("start", 2, 2)]  # started twice (two processes), finished once


def test_schedule_at_defers_a_durable_job(pg):
    from datetime import UTC, datetime, timedelta

    when = datetime.now(UTC) + timedelta(hours=1)
    h = jobs.schedule_at(when, "test_sync", source="adserver", n=99)
    (status, at), = rows(pg, "SELECT status, scheduled_at FROM procrastinate_jobs WHERE id = :i", i=int(h.id))
    assert status == "todo" and abs((at - when).total_seconds()) < 1


def test_two_workers_run_the_real_sync_and_billing_run_each_once(pg, tmp_path, monkeypatch):
    """The real ``sync`` and ``billing_run`` tasks, submitted from the web role, on two workers."""
    from datetime import UTC, datetime

    from bot.signing import load_key
    from bot.workflows.preinvoices import create_preinvoices
    from storage.loader import load_scenario
    from tests.fakes.tracker import FakeTracker
    from tests.sandbox.scenario import PERIOD, scenario

    key_path = tmp_path / "signing_key.pem"
    load_key(str(key_path), generate=True)  # distributed mode never generates one itself
    monkeypatch.setenv("SIGNING_KEY_PATH", str(key_path))
    context.reset()
    load_scenario(pg, scenario())
    create_preinvoices(pg, period=PERIOD, actor="cli:test", key=context.get_key(), now=datetime.now(UTC))
    with FakeTracker(token="t0ken") as tracker:
        tracker.advertisers[17] = {"company": "Autohaus Elbe KG", "country": "DE", "status": "active"}
        for k, v in {"URL": tracker.url, "TOKEN": "t0ken", "KIND": "hasoffers", "TIMEZONE": "Europe/Berlin",
                     "CURRENCY": "EUR", "LEGAL_ENTITY": "northwind-media"}.items():
            monkeypatch.setenv(f"BILLBOT_SOURCE_TRACKER_{k}", v)
        jobs.submit("sync", source="tracker", mode="standard", actor="U01OPERATOR")
        jobs.submit("billing_run", period=PERIOD, actor="U01OPERATOR", today="2026-03-02")
        assert rows(pg, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")[0][0] == 2
        workers = [threading.Thread(target=jobs.run_worker,
                                    kwargs={"queues": ["sync", "billing"], "name": f"real{i}", "wait": False})
                   for i in (1, 2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(90)
    assert rows(pg, "SELECT status, count(*) FROM procrastinate_jobs GROUP BY status") == [("succeeded", 2)]
    assert rows(pg, "SELECT source, mode, state FROM sync_runs") == [("tracker", "standard", "done")]
    assert rows(pg, "SELECT period, state FROM billing_runs") == [(PERIOD, "done")]
    assert rows(pg, "SELECT number FROM invoices ORDER BY number") == [("INV-2026-000001",)]


def test_a_click_acked_by_the_web_role_is_decided_by_a_billbot_worker(pg, tmp_path, monkeypatch):
    """Distributed: the web role only acks and queues the ``decide`` job; a ``billbot worker`` process
    decides it, signs it, and updates the Slack message itself (its own wiring, no web process)."""
    from bot import runtime
    from bot.app import create_app, create_wsgi
    from bot.signing import load_key
    from tests import factories as f
    from tests.conftest import _reset_pg
    from tests.fakes.slack_api import FakeSlackAPI
    from tests.harness import AppServer, SlackUser
    from tests.slack.conftest import SECRET
    from tests.slack.helpers import buttons

    _reset_pg(pg)  # the module's database: the real sync and run above left their master data
    key_path = tmp_path / "signing_key.pem"
    load_key(str(key_path), generate=True)
    with FakeSlackAPI(users=f.PROFILES) as api:
        for k, v in {"SIGNING_KEY_PATH": str(key_path), "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
                     "SLACK_API_URL": api.url, "EXCEPTIONS_CHANNEL": f.CHANNEL}.items():
            monkeypatch.setenv(k, v)
        context.reset()
        server = AppServer(create_wsgi(app=create_app()))
        try:
            f.seed(pg)
            eid = f.open_exception(pg, context.get_key(), preinvoice_id=f.preinvoice(pg))
            posted = api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)[-1]
            value = buttons(posted["blocks"])["decide_approve"]
            row = f.exception_row(pg, eid)
            user = SlackUser(server.url, SECRET, f.APPROVER, response_url=api.response_url(f.APPROVER))
            r = user.click("decide_approve", value, channel=row.channel, message_ts=row.message_ts)
            user.close()
            server.wait_idle()
            assert r.status == 200
            assert rows(pg, "SELECT queue_name, task_name, status FROM procrastinate_jobs") == [
                ("decisions", "decide", "todo")]
            assert f.exception_row(pg, eid).state == "pending"  # nothing decided in the web role
            runtime.reset()  # what the web role posts is done; the worker posts the rest
            worker = subprocess.run(
                [BILLBOT, "worker", "--queue", "decisions", "--once", "--name", "decider"],
                check=False, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                timeout=120)
            assert worker.returncode == 0, worker.stderr
        finally:
            server.stop()
            runtime.reset()
        assert rows(pg, "SELECT status FROM procrastinate_jobs") == [("succeeded",)]
        row = f.exception_row(pg, eid)
        assert (row.state, row.decided_by) == ("approved", f.APPROVER)
        update = api.wait_for("chat.update", where=lambda c: c.get("ts") == row.message_ts)[-1]
        assert buttons(update["blocks"]) == {}
        reply = api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") == row.message_ts)[-1]
        assert reply["text"].startswith(f":white_check_mark: Approved by <@{f.APPROVER}>")


def test_a_worker_killed_mid_billing_run_is_finished_by_the_requeued_job(pg, tmp_path, monkeypatch):
    """``/billing run`` of 1,500 advertisers on a worker that is ``kill -9``-ed midway: the run is split
    into chunks (issue 22), the dead worker's chunk is re-queued and settled by another worker — no 6-hour
    lock, no "busy" — and the run completes with every number once; afterwards the period's lock is free
    for the next ``/billing run``."""
    from datetime import UTC, datetime

    from slack_sdk import WebClient

    from bot.signing import load_key
    from bot.workflows.preinvoices import create_preinvoices
    from tests.factories import load, monthly_advertisers
    from tests.fakes.slack_api import FakeSlackAPI

    key_path = tmp_path / "signing_key.pem"
    load_key(str(key_path), generate=True)
    monkeypatch.setenv("SIGNING_KEY_PATH", str(key_path))
    context.reset()
    n = 1500
    # the module's database keeps what earlier tests billed (another legal entity): look at ours only
    ours = "FROM invoices i JOIN advertisers a ON a.id = i.advertiser_id WHERE left(a.id, 4) = 'adv-'"
    first_run = rows(pg, "SELECT coalesce(max(id), 0) FROM billing_runs")[0][0]
    load(pg, monthly_advertisers(n))
    create_preinvoices(pg, period="2026-02", actor="cli:test", key=context.get_key(), now=datetime.now(UTC))
    with FakeSlackAPI() as api:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_API_URL", api.url)
        posted = WebClient(token="xoxb-test", base_url=api.url).chat_postMessage(channel="CBILLING", text="queued")
        jobs.submit("slack_command", kind="run", channel="CBILLING", ts=str(posted["ts"]), actor="U01OPERATOR",
                    title="Billing run 2026-02", period="2026-02", today="2026-03-02")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = ["worker", "--queue", "default", "--queue", "billing", "--heartbeat", "0.5", "--stalled-after", "2"]
        doomed = subprocess.Popen([BILLBOT, *args, "--name", "doomed"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rescuer = None
        try:
            wait_until(lambda: rows(pg, f"SELECT count(*) {ours}")[0][0] > 0, timeout=120)
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(10)
            killed = time.monotonic()
            done_before = rows(pg, f"SELECT count(*) {ours}")[0][0]
            assert 0 < done_before < n, "the run was not killed midway"
            time.sleep(2.5)  # the dead worker's heartbeat is stale: the clock's sweep re-queues its job
            assert jobs.retry_stalled_jobs(seconds_since_heartbeat=2)
            rescuer = subprocess.Popen([BILLBOT, *args, "--name", "rescuer"], cwd=ROOT, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: rows(pg, "SELECT state FROM billing_runs WHERE id > :r ORDER BY id", r=first_run)
                       == [("done",)], timeout=120)
            assert time.monotonic() - killed < 120
            # the run's progress message shows all chunks' progress; the last chunk posts the summary
            ts = str(posted["ts"])

            def says(c, *parts: str) -> bool:  # type: ignore[no-untyped-def]
                text_ = json.dumps(c.get("blocks"), ensure_ascii=False)
                return c.get("ts") == ts and all(x in text_ for x in parts)

            # (the module's database may hold an advertiser of an earlier test with February to bill: the
            # chunk count and the total come from this run's own row and invoices, not from ``n``)
            (run_id, plan), = rows(pg, "SELECT id, summary FROM billing_runs WHERE id > :r", r=first_run)
            chunks = (plan if isinstance(plan, dict) else json.loads(plan))["distributed"]["chunks"]
            created = rows(pg, "SELECT count(*) FROM invoices WHERE billing_run_id = :r", r=run_id)[0][0]
            assert chunks >= n // 100 and created >= n
            api.wait_for("chat.update", where=lambda c: says(c, "— running", f"/{chunks} chunks)"))
            api.wait_for("chat.update", where=lambda c: says(c, "— done", f"{created} invoice(s) created"))
        finally:
            stop(doomed)
            if rescuer is not None:
                stop(rescuer)
    numbers = [r[0] for r in rows(pg, f"SELECT i.number {ours} ORDER BY i.number")]
    assert numbers == [f"INV-2026-{i:06d}" for i in range(1, n + 1)]
    assert rows(pg, "SELECT count(*) FROM preinvoices WHERE left(advertiser_id, 4) = 'adv-' AND state <> 'invoiced'")[0][0] == 0
    assert rows(pg, "SELECT count(*) FROM kv WHERE key LIKE 'lock:%'")[0][0] == 0
    jobs.release_lock("run:2026-02", jobs.acquire_lock("run:2026-02", holder="next /billing run"))
