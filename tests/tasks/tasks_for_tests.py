"""Tasks registered by the jobs tests (importable, so process-pool children and workers find them)."""

from __future__ import annotations

import os
import threading
import time

from bot.tasks.registry import task

RUNS: list[tuple[str, dict]] = []
GATE = threading.Event()


@task("test_echo", lock=lambda kw: f"echo:{kw.get('key', 'x')}")
def echo(*, value: str, key: str = "x") -> str:
    RUNS.append(("test_echo", {"value": value}))
    return value * 2


@task("test_wait", lock=lambda kw: "wait")
def wait(*, seconds: float = 5.0) -> str:
    GATE.wait(seconds)
    return "waited"


@task("test_boom")
def boom() -> None:
    raise ValueError("boom")


@task("test_pid", queue="documents", own_process=True)
def pid() -> dict:
    from bot import context

    return {"pid": os.getpid(), "db": context.get_db().url, "t": time.time(), "niceness": os.nice(0)}


@task("test_niceness", queue="decisions", own_process=True)
def niceness(*, queue_name: str) -> dict:
    return {"pid": os.getpid(), "queue": queue_name, "niceness": os.nice(0)}
