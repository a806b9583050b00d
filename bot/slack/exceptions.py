"""Exception messages in Slack: reactions to the exception events, run after commit.

- ``exception.opened`` / ``exception.updated`` / ``exception.closed`` → the exception's message is
  posted (once, across processes: :mod:`bot.workflows.exception_messages` claims the post) or
  updated in place;
- ``exception.decided`` → the message is updated in place (buttons replaced by "Approved by @x at
  t", or "1 of 2 approvals") and a reply is posted in its thread;
- the sweep (:func:`post_missing`) posts the messages that are still missing: exceptions opened by
  a process without Slack (a CLI with no Slack settings), or while Slack was unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks.exceptions import approvals_reset_text, exception_message, fallback_text, thread_reply_text
from bot.slack.context import SlackContext
from bot.slack.home import publish_home
from bot.slack.replies import Where
from bot.workflows import exception_evidence, exception_messages
from bot.workflows.decisions import subject_hash_of
from storage.db import Database
from storage.models import OPEN_EXCEPTION_STATES, Advertiser, BillingException, Decision, Invoice, PreInvoice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Rendered:
    channel: str
    message_ts: str | None
    blocks: list[Any]
    text: str


def invoiced_in(s: Session, exc: BillingException) -> list[str]:
    """The numbers of the invoices a decided exception was billed in: its pre-invoice's invoice, or
    the invoices a Force on a below-threshold skip created (named in the signed decision record)."""
    if exc.state not in ("approved", "forced"):
        return []
    ids: set[int] = set()
    if exc.preinvoice_id is not None:
        inv_id = s.scalar(select(PreInvoice.invoice_id).where(PreInvoice.id == exc.preinvoice_id))
        if inv_id is not None:
            ids.add(int(inv_id))
    else:
        pids = [int(i) for i in (exc.evidence or {}).get("preinvoice_ids") or [] if str(i).isdigit()]
        if pids:
            ids |= {int(i) for i in s.scalars(select(PreInvoice.invoice_id).where(
                PreInvoice.id.in_(pids), PreInvoice.invoice_id.is_not(None))) if i is not None}
    if not ids:
        return []
    return list(s.scalars(select(Invoice.number).where(Invoice.id.in_(ids)).order_by(Invoice.id)))


def _render(s: Session, exc: BillingException, default_channel: str,
            working: tuple[str, str] | None = None) -> _Rendered:
    adv = s.get(Advertiser, exc.advertiser_id)
    name = adv.name if adv is not None else exc.advertiser_id
    last = s.execute(
        select(Decision).where(Decision.exception_id == exc.id).order_by(Decision.id.desc()).limit(1)
    ).scalar_one_or_none()
    blocks = exception_message(exc, subject_hash=subject_hash_of(exc), advertiser_name=name, last_decision=last,
                               working=working, invoice_numbers=invoiced_in(s, exc))
    return _Rendered(exc.channel or default_channel, exc.message_ts, list(blocks), fallback_text(exc, name))


def show_working(client: WebClient, db: Database, exception_id: int, *, decision: str, user_id: str) -> bool:
    """Replace the message's buttons by "Working… <choice> by @user" at once, before the decision
    runs (the final state replaces it after commit; a refusal or conflict brings the buttons back).
    Returns False when there is no posted, open message to update."""
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None or not exc.message_ts or not exc.channel or exc.state not in OPEN_EXCEPTION_STATES:
            return False
        r = _render(s, exc, exc.channel, working=(decision, user_id))
    try:
        client.chat_update(channel=r.channel, ts=str(r.message_ts), blocks=r.blocks, text=r.text)
    except SlackClientError as e:  # only a courtesy: the decision goes on
        log.warning("showing 'working…' on exception %s failed: %s", exception_id, e)
        return False
    return True


def show_exception(client: WebClient, db: Database, exception_id: int, *,
                   default_channel: str) -> tuple[str, str] | None:
    """Post the exception's message, or update it in place. Returns (channel, ts), or None when
    there is nothing to show or another process is posting it right now."""
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None:
            return None
        r = _render(s, exc, default_channel)
    if r.message_ts:
        client.chat_update(channel=r.channel, ts=r.message_ts, blocks=r.blocks, text=r.text)
        return r.channel, r.message_ts
    if not exception_messages.claim_post(db, exception_id):
        return None
    try:
        resp = client.chat_postMessage(channel=r.channel, blocks=r.blocks, text=r.text)
    except BaseException:
        exception_messages.release_post(db, exception_id)
        raise
    channel, ts = str(resp.get("channel") or r.channel), str(resp["ts"])
    exception_messages.store_message(db, exception_id, channel, ts)
    return channel, ts


def send_evidence(client: WebClient, db: Database, exception_id: int, *, user_id: str) -> str:
    """Upload the exception's full evidence pack (a zip) into its message's thread, or to the user
    as a DM when the message was never posted. Returns the file name."""
    filename, data = exception_evidence.evidence_pack(db, exception_id)
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        channel, ts = (exc.channel, exc.message_ts) if exc is not None else (None, None)
    if channel and ts:
        client.files_upload_v2(channel=channel, thread_ts=ts, file=data, filename=filename,
                               title=f"Evidence of exception #{exception_id}",
                               initial_comment=f"Evidence of exception #{exception_id}, for <@{user_id}>")
    else:
        dm = client.conversations_open(users=user_id)
        client.files_upload_v2(channel=str(dm["channel"]["id"]), file=data, filename=filename,
                               title=f"Evidence of exception #{exception_id}")
    return filename


def refresh_surface(client: WebClient, db: Database, where: Where, exception_id: int, *,
                    default_channel: str) -> None:
    """Bring what a user looked at up to date after a stale click: the channel message, or their Home."""
    show_exception(client, db, exception_id, default_channel=default_channel)
    if where.from_home:
        publish_home(client, db, where.user_id)


def on_exception_changed(sc: SlackContext, *, exception_id: int, **_: Any) -> None:
    client = sc.client
    if client is not None:
        show_exception(client, sc.db(), exception_id, default_channel=sc.exceptions_channel)


def _refresh_and_reply(sc: SlackContext, exception_id: int,
                       reply: Callable[[Session, BillingException], str | None]) -> None:
    """Bring the exception's message up to date, then say ``reply(session, exception)`` in its thread."""
    client = sc.client
    if client is None:
        return
    db = sc.db()
    where = show_exception(client, db, exception_id, default_channel=sc.exceptions_channel)
    if where is None:
        return
    channel, ts = where
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        text = reply(s, exc) if exc is not None else None
    if text:
        client.chat_postMessage(channel=channel, thread_ts=ts, text=text)


