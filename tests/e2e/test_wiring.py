"""Every process tells Slack what it did, once: real ``billbot`` processes against a fake Slack Web API
over HTTP, no sandbox involved.

The billing desk of tests/slack/desk.py (four advertisers, Kiosk Alster below its threshold each month):

1. ``billbot run`` from the CLI, with Slack settings in its environment, opens Kiosk Alster's
   below-threshold exception: the CLI posts its message itself, once. Its three invoices' PDFs wait
   (a CLI in embedded mode has no worker that outlives it).
2. A worker process (wired ``worker``, running the ``billing_run`` task) opens March's exception while
   Slack answers 500: its message is missing.
3. ``billbot serve`` starts in HTTP mode with its clock: the clock fires a schedule (April's billing
   run for Kiosk April, a third exception, posted by the serving process), and the sweep at start-up
   posts March's missing message and renders the CLI run's PDFs.

(Each run names its own small kiosk, so no skip supersedes another.)

Each exception ends with exactly one channel message; every invoice has its PDF.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

from storage.db import Database
from storage.models import BillingException, Invoice, Schedule
from tests.fakes.slack_api import FakeSlackAPI
from tests.slack.desk import EXC_CHANNEL, PROFILES, scenario

ROOT = Path(__file__).resolve().parents[2]
BILLBOT = str(Path(sys.executable).with_name("billbot"))
SECRET = "e2e-wiring-signing-secret-000001"


def _small_kiosk(month: str, first: str, last: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A kiosk whose one month of 100.00 EUR stays under its 250.00 EUR threshold."""
    adv = f"kiosk-{month}"
    advertiser = {"id": adv, "name": f"Kiosk {month.title()}", "legal_entity": "northwind-media", "currency": "EUR",
                  "country": "DE", "vat_id": "DE136695976", "billing_threshold": "250.00",
                  "address": "Elbchaussee 12, 22763 Hamburg"}
    campaign = {"id": f"{adv}-banner", "advertiser": adv, "name": "Banner", "payment_interval": "monthly",
                "start": first, "end": last,
                "items": [{"id": f"{adv}-item", "description": "Banner placement", "billing": "linear",
                           "unit": "amount", "period": "day_based", "amount": "100.00"}]}
    return advertiser, campaign


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _billbot(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([BILLBOT, *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"billbot {' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r


def _exceptions(db: Database) -> list[BillingException]:
    with db.read() as s:
        rows = list(s.execute(select(BillingException).order_by(BillingException.id)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def _pdf_states(db: Database) -> dict[str, str]:
    with db.read() as s:
        return {str(n): str(st) for n, st in s.execute(select(Invoice.number, Invoice.pdf_state))}


def _top_level_posts(api: FakeSlackAPI) -> list[Any]:
    return [c for c in api.calls_to("chat.postMessage")
            if c.params.get("channel") == EXC_CHANNEL and not c.params.get("thread_ts")]


def _wait_until(check: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            said = log.read_text(errors="replace")[-4000:] if log is not None else ""
            raise AssertionError(f"timed out waiting for {what}\n{said}")
        time.sleep(0.25)


@pytest.mark.slow
def test_cli_worker_and_clock_each_post_their_exceptions_once_and_the_sweep_repairs_the_rest(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BILLBOT_JOBS", raising=False)
    world = scenario()
    for adv, campaign in (_small_kiosk("maerz", "2026-03-01", "2026-03-31"),
                          _small_kiosk("april", "2026-04-01", "2026-04-30")):
        world["advertisers"].append(adv)
        world["campaigns"].append(campaign)
    path = tmp_path / "desk.yaml"
    path.write_text(yaml.safe_dump(world, allow_unicode=True), encoding="utf-8")

    with FakeSlackAPI(users=PROFILES) as api:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-e2e", "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": api.url, "EXCEPTIONS_CHANNEL": EXC_CHANNEL}
        env.pop("BILLBOT_JOBS", None)
        _billbot(env, "load", str(path))
        _billbot(env, "preinvoices", "create", "--period", "2026-02")
        _billbot(env, "preinvoices", "create", "--period", "2026-03")
        _billbot(env, "preinvoices", "create", "--period", "2026-04")

        # 1. the CLI posts what it opened, with the Slack settings of its environment
        _billbot(env, "run", "--period", "2026-02", "--json")
        [feb] = _exceptions(db)
        assert feb.kind == "below_threshold" and feb.message_ts is not None
        assert len(_top_level_posts(api)) == 1
        assert set(_pdf_states(db).values()) == {"pending"}  # no worker outlives the CLI: the sweep queues them

        # 2. a worker opens March's exception while Slack is down: the message is missing afterwards
        api.fail_next("chat.postMessage", status=500, times=3)  # the client's retries run out
        worker = subprocess.run(
            [sys.executable, "-c", "from bot import jobs, runtime; runtime.wire('worker'); "
             "print(jobs.run_task('billing_run', {'period': '2026-03', 'advertisers': ['kiosk-maerz']}))"],
            check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert worker.returncode == 0, worker.stderr
        march = [e for e in _exceptions(db) if e.id != feb.id]
        assert [e.message_ts for e in march] == [None]
        assert len(_top_level_posts(api)) == 1

        # 3. the clock of `billbot serve` fires April's run; its start-up sweep posts March and renders the PDFs
        _billbot(env, "schedule", "add", "--task", "billing_run", "--cron", "* * * * *", "--arg", "period=2026-04",
                 "--arg", "advertisers=kiosk-april")
        with db.transaction() as s:  # added before `billbot serve` was down: its missed minute is caught up at start
            s.execute(update(Schedule).values(created_at=datetime.now(UTC) - timedelta(minutes=5)))
        port = _free_port()
        log = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would stall the server
        with log.open("w") as out:
            serve = subprocess.Popen([BILLBOT, "serve", "--no-browser", "--port", str(port)], cwd=ROOT, env=env,
                                     stdout=out, stderr=subprocess.STDOUT, text=True)
            try:
                _wait_until(lambda: len(_exceptions(db)) == 3 and all(e.message_ts for e in _exceptions(db)), 90,
                            "three exceptions, each with its message", log)
                _wait_until(lambda: set(_pdf_states(db).values()) == {"done"}, 90, "every invoice's PDF", log)
                time.sleep(1.0)  # a double post would arrive now
            finally:
                serve.send_signal(signal.SIGINT)
                try:
                    serve.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    serve.kill()
                    serve.wait()

    rows = _exceptions(db)
    posts = _top_level_posts(api)
    assert len(posts) == len(rows) == 3
    assert len({e.message_ts for e in rows}) == 3
    assert {e.period_end.isoformat()[:7] for e in rows if e.period_end} == {"2026-02", "2026-03", "2026-04"}
    assert {e.advertiser_id for e in rows} == {"kiosk-alster", "kiosk-maerz", "kiosk-april"}
    assert {e.state for e in rows} == {"pending"}
    assert len(_pdf_states(db)) == 3  # February's three advertisers above their thresholds


@pytest.mark.slow
def test_a_cli_run_in_distributed_mode_posts_its_exception_and_queues_its_pdfs_to_the_workers(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend != "postgres":
        pytest.skip("distributed mode (Procrastinate workers) runs on PostgreSQL")
    from sqlalchemy import text

    from bot import context, jobs
    from bot.signing import load_key
    from storage.db import dispose_all
    from storage.migrate import upgrade
    from tests.conftest import create_pg_database, drop_pg_database

    name = f"billbot_e2e_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"  # Procrastinate's schema stays in it
    url = create_pg_database(name)
    db = Database(url)
    try:
        upgrade(db)
        jobs.apply_schema(url)
        key_path = tmp_path / "signing_key.pem"
        load_key(str(key_path), generate=True)
        path = tmp_path / "desk.yaml"
        path.write_text(yaml.safe_dump(scenario(), allow_unicode=True), encoding="utf-8")
        with FakeSlackAPI(users=PROFILES) as api:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url, "SIGNING_KEY_PATH": str(key_path),
                   "BILLBOT_VAR_DIR": str(tmp_path / "var"), "BILLBOT_MODE": "distributed",
                   "SLACK_BOT_TOKEN": "xoxb-e2e", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": api.url,
                   "EXCEPTIONS_CHANNEL": EXC_CHANNEL}
            env.pop("BILLBOT_JOBS", None)
            _billbot(env, "load", str(path))
            _billbot(env, "preinvoices", "create", "--period", "2026-02")
            _billbot(env, "run", "--period", "2026-02", "--json")
            [exc] = _exceptions(db)
            assert exc.message_ts is not None and len(_top_level_posts(api)) == 1
            with db.engine.connect() as c:
                queued = c.execute(text("SELECT task_name, status FROM procrastinate_jobs ORDER BY id")).all()
            assert [tuple(r) for r in queued] == [("render_pdf", "todo")] * 3  # the CLI queued them to the workers
            _billbot(env, "worker", "--once", "--name", "e2e-worker")
            assert set(_pdf_states(db).values()) == {"done"}
            with db.engine.connect() as c:
                assert c.execute(text("SELECT DISTINCT status FROM procrastinate_jobs")).scalars().all() == ["succeeded"]
            assert len(_top_level_posts(api)) == 1
    finally:
        db.engine.dispose()
        jobs.close_apps()
        dispose_all()
        context.reset()
        drop_pg_database(name)


@pytest.mark.parametrize(("api_url", "posts"), [("https://slack.com/api/", False), ("http://127.0.0.1:9/api/", True)])
def test_a_worker_without_a_token_posts_only_to_a_sandbox_or_a_local_fake(
        monkeypatch: pytest.MonkeyPatch, api_url: str, posts: bool) -> None:
    """No SLACK_BOT_TOKEN: a worker does not call real Slack with a made-up token (a round trip per message
    that can only be refused, and traffic off the machine), but it does post to a sandbox."""
    from bot import context, runtime

    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("SLACK_API_URL", api_url)
    context.reset()
    try:
        wiring = runtime.wire("worker")
        assert (wiring.slack.client is not None) is posts
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-real")
        context.reset()
        assert runtime.wire("worker").slack.client is not None  # with a token: always
    finally:
        runtime.reset()
        context.reset()
