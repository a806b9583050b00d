"""Invoice PDFs into Slack threads: the Slack half of :mod:`bot.workflows.invoice_uploads`.

Only invoices finalized *from Slack* are uploaded, into the thread they were asked for in:

- a Force on a ``below_threshold`` skip → the exception message's thread
  (:func:`on_exception_invoiced`, a reaction to ``exception.invoiced``), after an "Invoice(s)
  created: …" reply naming them;
- ``/billing run`` typed in Slack → the run's progress message thread (:func:`send_run_pdfs`, called
  by the ``slack_command`` task when the run is done), capped at :data:`RUN_UPLOAD_CAP` PDFs plus one
  "… and N more" reply, so a run of 1,000 invoices does not flood the thread.

The PDF is rendered on its own after the finalizing commit (``invoice.finalized`` → ``render_pdf``
task); :func:`on_invoice_rendered` and the two origins above each call :func:`upload_invoice_pdf`,
and the target's claim makes the one that comes second upload it, once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from billing.errors import BillingError
from bot import context
from bot.blocks.common import esc
from bot.blocks.documents import pdf_failed_blocks, pdf_failed_text
from bot.slack.context import SlackContext
from bot.workflows.documents import ensure_invoice_pdf
from bot.workflows.invoice_uploads import (
    Claim,
    Target,
    claim_upload,
    failed_pdfs,
    finish_upload,
    invoice_numbers,
    pdf_failure,
    remember_run_message,
    set_targets,
    target_of,
)
from storage.db import Database
from storage.models import BillingException

log = logging.getLogger(__name__)

#: PDFs uploaded into a run's thread; the rest are named in one "… and N more" reply.
RUN_UPLOAD_CAP = 10
MORE_HINT = "`billbot invoices pdf NUMBER -o FILE`"


def _pdf_bytes(db: Database, invoice_id: int, c: Claim, key: Ed25519PrivateKey | None) -> bytes:
    """The recorded PDF; rendered again (``ensure_invoice_pdf``) when the file is gone or changed."""
    try:
        data = Path(c.pdf_path).read_bytes()
        if c.pdf_sha256 is None or hashlib.sha256(data).hexdigest() == c.pdf_sha256:
            return data
    except OSError:
        pass
    return ensure_invoice_pdf(db, invoice_id, renderer=context.pdf_renderer(), out_dir=context.documents_dir(),
                              key=key).read_bytes()


def upload_invoice_pdf(db: Database, invoice_id: int, *, client: WebClient, key: Ed25519PrivateKey | None,
                       now: datetime | None = None) -> bool:
    """Upload the invoice's PDF into its target thread if it has a waiting target and a rendered
    PDF (``files_upload_v2``). Returns True if this call uploaded it. Safe to call any number of
    times from any process: the claim makes the upload happen once."""
    now = now or datetime.now(UTC)
    if target_of(db, invoice_id) is None:  # the common case (CLI invoices, beyond the cap): no write
        return False
    c = claim_upload(db, invoice_id, now)
    if c is None:
        return False
    try:
        data = _pdf_bytes(db, invoice_id, c, key)
        resp = client.files_upload_v2(channel=c.target["channel"], thread_ts=c.target["thread_ts"], file=data,
                                      filename=f"{c.number}.pdf", title=c.title)
    except (SlackClientError, OSError, BillingError) as e:
        log.warning("uploading the PDF of %s to %s failed: %s", c.number, c.target["channel"], e)
        finish_upload(db, invoice_id, c.target, sent=None, error=f"{type(e).__name__}: {e}", key=key, now=now)
        return False
    files = resp.get("files") or [{}]
    sent = {"number": c.number, "file_id": files[0].get("id"), "filename": f"{c.number}.pdf",
            "pdf_sha256": hashlib.sha256(data).hexdigest()}
    finish_upload(db, invoice_id, c.target, sent=sent, error=None, key=key, now=now)
    return True


def on_invoice_rendered(sc: SlackContext, *, invoice_id: int, **_: Any) -> None:
    """``invoice.rendered``: upload the PDF if its invoice has a waiting target."""
    client = sc.client
    if client is not None:
        upload_invoice_pdf(sc.db(), invoice_id, client=client, key=sc.key())


def on_exception_invoiced(sc: SlackContext, *, exception_id: int, invoice_ids: list[int], **_: Any) -> None:
    """``exception.invoiced`` (a Force on a below-threshold skip): name the invoices in the
    exception's thread, then upload their PDFs there (now if rendered, else when rendered)."""
    client = sc.client
    if client is None:
        return
    db, key = sc.db(), sc.key()
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None or not exc.message_ts or not exc.channel:
            return
        channel, ts = exc.channel, exc.message_ts
    numbers = invoice_numbers(db, invoice_ids)
    if numbers:
        client.chat_postMessage(channel=channel, thread_ts=ts,
                                text="Invoice(s) created: " + ", ".join(esc(numbers[i]) for i in sorted(numbers)))
    with db.transaction() as s:
        set_targets(s, invoice_ids, Target(channel, ts, "exception"))
    for iid in sorted(invoice_ids):
        upload_invoice_pdf(db, iid, client=client, key=key)