def on_exception_decided(sc: SlackContext, *, exception_id: int, decision_id: int, **_: Any) -> None:
    """``exception.decided``: the message shows the decision; its thread says who decided what."""

    def reply(s: Session, exc: BillingException) -> str | None:
        decision = s.get(Decision, decision_id)
        if decision is None:
            return None
        return thread_reply_text(exc, decision, final=exc.state not in OPEN_EXCEPTION_STATES)

    _refresh_and_reply(sc, exception_id, reply)


def on_approvals_reset(sc: SlackContext, *, exception_id: int, why: str = "", dropped: list[str] | None = None,
                       **_: Any) -> None:
    """``exception.approvals_reset``: the message shows 0 approvals again and its thread says why."""
    _refresh_and_reply(sc, exception_id,
                       lambda _s, exc: approvals_reset_text(exc, why=why, dropped=list(dropped or [])))


def post_missing(sc: SlackContext, *, limit: int = 200) -> list[int]:
    """Post the messages of open exceptions that have none yet (the sweep; ``billbot serve`` at start).
    Returns the exception ids posted now. A failure leaves the rest for the next sweep."""
    client = sc.client
    if client is None:
        return []
    db = sc.db()
    posted = []
    for exception_id in exception_messages.missing_messages(db, limit=limit):
        try:
            if show_exception(client, db, exception_id, default_channel=sc.exceptions_channel) is not None:
                posted.append(exception_id)
        except SlackClientError as e:  # Slack is still away: the next sweep tries again
            log.warning("posting the message of exception %s failed: %s", exception_id, e)
            break
    return posted
