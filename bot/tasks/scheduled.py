"""Work that runs on a schedule or a timer: syncs, billing runs, the SLA sweep, the digest, and the
distributed mode's stalled-job recovery."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackClientError

from billing.errors import BillingError
from bot import context, jobs
from bot.slack.client import get_client
from bot.slack.context import SlackContext
from bot.slack.digest import send_digest
from bot.slack.disputes import sweep as dispute_sweep
from bot.slack.dunning import post_proposal
from bot.slack.exceptions import post_missing
from bot.slack.freshness import alert_missed
from bot.slack.invoice_pdfs import send_run_pdfs
from bot.slack.progress import ProgressMessage
from bot.slack.sla import sweep
from bot.tasks.registry import plain, task
from bot.workflows.billing_run import RunPlan, plan_run, run_billing, run_invoice_ids, run_progress, settle_chunk
from bot.workflows.dispatch import stalled_dispatches
from bot.workflows.invoices import unrendered_invoices
from bot.workflows.payments import import_inbox
from bot.workflows.sync import run_sync
from storage.settings import get_settings

log = logging.getLogger(__name__)

#: A PDF still pending this long after its invoice was finalized had no render job: the sweep queues one.
RENDER_GRACE = timedelta(minutes=10)


def _today(value: str | None) -> date:
    return date.fromisoformat(value) if value else datetime.now(get_settings().tz).date()


def _now(value: str | None) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC) if value else datetime.now(UTC)


def resolve_period(period: str, today: date) -> str:
    """Schedules store relative periods: ``previous_month`` / ``current_month`` → ``YYYY-MM``."""
    if period == "current_month":
        return f"{today.year:04d}-{today.month:02d}"
    if period == "previous_month":
        y, m = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        return f"{y:04d}-{m:02d}"
    return period


@task("sync", queue="sync", retry=2, lock=lambda kw: f"sync:{kw.get('source')}")
def sync(*, source: str, mode: str = "standard", actor: str = "scheduler") -> Any:
    """One sync of ``source`` (standard or partial); one at a time per source."""
    return plain(run_sync(context.get_db(), source=source, mode=mode, actor=actor, signing_key=context.get_key()))


@task("billing_run", queue="billing", lock=lambda kw: f"run:{kw.get('period')}")
def billing_run(
    *, period: str, advertisers: list[str] | str | None = None, actor: str = "scheduler", today: str | None = None
) -> Any:
    """A billing run for ``period`` (``2026-02``, ``2026-W07``, ``2026-Q1``); one at a time per period.
    ``period`` may be ``previous_month`` (what a monthly schedule stores); ``advertisers`` a list or,
    from a schedule's ``--arg advertisers=a,b``, a comma-separated string."""
    day = _today(today)
    if isinstance(advertisers, str):
        advertisers = [a.strip() for a in advertisers.split(",") if a.strip()]
    if jobs.mode() == "distributed":  # the workers settle its chunks in parallel
        plan = start_distributed_run(period=resolve_period(period, day), advertisers=advertisers or [],
                                     actor=actor, today=day)
        if plan is not None:
            return {"run_id": plan.run_id, "period": plan.period, "chunks": len(plan.chunks), "total": plan.total}
    return plain(run_billing(context.get_db(), period=resolve_period(period, day), advertisers=advertisers or [],
                             actor=actor, key=context.get_key(), today=day))


BILLING_CHUNK = "billing_chunk"


def start_distributed_run(*, period: str, advertisers: list[str] | None, actor: str, today: date,
                          job: str | None = None, title: str | None = None, channel: str | None = None,
                          ts: str | None = None) -> RunPlan | None:
    """Distributed mode: start the run and queue one ``billing_chunk`` job per chunk (queue ``billing``);
    any number of ``billbot worker`` processes settle them in parallel, the last one finishes the run.
    A run of one chunk (up to ``CHUNK_SIZE`` advertisers) is not split: None, the caller runs it itself."""
    plan = plan_run(context.get_db(), period=period, advertisers=advertisers or None, actor=actor,
                    key=context.get_key(), today=today, job=job, title=title, channel=channel, message_ts=ts,
                    min_chunks=2)
    if plan is None:
        return None
    for i, chunk in enumerate(plan.chunks):
        jobs.submit(BILLING_CHUNK, run_id=plan.run_id, index=i, advertisers=chunk, actor=actor)
    return plan


