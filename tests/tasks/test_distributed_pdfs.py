"""Distributed mode (PostgreSQL + Procrastinate): `/billing run` from Slack is a queued job; a worker wired
like `billbot worker` runs it, each finalized invoice queues a `render_pdf` job, and the worker that renders
a PDF uploads it into the run's thread (capped).

Procrastinate's schema lives in this module's own database (never in the shared, truncated test database).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from bot import context, jobs
from storage.db import Database, dispose_all
from storage.migrate import upgrade
from tests.conftest import create_pg_database, drop_pg_database
from tests.slack.desk import OPERATOR, PERIOD, Desk, open_desk


@pytest.fixture
def distributed(key: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    name = f"billbot_delivery_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    url = create_pg_database(name)
    db = Database(url)
    upgrade(db)
    assert jobs.apply_schema(url) is True
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BILLBOT_MODE", "distributed")
    context.reset()
    try:
        with open_desk(db, key, monkeypatch, jobs=None) as d:
            yield d
    finally:
        jobs.close_apps()
        dispose_all()
        drop_pg_database(name)


def _work() -> None:
    """One worker pass over the queue, in a thread (as test_distributed does), until it is empty."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            jobs.run_worker(name="delivery", wait=False, heartbeat=0.5, stalled_after=5)
        except BaseException as e:  # surfaced below  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(90)
    assert not t.is_alive() and errors == []


def test_a_worker_runs_the_slack_run_renders_each_pdf_as_a_job_and_uploads_into_the_runs_thread(
        distributed: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import runtime

    desk = distributed
    assert jobs.mode() == "distributed"
    monkeypatch.setattr("bot.slack.invoice_pdfs.RUN_UPLOAD_CAP", 2)
    assert desk.as_user(OPERATOR).command(f"run {PERIOD}").status == 200
    desk.wait()
    with desk.db.engine.connect() as c:
        queued = c.execute(text("SELECT task_name FROM procrastinate_jobs WHERE status = 'todo'")).scalars().all()
    assert queued == ["slack_command"]  # the web role only queued the run
    assert desk.invoices() == {}

    runtime.wire("worker")  # what `billbot worker` does before it starts
    _work()
    with desk.db.engine.connect() as c:
        done = c.execute(text("SELECT task_name, status FROM procrastinate_jobs ORDER BY id")).all()
    assert [tuple(r) for r in done] == [("slack_command", "succeeded")] + [("render_pdf", "succeeded")] * 3
    invoices = desk.invoices()
    assert {i.pdf_state for i in invoices.values()} == {"done"}
    channel, ts = desk.run_message()
    uploads = desk.uploads()
    first_two = sorted(invoices.values(), key=lambda i: i.id)[:2]
    assert [(u["filename"], u["channel"], u["thread_ts"]) for u in uploads] == [
        (f"{i.number}.pdf", channel, ts) for i in first_two]
    assert all(u["data"].startswith(b"%PDF") for u in uploads)
    third = sorted(invoices.values(), key=lambda i: i.id)[2].number
    assert desk.thread_texts(channel, ts) == [f"… and 1 more — `billbot invoices pdf NUMBER -o FILE` ({third})"]