@dataclass(frozen=True)
class RunUploads:
    """What :func:`send_run_pdfs` arranged: PDFs targeted at the thread, and the ones only named."""

    run_id: int
    targeted: list[int] = field(default_factory=list)
    uploaded_now: list[int] = field(default_factory=list)
    more: int = 0


def send_run_pdfs(db: Database, client: WebClient, run_id: int, invoice_ids: Sequence[int], *, channel: str,
                  ts: str, key: Ed25519PrivateKey | None, cap: int | None = None) -> RunUploads | None:
    """A billing run started from Slack is done: remember its message, target the first ``cap`` of
    ``invoice_ids`` (the run's own invoices, in finalization order) at its thread, upload those
    already rendered, and name the rest in one reply. Returns None if the run does not exist."""
    cap = RUN_UPLOAD_CAP if cap is None else max(0, cap)
    ids = [int(i) for i in invoice_ids]
    first, rest = ids[:cap], ids[cap:]
    targeted = remember_run_message(db, run_id, channel=channel, ts=ts, first=first,
                                    target=Target(channel, ts, "run", run_id))
    if targeted is None:
        return None
    uploaded = [iid for iid in first if upload_invoice_pdf(db, iid, client=client, key=key)]
    for failure in failed_pdfs(db, ids):  # failed before the thread was known: say why there now
        error = failure.error or "unknown error"
        client.chat_postMessage(channel=channel, thread_ts=ts,
                                text=pdf_failed_text(failure.number, failure.advertiser, error),
                                blocks=pdf_failed_blocks(failure.invoice_id, failure.number, failure.advertiser, error))
    if rest:
        numbers = invoice_numbers(db, [rest[0], rest[-1]])
        span = numbers.get(rest[0], "?") if len(rest) == 1 else f"{numbers.get(rest[0], '?')} … " \
            f"{numbers.get(rest[-1], '?')}"
        client.chat_postMessage(channel=channel, thread_ts=ts,
                                text=f"… and {len(rest)} more — {MORE_HINT} ({esc(span)})")
    return RunUploads(run_id, targeted, uploaded, len(rest))


def on_invoice_pdf_failed(sc: SlackContext, *, invoice_id: int, error: str, **_: Any) -> None:
    """``invoice.pdf_failed``: say why in the thread the invoice was asked for (its run's message or
    the exception's) and in the managers' channel, with a Retry PDF button."""
    client = sc.client
    if client is None:
        return
    failure = pdf_failure(sc.db(), invoice_id)
    if failure is None:
        return
    text = pdf_failed_text(failure.number, failure.advertiser, error)
    blocks = pdf_failed_blocks(invoice_id, failure.number, failure.advertiser, error)
    places: list[tuple[str, str | None]] = [*failure.threads, (sc.managers_channel, None)]
    for channel, thread_ts in places:
        try:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)
        except SlackClientError as e:
            log.warning("telling %s that the PDF of %s failed did not work: %s", channel, failure.number, e)