@task(BILLING_CHUNK, queue="billing", retry=2)
def billing_chunk(*, run_id: int, index: int, advertisers: list[str], actor: str) -> Any:
    """One chunk of a distributed billing run (:func:`bot.workflows.billing_run.settle_chunk`); then the
    run's progress message, if it has one, shows all chunks' progress (the last chunk: the summary). A job
    re-queued after its worker died settles the chunk again (its first attempt rolled back)."""
    res = settle_chunk(context.get_db(), run_id=run_id, index=index, advertisers=advertisers, actor=actor,
                       key=context.get_key())
    if not res.already:
        report_progress(run_id, final=res.finished)
    return plain(res)


def report_progress(run_id: int, *, final: bool) -> None:
    """Update a distributed run's Slack progress message with the figures of all its chunks (best effort;
    throttled by nothing but the chunks' pace: one update per chunk)."""
    client = get_client()
    if client is None:
        return
    p = run_progress(context.get_db(), run_id)
    if not p["channel"] or not p["message_ts"]:
        return
    msg = ProgressMessage(client, p["channel"], p["message_ts"], p["title"] or f"Billing run {p['period']}",
                          p["started_by"] or "")
    msg.progress = None if final else f"{p['done']}/{p['total']} ({p['chunks_done']}/{p['chunks']} chunks)"
    msg.lines = [f"{p['created']} invoice(s) created, {p['skipped']} advertiser(s) skipped, {p['held']} held"]
    msg.update("done" if final else "running")
    if final:  # as a run in one job does: its first PDFs into the message's thread, the rest named
        try:
            send_run_pdfs(context.get_db(), client, run_id, run_invoice_ids(context.get_db(), run_id),
                          channel=p["channel"], ts=p["message_ts"], key=context.get_key())
        except (BillingError, SlackClientError):
            log.warning("could not send the PDFs of billing run %s to Slack", run_id, exc_info=True)


@task("accounting_export", queue="default", lock=lambda kw: f"export:{kw.get('format')}")
def accounting_export(*, format: str, period: str = "previous_month", actor: str,  # noqa: A002 - the CLI's word
                      legal_entity: str | None = None, today: str | None = None) -> Any:
    """Hand the period's new invoices and credit notes to accounting (``format``: datev or beancount),
    like ``billbot export``; the batch's file goes to the managers' channel after commit. ``actor``: the
    billbot user the schedule exports as (it needs an export role). One at a time per format."""
    from bot.exports import writer as export_writer
    from bot.workflows.accounting import export_accounting

    res = export_accounting(context.get_db(), fmt=format, period=resolve_period(period, _today(today)), actor=actor,
                            key=context.get_key(), now=datetime.now(UTC), writer=export_writer(format),
                            legal_entity_id=legal_entity)
    return {"format": res.format, "legal_entity": res.legal_entity, "period": res.period, "batch": res.batch_id,
            "documents": res.documents, "sha256": res.sha256}


@task("payments_inbox", queue="sync", lock=lambda kw: "payments_inbox")
def payments_inbox(*, actor: str = "scheduler") -> Any:
    """Import the bank files dropped into ``BILLBOT_INBOX_DIR/bank/`` (one import per file, each moved to
    ``processed/`` or ``failed/``); one pass at a time."""
    settings = get_settings()
    res = import_inbox(context.get_db(), Path(settings.inbox_dir), actor=actor, key=context.get_key(),
                       tolerance=settings.payment_tolerance)
    return {"imported": [{"file": r.file, "inserted": r.inserted, "unchanged": r.unchanged,
                          "quarantined": r.quarantined, "outcomes": r.outcomes} for r in res.imported],
            "failed": res.failed}


@task("import_inbox", queue="sync", lock=lambda kw: f"inbox:{kw.get('source') or '*'}")
def import_inbox_files(*, source: str | None = None, actor: str = "scheduler") -> Any:
    """Import the files dropped into ``BILLBOT_INBOX_DIR/<source>/`` (every source folder without
    ``source``), each moved to ``processed/`` or ``failed/`` (issue 21); one pass at a time per source."""
    from bot.workflows.inbox import import_source_inbox

    res = import_source_inbox(context.get_db(), Path(get_settings().inbox_dir), sources=[source] if source else None,
                              actor=actor, key=context.get_key())
    return {"imported": res.imported, "failed": res.failed, "waiting": res.waiting, "log": res.log}


