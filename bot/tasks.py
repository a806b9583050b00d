"""The task registry: every piece of background work billbot runs, by name.

A task is a plain function taking JSON-able keyword arguments (they travel through Procrastinate's
``procrastinate_jobs.args`` in distributed mode). It fetches the database and signing key from
:mod:`bot.context` and calls ONE workflow. Workflow imports are lazy (inside the function) so this
registry imports fast and without the whole application.

``@task("name", queue=…, own_process=…, retry=…, lock=…)`` registers a function; ``lock`` maps the
arguments to a per-key lock (``sync:tracker``, ``run:2026-02``) that :mod:`bot.jobs` holds in the
database while the task runs, so the key is exclusive across threads, processes and machines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

log = logging.getLogger(__name__)

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
    from billing.errors import NotFound

    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise NotFound(f"unknown task {name!r} (known: {known})") from None


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


def _ctx() -> tuple[Any, Any]:
    from bot import context

    return context.get_db(), context.get_key()


def _today(value: str | None) -> date:
    if value:
        return date.fromisoformat(value)
    from bot.settings import get_settings

    return datetime.now(get_settings().tz).date()


def _now(value: str | None) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC) if value else datetime.now(UTC)


# --------------------------------------------------------------------------- the tasks


@task("sync", queue="sync", retry=2, lock=lambda kw: f"sync:{kw.get('source')}")
def sync(*, source: str, mode: str = "standard", actor: str = "scheduler") -> Any:
    """One sync of ``source`` (standard or partial); one at a time per source."""
    from bot.workflows.sync import run_sync  # type: ignore[import-not-found,unused-ignore]

    db, key = _ctx()
    return plain(run_sync(db, source=source, mode=mode, actor=actor, signing_key=key))


@task("billing_run", queue="billing", lock=lambda kw: f"run:{kw.get('period')}")
def billing_run(
    *, period: str, advertisers: list[str] | None = None, actor: str = "scheduler", today: str | None = None
) -> Any:
    """A billing run for ``period`` (``2026-02``, ``2026-W07``, ``2026-Q1``); one at a time per period.
    ``period`` may be ``previous_month`` (what a monthly schedule stores)."""
    from bot.workflows.billing_run import run_billing  # type: ignore[import-not-found,unused-ignore]

    db, key = _ctx()
    day = _today(today)
    return plain(
        run_billing(db, period=resolve_period(period, day), advertisers=advertisers or [], actor=actor,
                    key=key, today=day)
    )


def resolve_period(period: str, today: date) -> str:
    """Schedules store relative periods: ``previous_month`` / ``current_month`` → ``YYYY-MM``."""
    if period == "current_month":
        return f"{today.year:04d}-{today.month:02d}"
    if period == "previous_month":
        y, m = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        return f"{y:04d}-{m:02d}"
    return period


@task("render_pdf", queue="documents", own_process=True, retry=2, lock=lambda kw: f"pdf:{kw.get('invoice_id')}")
def render_pdf(*, invoice_id: int) -> Any:
    """Render (or re-render) the PDF of one invoice: CPU-heavy, so a process pool in embedded mode.
    The process that renders also delivers: its ``invoice.rendered`` uploads the PDF into the Slack
    thread the invoice was finalized from, if any (:mod:`bot.workflows.delivery`)."""
    from bot import context
    from bot.slack_client import get_client
    from bot.workflows.delivery import listen
    from bot.workflows.documents import render_invoice_pdf  # type: ignore[import-not-found,unused-ignore]

    listen(get_client, get_db=context.get_db, get_key=context.get_key, replace=False)
    db, key = _ctx()
    return plain(render_invoice_pdf(db, invoice_id, renderer=context.pdf_renderer(), out_dir=context.documents_dir(),
                                    key=key))


@task("sla_sweep", queue="sla")
def sla_sweep(*, now: str | None = None) -> Any:
    """Remind and escalate exceptions whose timers passed. Safe to run anywhere, any number of times."""
    from bot.slack_client import get_client
    from bot.workflows.sla import sweep

    db, key = _ctx()
    return plain(sweep(db, now=_now(now), client=get_client(), key=key))


@task("digest", queue="default", lock=lambda _kw: "digest")
def digest(*, now: str | None = None, dry_run: bool = False) -> Any:
    """The managers' daily digest."""
    from bot.slack_client import get_client
    from bot.workflows.digest import send_digest

    db, key = _ctx()
    return plain(send_digest(db, now=_now(now), client=get_client(), key=key, dry_run=dry_run))


@task("retry_stalled", queue="sla")
def retry_stalled(*, seconds_since_heartbeat: float = 60.0) -> Any:
    """Distributed mode: put jobs of dead workers (no heartbeat) back to ``todo``."""
    from bot import jobs

    return jobs.retry_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)


def wire_worker() -> None:
    """A process that runs tasks (``billbot worker``, an embedded pool process) tells Slack what its
    workflows did, like the web process does: exception messages and their updates after a decision,
    PDFs rendered after a finalizing commit and uploaded into their threads. Once per process; a
    process that serves Slack (``create_app``) is wired already and keeps its own client."""
    from bot.workflows.notify_slack import is_wired

    if is_wired():
        return
    from bot import context, jobs
    from bot.settings import get_settings
    from bot.slack_client import get_client
    from bot.workflows.delivery import wire
    from bot.workflows.notify_slack import register_slack_subscribers

    register_slack_subscribers(get_client(), db=context.get_db, default_channel=get_settings().exceptions_channel)
    wire(get_client, get_db=context.get_db, get_key=context.get_key, submit=jobs.submit)


def unwire_worker() -> None:
    """Forget :func:`wire_worker` (a pool process whose environment changed)."""
    from bot.workflows.notify_slack import is_wired, unregister_slack_subscribers

    if is_wired():
        unregister_slack_subscribers()


def _register_surface_tasks() -> None:
    """Tasks defined next to the surface that submits them (the `/billing` command's background job)
    must be known to every process that runs tasks, distributed workers included."""
    import bot.handlers.actions.decide  # noqa: F401  (registers "decide")
    import bot.handlers.commands.jobs  # noqa: F401  (registers "slack_command")


_register_surface_tasks()
