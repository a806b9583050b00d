"""The task registry: every piece of background work billbot runs, by name.

A task is a plain function taking JSON-able keyword arguments (they travel through Procrastinate's
``procrastinate_jobs.args`` in distributed mode). The registry imports nothing of the project: the
task modules (:mod:`bot.tasks`) register themselves with :func:`task`, the jobs facade
(:mod:`bot.jobs`) looks them up with :func:`get_task`, and handlers submit them by name.

``@task("name", queue=…, own_process=…, retry=…, lock=…)`` registers a function; ``lock`` maps the
arguments to a per-key lock (``sync:tracker``, ``run:2026-02``) that :mod:`bot.jobs` holds in the
database while the task runs, so the key is exclusive across threads, processes and machines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

LockFn = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    fn: Callable[..., Any]
    queue: str = "default"
    # embedded mode runs it in its queue's process pool, away from the web server's GIL (CPU-heavy
    # work, and the work after a Slack ack); distributed mode runs every task on a worker anyway
    own_process: bool = False
    retry: int = 0  # Procrastinate retries (distributed); embedded mode does not retry
    lock: LockFn | None = None


class UnknownTask(LookupError):
    """No task is registered under this name."""


TASKS: dict[str, TaskSpec] = {}


def task(
    name: str, *, queue: str = "default", own_process: bool = False, retry: int = 0, lock: LockFn | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as task ``name`` (re-registering the same name replaces it)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        TASKS[name] = TaskSpec(name=name, fn=fn, queue=queue, own_process=own_process, retry=retry, lock=lock)
        return fn

    return deco


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise UnknownTask(f"unknown task {name!r} (known: {known})") from None


def plain(o: Any) -> Any:
    """A JSON-able copy of a workflow result (dataclasses, Decimal, dates)."""
    if is_dataclass(o) and not isinstance(o, type):
        return plain(asdict(o))
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, Mapping):
        return {str(k): plain(v) for k, v in o.items()}
    if isinstance(o, list | tuple | set | frozenset):
        return [plain(v) for v in o]
    if o is None or isinstance(o, str | int | float | bool):
        return o
    return repr(o)
