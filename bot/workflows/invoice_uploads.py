"""Upload targets for invoice PDFs: which Slack thread an invoice's PDF goes to, and whether it went.

The state half of putting PDFs into Slack (the Slack half is :mod:`bot.slack.invoice_pdfs`). Only
invoices finalized *from Slack* get a target, in the thread they were asked for in: a Force on a
``below_threshold`` skip (the exception message's thread) and ``/billing run`` typed in Slack (the
run's progress message thread, capped). Invoices finalized from the CLI never get one.

A target is a ``kv`` row ``delivery:invoice:<id>`` (the prefix predates the name; rows keep it) with
channel, thread and state ``waiting`` → ``sending`` → ``sent``, written by whoever knows where the
invoice was asked for. The PDF is rendered independently after the finalizing commit; both sides
then try the upload, and whichever comes second does it: :func:`claim_upload` takes the target
with a locked read (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write transactions are ``BEGIN
IMMEDIATE``), so each PDF is uploaded once even when the render runs in another process. A failed
upload puts the target back to ``waiting``; a claim older than :data:`SENDING_STALE` (its process
died) is taken over. Every upload is an audit record ``invoice.delivered`` (:func:`finish_upload`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.money import fmt
from bot.workflows import audit
from storage.db import Database
from storage.models import Advertiser, BillingRun, Invoice, Setting

log = logging.getLogger(__name__)

#: A claim (``sending``) older than this belongs to a process that died mid-upload.
SENDING_STALE = timedelta(minutes=10)
TARGET_PREFIX = "delivery:invoice:"


def target_key(invoice_id: int) -> str:
    return f"{TARGET_PREFIX}{int(invoice_id)}"


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """Where one invoice's PDF goes: ``origin`` is ``exception`` or ``run``."""

    channel: str
    thread_ts: str
    origin: str
    origin_id: int | None = None


def _new_target(t: Target) -> str:
    return json.dumps({"channel": t.channel, "thread_ts": t.thread_ts, "origin": t.origin,
                       "origin_id": t.origin_id, "state": "waiting"}, sort_keys=True)


def set_targets(s: Session, invoice_ids: Sequence[int], target: Target) -> list[int]:
    """Record ``target`` for each invoice that has none yet (bookkeeping, in the caller's
    transaction). Returns the invoice ids given a target now; an existing target is kept, so an
    invoice is never sent to two threads."""
    out = []
    for iid in invoice_ids:
        k = target_key(iid)
        if s.get(Setting, k) is None:
            s.add(Setting(key=k, value=_new_target(target)))
            out.append(int(iid))
    s.flush()
    return out


def target_of(db: Database, invoice_id: int) -> dict[str, Any] | None:
    """The upload target row of an invoice as a dict (``state`` included), or None."""
    with db.read() as s:
        row = s.get(Setting, target_key(invoice_id))
        return None if row is None else dict(json.loads(row.value))


# --------------------------------------------------------------------------- one upload


@dataclass(frozen=True)
class Claim:
    target: dict[str, Any]
    number: str
    title: str
    pdf_path: str
    pdf_sha256: str | None


def claim_upload(db: Database, invoice_id: int, now: datetime) -> Claim | None:
    """Take the invoice's waiting target if its PDF is rendered (one transaction, row locked)."""
    k = target_key(invoice_id)
    with db.transaction() as s:
        row = s.execute(select(Setting).where(Setting.key == k).with_for_update()).scalar_one_or_none()
        if row is None:
            return None
        target = dict(json.loads(row.value))
        state = target.get("state")
        if state == "sent":
            return None
        if state == "sending":
            since = datetime.fromisoformat(str(target.get("since") or now.isoformat()))
            if now - since < SENDING_STALE:
                return None
            log.warning("the upload of invoice %s was claimed at %s and never finished; taking it over",
                        invoice_id, since)
        inv = s.get(Invoice, invoice_id)
        if inv is None or inv.pdf_state != "done" or not inv.pdf_path:
            return None  # not rendered yet: ``invoice.rendered`` calls again
        adv = s.get(Advertiser, inv.advertiser_id)
        name = adv.name if adv is not None else inv.advertiser_id
        title = f"{inv.number} · {name} · {fmt(inv.gross, inv.currency)} {inv.currency}"
        row.value = json.dumps({**target, "state": "sending", "since": now.isoformat()}, sort_keys=True)
        return Claim(target, inv.number, title, inv.pdf_path, inv.pdf_sha256)


