"""Tasks for the distributed tests: each run is recorded in ``test_task_runs`` (made by the test in its
own database), so the test can count how often a job really ran, and in which worker process."""

from __future__ import annotations

import os
import time

from sqlalchemy import text

from bot.tasks.registry import task


def _record(kind: str, n: int, phase: str) -> int:
    from bot import context

    with context.get_db().transaction() as s:
        s.execute(text("INSERT INTO test_task_runs (kind, n, phase, pid) VALUES (:k, :n, :p, :pid)"),
                  {"k": kind, "n": n, "p": phase, "pid": os.getpid()})
        return int(s.execute(text("SELECT count(*) FROM test_task_runs WHERE kind = :k AND n = :n AND phase = 'start'"),
                             {"k": kind, "n": n}).scalar_one())


@task("test_sync", queue="test", lock=lambda kw: f"sync:{kw.get('source')}-{kw.get('n')}")
def test_sync(*, source: str, n: int) -> None:
    _record("sync", n, "start")
    time.sleep(0.05)
    _record("sync", n, "done")


@task("test_billing_run", queue="test", lock=lambda kw: f"run:{kw.get('period')}-{kw.get('n')}")
def test_billing_run(*, period: str, n: int) -> None:
    _record("run", n, "start")
    time.sleep(0.05)
    _record("run", n, "done")


@task("test_slow", queue="test")
def test_slow(*, n: int) -> None:
    """The first attempt hangs (the test kills its worker); a retry finishes quickly."""
    attempt = _record("slow", n, "start")
    time.sleep(60 if attempt == 1 else 0.05)
    _record("slow", n, "done")
