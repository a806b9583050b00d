"""``/billing sync`` and ``/billing run`` typed in Slack, run in the background.

The ``slack_command`` task runs in the embedded thread pool or on a Procrastinate worker with the
same JSON-able arguments: one sync or billing run (one workflow), reported into the Slack message
the command posted (:class:`bot.slack.progress.ProgressMessage`). The per-key lock
(``sync:<source>``, ``run:<period>``) is the one the scheduled tasks use, so a typed sync never
overlaps a scheduled one.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_sdk.errors import SlackClientError

from billing.errors import BillingError, Invalid, NotFound
from bot import context, jobs
from bot.blocks.run_report import INLINE_LOG_LINES, run_report_blocks, run_report_text
from bot.slack.client import get_client
from bot.slack.invoice_pdfs import send_run_pdfs
from bot.slack.progress import ProgressMessage, result_field, summary_lines
from bot.tasks.registry import task
from bot.tasks.scheduled import start_distributed_run
from bot.workflows import billing_run, sync
from bot.workflows.run_reports import log_csv, log_text, run_report
from storage.db import Database

log = logging.getLogger(__name__)


def _lock_key(kind: str, source: str | None, period: str | None) -> str:
    if kind == "import":  # issue 21: the inbox pass and pre-invoices, with the scheduled tasks' keys
        return f"inbox:{source or '*'}"
    if kind == "preinvoices":
        return f"preinvoices:{period}"
    return f"sync:{source}" if kind == "sync" else f"run:{period}"


SLACK_COMMAND = "slack_command"


def _pipeline(db: Database, key: Ed25519PrivateKey | None, kind: str, *, actor: str, source: str | None,
              period: str | None, advertisers: list[str] | None) -> dict[str, Any]:
    """``/billing import [source]`` (the watched inbox folders) and ``/billing preinvoices create PERIOD``."""
    from pathlib import Path

    from bot.tasks.scheduled import preinvoices_log
    from bot.workflows.inbox import import_source_inbox
    from bot.workflows.preinvoices import create_preinvoices
    from storage.settings import get_settings

    if kind == "import":
        res = import_source_inbox(db, Path(get_settings().inbox_dir), sources=[source] if source else None,
                                  actor=actor, key=key)
        return {"log": res.log, "imported": res.imported, "failed": res.failed}
    if not period:
        raise Invalid("preinvoices create: no period given")
    r = create_preinvoices(db, period=period, advertisers=advertisers or None, actor=actor, key=key,
                           now=datetime.now(UTC), default_tolerance=get_settings().default_tolerance)
    return {"log": preinvoices_log(r), "created": r.created, "pending": r.pending}


@task(SLACK_COMMAND, queue="default")
def slack_command(
    *, kind: str, channel: str, ts: str, actor: str, title: str, source: str | None = None,
    mode: str = "standard", period: str | None = None, advertisers: list[str] | None = None,
    today: str | None = None,
) -> dict[str, Any]:
    """Run one ``/billing sync`` or ``/billing run`` and report into the message ``channel``/``ts``."""
    msg = ProgressMessage(get_client(), channel, ts, title, actor)
    msg.update("running")
    db, key = context.get_db(), context.get_key()
    result: Any
    try:
        # one holder per command (its message): a re-queued attempt of this job reclaims what the dead
        # attempt held instead of being refused by it
        job = f"slack:{actor}:{channel}:{ts}"
        with jobs.lock(_lock_key(kind, source, period), holder=job, reclaim=True):
            if kind in ("import", "preinvoices"):
                result = _pipeline(db, key, kind, actor=actor, source=source, period=period, advertisers=advertisers)
            elif kind == "sync":
                if not source:
                    raise Invalid("sync: no source given")
                result = sync.run_sync(db, source=source, mode=mode, actor=actor, signing_key=key,
                                          now=datetime.now(UTC), on_progress=msg.on_progress)
            else:
                if not period:
                    raise Invalid("run: no period given")
                day = date.fromisoformat(today) if today else datetime.now(UTC).date()
                plan = start_distributed_run(period=period, advertisers=advertisers or None, actor=actor, today=day,
                                             job=job, title=title, channel=channel,
                                             ts=ts) if jobs.mode() == "distributed" else None
                if plan is not None:  # its chunks are settled by the workers; each updates this message
                    msg.progress = f"0/{plan.total} ({len(plan.chunks)} chunks queued for the workers)"
                    msg.update("running")
                    return {"ok": True, "run_id": plan.run_id, "chunks": len(plan.chunks)}
                result = billing_run.run_billing(db, period=period, advertisers=advertisers or None, actor=actor,
                                                 key=key, today=day, on_progress=msg.on_progress, job=job)
    except BillingError as e:
        msg.lines.append(f"error: {e.message}")
        msg.update("failed")
        return {"ok": False, "error": e.message, "code": e.code}
    except Exception as e:
        msg.lines.append(f"error: {type(e).__name__}: the job failed; details are in the server log")
        msg.update("failed")
        raise
    msg.lines = summary_lines(kind, result)
    msg.progress = None
    if kind == "run" and result_field(result, "run_id") is not None:
        send_run_report(db, msg, int(result_field(result, "run_id")))
    else:
        msg.update("done")
    if kind == "run":
        send_run_documents(db, key, msg, result)
    return {"ok": True}


def send_run_report(db: Database, msg: ProgressMessage, run_id: int) -> None:
    """Totals first (:func:`bot.blocks.run_report.run_report_blocks`); a job log longer than a
    screen goes into the thread as two files, CSV and text."""
    try:
        with db.read() as s:
            report = run_report(s, run_id)
    except NotFound:  # no row to report from: the job log as it came
        msg.update("done")
        return
    attach = len(report.log) > INLINE_LOG_LINES
    msg.finish(run_report_blocks(report, title=msg.title, started_by=msg.actor, log_attached=attach),
               run_report_text(report, msg.title))
    if not attach:
        return
    stem = f"billing-run-{report.run_id}-{report.period}-log"
    for content, ext, what in ((log_csv(report), "csv", "CSV"), (log_text(report), "txt", "text")):
        try:
            msg.client.files_upload_v2(channel=msg.channel, thread_ts=msg.ts, content=content,
                                       filename=f"{stem}.{ext}",
                                       title=f"Job log of billing run {report.run_id} ({what})")
        except SlackClientError:
            log.warning("could not attach the job log of billing run %s", run_id, exc_info=True)


def send_run_documents(db: Database, key: Ed25519PrivateKey, msg: ProgressMessage, result: Any) -> None:
    """The run's invoice PDFs into its progress message's thread (capped; :mod:`bot.slack.invoice_pdfs`).
    Best effort: the run is done and committed whatever happens here."""
    run_id, invoice_ids = result_field(result, "run_id"), result_field(result, "invoice_ids")
    if run_id is None or not invoice_ids:
        return
    try:
        send_run_pdfs(db, msg.client, int(run_id), list(invoice_ids), channel=msg.channel, ts=msg.ts, key=key)
    except (BillingError, SlackClientError):
        log.warning("could not send the PDFs of billing run %s to Slack", run_id, exc_info=True)