def finish_upload(db: Database, invoice_id: int, target: dict[str, Any], *, sent: dict[str, Any] | None,
                  error: str | None, key: Ed25519PrivateKey | None, now: datetime) -> None:
    """Record how the upload went: ``sent`` (audited ``invoice.delivered``) or back to ``waiting``."""
    with db.transaction() as s:
        row = s.execute(select(Setting).where(Setting.key == target_key(invoice_id)).with_for_update()
                        ).scalar_one_or_none()
        if row is None:
            return
        if sent is None:
            row.value = json.dumps({**target, "state": "waiting", "error": (error or "")[:500]}, sort_keys=True)
            return
        row.value = json.dumps({**target, "state": "sent", "at": now.isoformat(), **sent}, sort_keys=True)
        audit.record(s, key=key, actor="system", action="invoice.delivered", subject_type="invoice",
                     subject_id=invoice_id, now=now,
                     payload={"channel": target["channel"], "thread_ts": target["thread_ts"],
                              "origin": target.get("origin"), "origin_id": target.get("origin_id"), **sent})


def remember_run_message(db: Database, run_id: int, *, channel: str, ts: str, first: Sequence[int],
                         target: Target) -> list[int] | None:
    """A billing run started from Slack is done: record where its message lives (bookkeeping) and
    target ``first`` of its invoices at that message's thread. None if the run does not exist."""
    with db.transaction() as s:
        run = s.get(BillingRun, run_id)
        if run is None:
            return None
        if not run.message_ts:
            run.channel, run.message_ts = channel, ts
        return set_targets(s, first, target)


def invoice_numbers(db: Database, invoice_ids: Sequence[int]) -> dict[int, str]:
    """Invoice id → number, for the ids given."""
    with db.read() as s:
        return {int(i): str(n) for i, n in s.execute(
            select(Invoice.id, Invoice.number).where(Invoice.id.in_(list(invoice_ids)))).all()}


@dataclass(frozen=True)
class PdfFailure:
    """Where a failed PDF is told: the thread the invoice was asked for in (its run's message or its
    upload target), if any, and who it is for."""

    invoice_id: int
    number: str
    advertiser: str
    threads: tuple[tuple[str, str], ...]
    error: str | None = None


def pdf_failure(db: Database, invoice_id: int) -> PdfFailure | None:
    """The invoice's number, advertiser and the Slack threads its failed PDF is reported in."""
    with db.read() as s:
        inv = s.get(Invoice, invoice_id)
        if inv is None:
            return None
        adv = s.get(Advertiser, inv.advertiser_id)
        threads: list[tuple[str, str]] = []
        run = s.get(BillingRun, inv.billing_run_id) if inv.billing_run_id else None
        if run is not None and run.channel and run.message_ts:
            threads.append((run.channel, run.message_ts))
        row = s.get(Setting, target_key(invoice_id))
        if row is not None:
            t = json.loads(row.value)
            if t.get("channel") and t.get("thread_ts") and (t["channel"], t["thread_ts"]) not in threads:
                threads.append((str(t["channel"]), str(t["thread_ts"])))
        return PdfFailure(invoice_id, inv.number, adv.name if adv is not None else inv.advertiser_id, tuple(threads),
                          inv.pdf_error)


def failed_pdfs(db: Database, invoice_ids: Sequence[int]) -> list[PdfFailure]:
    """Those of ``invoice_ids`` whose PDF failed for good (told when a run's message becomes known)."""
    with db.read() as s:
        ids = list(s.execute(select(Invoice.id).where(Invoice.id.in_([int(i) for i in invoice_ids]),
                                                      Invoice.pdf_state == "failed").order_by(Invoice.id)).scalars())
    return [f for f in (pdf_failure(db, i) for i in ids) if f is not None]
