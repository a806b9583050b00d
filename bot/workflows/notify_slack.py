"""Slack side effects of exception events (run after commit by :mod:`bot.workflows.effects`).

- ``exception.opened`` / ``exception.updated`` → the exception's message is posted (once; its
  ``channel`` and ``message_ts`` are stored by a bookkeeping update) or updated in place;
- ``exception.decided`` → the message is updated in place (buttons replaced by "Approved by @x at t",
  or "1 of 2 approvals") and a reply is posted in its thread;
- ``exception.closed`` → the message is updated in place;
- ``exception.invoiced`` (Force on a below-threshold skip) → the invoice-delivery hook, by default a
  thread reply naming the invoices; the document helper replaces it to attach the PDFs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.workflows.effects import subscribe
from storage.db import Database
from storage.models import OPEN_EXCEPTION_STATES, Advertiser, BillingException, Decision, Invoice, LegalEntity

log = logging.getLogger(__name__)

InvoiceDelivery = Callable[[Any, str, str, list[int]], None]  # (client, channel, thread_ts, invoice ids)


@dataclass
class _Wiring:
    client: Any = None
    db: Callable[[], Database] | None = None
    default_channel: str = "billing-exceptions"
    invoice_delivery: InvoiceDelivery | None = None


_wiring = _Wiring()


def register_slack_subscribers(
    client: Any, *, db: Callable[[], Database] | None = None, default_channel: str | None = None,
) -> None:
    """Subscribe the Slack side effects. Calling it again rewires the client (no double posting)."""
    if db is None:
        from bot.context import get_db

        db = get_db
    _wiring.client = client
    _wiring.db = db
    if default_channel:
        _wiring.default_channel = default_channel
    for name, fn in _subscriptions():
        subscribe(name, fn)


def is_wired() -> bool:
    """Whether this process posts its workflows' effects to Slack (:func:`register_slack_subscribers`)."""
    return _wiring.client is not None


def wired_client() -> Any:
    """The Slack client this process's side effects post with (its Bolt app's, in a web process)."""
    if _wiring.client is None:
        raise RuntimeError("Slack side effects are not wired in this process (register_slack_subscribers)")
    return _wiring.client


def unregister_slack_subscribers() -> None:
    """Undo :func:`register_slack_subscribers` (tests; a process that stops talking to Slack)."""
    from bot.workflows import effects

    for name, fn in _subscriptions():
        subs = effects._subscribers.get(name)
        if subs and fn in subs:
            subs.remove(fn)
    _wiring.client = None
    from bot.workflows.delivery import unwire  # the app wires PDF rendering and delivery with these

    unwire()


def _subscriptions() -> tuple[tuple[str, Callable[..., None]], ...]:
    return (
        ("exception.opened", on_exception_changed),
        ("exception.updated", on_exception_changed),
        ("exception.closed", on_exception_changed),
        ("exception.decided", on_exception_decided),
        ("exception.invoiced", on_exception_invoiced),
    )


def set_invoice_delivery(fn: InvoiceDelivery | None) -> None:
    """Hook for delivering documents of invoices created by a Force into the exception's thread."""
    _wiring.invoice_delivery = fn


def _db() -> Database:
    if _wiring.db is None:
        raise RuntimeError("register_slack_subscribers() was not called")
    return _wiring.db()


@dataclass(frozen=True)
class _Rendered:
    channel: str
    message_ts: str | None
    blocks: list[Any]
    text: str


def _channel_for(s: Session, exc: BillingException) -> str:
    if exc.channel:
        return exc.channel
    le = s.get(LegalEntity, exc.legal_entity_id)
    if le is not None and le.exceptions_channel:
        return le.exceptions_channel
    return _wiring.default_channel


def _render(s: Session, exc: BillingException) -> _Rendered:
    from bot.blocks.exceptions import exception_message, fallback_text
    from bot.workflows.decisions import subject_digest

    adv = s.get(Advertiser, exc.advertiser_id)
    name = adv.name if adv is not None else exc.advertiser_id
    last = s.execute(
        select(Decision).where(Decision.exception_id == exc.id).order_by(Decision.id.desc()).limit(1)
    ).scalar_one_or_none()
    blocks = exception_message(exc, digest=subject_digest(exc), advertiser_name=name, last_decision=last)
    return _Rendered(_channel_for(s, exc), exc.message_ts, list(blocks), fallback_text(exc, name))


def _store_message(exception_id: int, channel: str, ts: str) -> None:
    """Bookkeeping (not a business state change): where the exception's message lives."""
    with _db().transaction() as s:
        s.execute(
            update(BillingException)
            .where(BillingException.id == exception_id, BillingException.message_ts.is_(None))
            .values(channel=channel, message_ts=ts)
            .execution_options(synchronize_session=False)
        )


def refresh_exception_message(exception_id: int) -> tuple[str, str] | None:
    """Post the exception's message, or update it in place. Returns (channel, ts)."""
    client = _wiring.client
    with _db().read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None:
            return None
        r = _render(s, exc)
    if r.message_ts:
        client.chat_update(channel=r.channel, ts=r.message_ts, blocks=r.blocks, text=r.text)
        return r.channel, r.message_ts
    resp = client.chat_postMessage(channel=r.channel, blocks=r.blocks, text=r.text)
    channel, ts = str(resp.get("channel") or r.channel), str(resp["ts"])
    _store_message(exception_id, channel, ts)
    return channel, ts


def on_exception_changed(exception_id: int, **_: Any) -> None:
    refresh_exception_message(exception_id)


def on_exception_decided(exception_id: int, decision_id: int, **_: Any) -> None:
    from bot.blocks.exceptions import thread_reply_text

    where = refresh_exception_message(exception_id)
    if where is None:
        return
    channel, ts = where
    with _db().read() as s:
        exc = s.get(BillingException, exception_id)
        decision = s.get(Decision, decision_id)
        if exc is None or decision is None:
            return
        final = exc.state not in OPEN_EXCEPTION_STATES
        text = thread_reply_text(exc, decision, final=final)
    _wiring.client.chat_postMessage(channel=channel, thread_ts=ts, text=text)


def _default_delivery(client: Any, channel: str, thread_ts: str, invoice_ids: list[int]) -> None:
    with _db().read() as s:
        numbers = [inv.number for inv in s.execute(
            select(Invoice).where(Invoice.id.in_(invoice_ids)).order_by(Invoice.id)).scalars()]
    if numbers:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                text="Invoice(s) created: " + ", ".join(numbers))


def on_exception_invoiced(exception_id: int, invoice_ids: list[int], **_: Any) -> None:
    with _db().read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None or not exc.message_ts or not exc.channel:
            return
        channel, ts = exc.channel, exc.message_ts
    (_wiring.invoice_delivery or _default_delivery)(_wiring.client, channel, ts, list(invoice_ids))
