"""Background work started by ``/billing sync`` and ``/billing run``.

Registered as the ``slack_command`` task of the jobs facade (:mod:`bot.tasks`), so it runs in the
embedded thread pool or on a Procrastinate worker with the same JSON-able arguments. It keeps one
Slack message up to date: queued → running (progress, throttled to one ``chat.update`` a second)
→ done with the job log summary, or failed with the reason. The per-key lock (``sync:<source>``,
``run:<period>``) is the one the scheduled tasks use, so a typed sync never overlaps a scheduled one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from billing.errors import BillingError, Invalid
from bot.tasks import task

log = logging.getLogger(__name__)

UPDATE_EVERY_S = 1.0


class ProgressMessage:
    """The Slack message a job keeps updating."""

    def __init__(self, client: Any, channel: str, ts: str, title: str, actor: str) -> None:
        self.client, self.channel, self.ts, self.title, self.actor = client, channel, ts, title, actor
        self.lines: list[str] = []
        self.progress: str | None = None
        self._last = 0.0
        self._lock = threading.Lock()

    def update(self, state: str, *, force: bool = True) -> None:
        from slack_sdk.errors import SlackClientError

        from bot.blocks.progress import progress_fallback, run_progress

        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < UPDATE_EVERY_S:
                return
            self._last = now
            blocks = run_progress(self.title, state=state, started_by=self.actor, lines=self.lines,
                                  progress=self.progress)
        try:
            self.client.chat_update(channel=self.channel, ts=self.ts, blocks=blocks,
                                    text=progress_fallback(self.title, state))
        except SlackClientError:  # progress is best effort; the job itself goes on
            log.warning("could not update progress message %s/%s", self.channel, self.ts, exc_info=True)

    def on_progress(self, *args: Any, **kwargs: Any) -> None:
        """Accepts what the workflows report: ``(done, total)`` from billing runs, ``(label, done,
        total)`` from syncs, or keyword ``message=`` log lines."""
        label = next((a for a in args if isinstance(a, str)), None)
        numbers = [a for a in args if not isinstance(a, str | bool)]
        done = kwargs.get("done", numbers[0] if numbers else None)
        total = kwargs.get("total", numbers[1] if len(numbers) > 1 else None)
        if done is not None:
            figure = f"{done}/{total}" if total else f"{done}"
            self.progress = f"{label}: {figure}" if label else figure
        elif label:
            self.progress = label
        message = kwargs.get("message") or kwargs.get("line")
        if isinstance(message, str):
            self.lines.append(message)
        self.update("running", force=False)


def _get(result: Any, name: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(name)
    return getattr(result, name, None)


def summary_lines(kind: str, result: Any) -> list[str]:
    """The job log, or a summary built from the result's figures when it has no log."""
    log_lines = _get(result, "log")
    if isinstance(log_lines, Sequence) and not isinstance(log_lines, str) and log_lines:
        return [str(x) for x in log_lines]
    if kind == "run":
        created = _get(result, "created") or []
        skipped = _get(result, "skipped") or []
        held = _get(result, "held") or []
        return [f"{len(created)} invoice(s) created, {len(skipped)} advertiser(s) skipped, {len(held)} held"]
    counts = _get(result, "counts")
    if isinstance(counts, Mapping):
        return [", ".join(f"{k}: {v}" for k, v in counts.items()) or "nothing to sync"]
    return [str(result)[:500]]


def _lock_key(kind: str, source: str | None, period: str | None) -> str:
    return f"sync:{source}" if kind == "sync" else f"run:{period}"


@task("slack_command", queue="default")
def slack_command(
    *, kind: str, channel: str, ts: str, actor: str, title: str, source: str | None = None,
    mode: str = "standard", period: str | None = None, advertisers: list[str] | None = None,
    today: str | None = None,
) -> dict[str, Any]:
    """Run one ``/billing sync`` or ``/billing run`` and report into the message ``channel``/``ts``."""
    from datetime import UTC, date, datetime

    from bot import context, jobs
    from bot.slack_client import get_client

    msg = ProgressMessage(get_client(), channel, ts, title, actor)
    msg.update("running")
    db, key = context.get_db(), context.get_key()
    result: Any
    try:
        with jobs.lock(_lock_key(kind, source, period), holder=f"slack:{actor}"):
            if kind == "sync":
                from bot.workflows import sync as sync_wf

                if not source:
                    raise Invalid("sync: no source given")
                result = sync_wf.run_sync(db, source=source, mode=mode, actor=actor, signing_key=key,
                                          now=datetime.now(UTC), on_progress=msg.on_progress)
            else:
                from bot.workflows import billing_run

                if not period:
                    raise Invalid("run: no period given")
                day = date.fromisoformat(today) if today else datetime.now(UTC).date()
                result = billing_run.run_billing(db, period=period, advertisers=advertisers or None, actor=actor,
                                                 key=key, today=day, on_progress=msg.on_progress)
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
    msg.update("done")
    if kind == "run":
        deliver_run_documents(db, key, msg, result)
    return {"ok": True}


def deliver_run_documents(db: Any, key: Any, msg: ProgressMessage, result: Any) -> None:
    """The run's invoice PDFs into its progress message's thread (capped; see bot.workflows.delivery).
    Best effort: the run is done and committed whatever happens here."""
    from slack_sdk.errors import SlackClientError

    from bot.workflows.delivery import deliver_run

    run_id, invoice_ids = _get(result, "run_id"), _get(result, "invoice_ids")
    if run_id is None or not invoice_ids:
        return
    try:
        deliver_run(db, msg.client, int(run_id), list(invoice_ids), channel=msg.channel, ts=msg.ts, key=key)
    except (BillingError, SlackClientError):
        log.warning("could not deliver the PDFs of billing run %s to Slack", run_id, exc_info=True)