@task("preinvoices_create", queue="billing", lock=lambda kw: f"preinvoices:{kw.get('period')}")
def preinvoices_create(*, period: str, advertisers: list[str] | str | None = None, actor: str = "scheduler",
                       today: str | None = None) -> Any:
    """Create or update the pre-invoices of ``period`` (``previous_month`` / ``current_month`` /
    ``2026-10``) like ``billbot preinvoices create`` (issue 21): checks, variance checks, freshness."""
    from bot.workflows.preinvoices import create_preinvoices

    if isinstance(advertisers, str):
        advertisers = [a.strip() for a in advertisers.split(",") if a.strip()]
    r = create_preinvoices(context.get_db(), period=resolve_period(period, _today(today)),
                           advertisers=advertisers or None, actor=actor, key=context.get_key(), now=datetime.now(UTC),
                           default_tolerance=get_settings().default_tolerance)
    return {"period": r.period, "created": r.created, "updated": r.updated, "unchanged": r.unchanged,
            "approved": r.approved, "pending": r.pending, "problems": {str(k): v for k, v in r.problems.items()},
            "stale_source": {str(k): v for k, v in r.stale.items()}, "log": preinvoices_log(r)}


def preinvoices_log(r: Any) -> list[str]:
    """One summary line, then the pre-invoices with problems or stale source data."""
    lines = [f"{r.period}: {len(r.created)} created, {len(r.updated)} updated, {len(r.unchanged)} unchanged, "
             f"{len(r.approved)} approved by the system, {len(r.pending)} pending, {len(r.problems)} with problems"]
    lines += [f"pre-invoice {k}: {'; '.join(v)}" for k, v in sorted(r.problems.items())]
    lines += [f"pre-invoice {k}: stale_source: {'; '.join(v)}" for k, v in sorted(r.stale.items())]
    return lines


@task("dunning_proposal", queue="sync")
def dunning_proposal(*, today: str | None = None) -> Any:
    """Daily: post the letters due today to the managers channel with "Send all" and "Skip one"."""
    client = get_client()
    if client is None:
        return {"posted": False}
    return post_proposal(client, context.get_db(), today=_today(today))


@task("sla_sweep", queue="sla")
def sla_sweep(*, now: str | None = None, render_grace_seconds: float | None = None) -> Any:
    """Every minute: remind and escalate exceptions whose timers passed; post the exception messages
    still missing (opened where Slack was not reachable); queue the PDFs nobody queued (pending for
    longer than ``render_grace_seconds``, default :data:`RENDER_GRACE`) and the mails whose sending process
    died (claimed longer than the dispatch lease ago). Safe to run anywhere, any
    number of times: a PDF queued twice is rendered once (the ``pdf:<id>`` lock, then "already done")."""
    at = _now(now)
    grace = RENDER_GRACE if render_grace_seconds is None else timedelta(seconds=render_grace_seconds)
    db, key = context.get_db(), context.get_key()
    result = plain(sweep(db, now=at, client=get_client(), key=key))
    result["posted"] = post_missing(SlackContext(get_client, context.get_db, context.get_key))
    result["disputes"] = plain(dispute_sweep(db, now=at, client=get_client(), key=key))
    result["freshness_missed"] = alert_missed(db, client=get_client(), key=key, now=at)  # issue 21
    queued = unrendered_invoices(db, finalized_before=at - grace)
    for invoice_id in queued:
        jobs.submit("render_pdf", invoice_id=invoice_id)
    result["render_queued"] = queued
    mails = stalled_dispatches(db, now=at)
    for invoice_id in mails:
        jobs.submit("dispatch", invoice_id=invoice_id)
    result["dispatch_queued"] = mails
    return result


@task("digest", queue="default", lock=lambda _kw: "digest")
def digest(*, now: str | None = None, dry_run: bool = False) -> Any:
    """The managers' daily digest."""
    return plain(send_digest(context.get_db(), now=_now(now), client=get_client(), key=context.get_key(),
                             dry_run=dry_run))


@task("retry_stalled", queue="sla")
def retry_stalled(*, seconds_since_heartbeat: float = 60.0) -> Any:
    """Distributed mode: put jobs of dead workers (no heartbeat) back to ``todo``."""
    return jobs.retry_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
