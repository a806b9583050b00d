"""Buttons on a dispute's message (issue 20), "Dispute" on invoice messages, and the replies in a
dispute's thread (captured with the dispute).

"Propose credit" and "Withdrawn by client" call their workflow at once (it checks the role and the
state); "Reject dispute" and "Reject credit" first check the clicker may, then open the reason modal,
whose submission decides. "Approve credit" decides the dispute's credit-note request (a finance manager
other than its proposer); the credit note is numbered in that transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid
from bot.blocks.disputes import (
    CATEGORY_ACTION_ID,
    CATEGORY_BLOCK_ID,
    CREDIT_APPROVE_ACTION_ID,
    CREDIT_REJECT_ACTION_ID,
    OPEN_CALLBACK_ID,
    OVERFLOW_ACTION_ID,
    PROPOSE_ACTION_ID,
    REASON_ACTION_ID,
    REASON_BLOCK_ID,
    REASON_CALLBACK_ID,
    REJECT_ACTION_ID,
    WITHDRAW_ACTION_ID,
    open_modal,
    reason_modal,
)
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.handlers.payloads import where_of
from bot.workflows.comments import capture_thread_message
from bot.workflows.credit_notes import access_credit_note_request, decide_credit_note
from bot.workflows.disputes import (
    access_dispute,
    open_dispute,
    propose_credit,
    reject_dispute,
    withdraw_dispute,
)
from storage.models import CreditNoteRequest, Dispute

MIN_REASON = 3


def _ids(action: dict[str, Any]) -> tuple[int, int | None]:
    """``"12"`` (a dispute) or ``"12:7"`` (a dispute and its credit proposal)."""
    head, _, tail = str(action.get("value", "")).partition(":")
    if not head.isdigit() or (tail and not tail.isdigit()):
        raise Invalid("this button carries no dispute; the message may be from an older billbot")
    return int(head), int(tail) if tail else None


def on_propose(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
               context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        dispute_id, _ = _ids(action)
        propose_credit(deps.db(), dispute_id=dispute_id, actor=where_of(body).user_id, key=deps.key())


def on_withdraw(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        dispute_id, _ = _ids(action)
        withdraw_dispute(deps.db(), dispute_id=dispute_id, actor=where_of(body).user_id, key=deps.key())


def on_reject(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
              context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        dispute_id, _ = _ids(action)
        where = where_of(body)
        with deps.db().read() as s:
            d = s.get(Dispute, dispute_id)
            if d is None:
                raise Invalid(f"dispute #{dispute_id} not found")
            access_dispute(s, where.user_id, d, "reject")
        client.views_open(trigger_id=body.get("trigger_id"), view=reason_modal(
            f"Reject dispute #{dispute_id}", {"what": "dispute", "d": dispute_id, "c": where.channel_id},
            label="Reason for the client"))


def on_credit_approve(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                      context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        _dispute_id, request_id = _ids(action)
        if request_id is None:
            raise Invalid("this button carries no credit proposal")
        decide_credit_note(deps.db(), request_id=request_id, decision="approve", actor=where_of(body).user_id,
                           key=deps.key(), today=deps.today(datetime.now(UTC)))


def on_credit_reject(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                     context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        dispute_id, request_id = _ids(action)
        if request_id is None:
            raise Invalid("this button carries no credit proposal")
        where = where_of(body)
        with deps.db().read() as s:
            req = s.get(CreditNoteRequest, request_id)
            if req is None:
                raise Invalid(f"credit-note request #{request_id} not found")
            access_credit_note_request(s, where.user_id, req, "reject")
        client.views_open(trigger_id=body.get("trigger_id"), view=reason_modal(
            f"Reject credit #{request_id}", {"what": "credit", "d": dispute_id, "r": request_id,
                                             "c": where.channel_id}))


def on_reason(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    values = (view.get("state") or {}).get("values") or {}
    reason = str(((values.get(REASON_BLOCK_ID) or {}).get(REASON_ACTION_ID) or {}).get("value") or "")
    if len(reason.strip()) < MIN_REASON:
        ack(response_action="errors", errors={REASON_BLOCK_ID: "Please give a reason."})
        return
    ack()
    with after_ack(body, client):
        meta = json.loads(view.get("private_metadata") or "{}")
        deps = deps_of(context)
        actor = str((body.get("user") or {}).get("id", ""))
        if meta.get("what") == "credit":
            decide_credit_note(deps.db(), request_id=int(meta["r"]), decision="reject", actor=actor, key=deps.key(),
                               today=deps.today(datetime.now(UTC)), reason=reason)
        else:
            reject_dispute(deps.db(), dispute_id=int(meta["d"]), reason=reason, actor=actor, key=deps.key())


def on_invoice_overflow(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                        context: BoltContext) -> None:
    """The "Dispute" item of an invoice message's overflow menu (value ``dispute:NUMBER``): the modal."""
    ack()
    with after_ack(body, client):
        value = str((action.get("selected_option") or {}).get("value") or action.get("value") or "")
        kind, _, number = value.partition(":")
        if kind != "dispute" or not number:
            return
        client.views_open(trigger_id=body.get("trigger_id"), view=open_modal(
            number, {"n": number, "c": where_of(body).channel_id}))


def on_open(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    values = (view.get("state") or {}).get("values") or {}
    reason = str(((values.get(REASON_BLOCK_ID) or {}).get(REASON_ACTION_ID) or {}).get("value") or "")
    picked = (values.get(CATEGORY_BLOCK_ID) or {}).get(CATEGORY_ACTION_ID) or {}
    category = str((picked.get("selected_option") or {}).get("value") or picked.get("value") or "other")
    if len(reason.strip()) < MIN_REASON:
        ack(response_action="errors", errors={REASON_BLOCK_ID: "Say what the client disputes."})
        return
    ack()
    with after_ack(body, client):
        meta = json.loads(view.get("private_metadata") or "{}")
        deps = deps_of(context)
        open_dispute(deps.db(), number=str(meta["n"]), category=category, reason=reason,
                     actor=str((body.get("user") or {}).get("id", "")), key=deps.key())


def on_message(event: dict[str, Any], context: BoltContext) -> None:
    """A reply in the thread of a dispute's or an exception's message is kept as a comment, and so are
    its edits and deletions (:mod:`bot.workflows.comments`, issue 21). People's messages only: billbot's
    and other bots' posts, thread parents and other subtypes are none of billbot's business."""
    change, msg = "comment", event
    subtype = event.get("subtype")
    previous = (event.get("previous_message") or {}).get("text")
    if subtype == "message_changed":
        change, msg = "comment_edited", event.get("message") or {}
    elif subtype == "message_deleted":
        change, msg = "comment_deleted", event.get("previous_message") or {}
    elif subtype:
        return
    thread_ts, ts = msg.get("thread_ts"), msg.get("ts") or event.get("deleted_ts")
    if not thread_ts or not ts or thread_ts == ts or msg.get("bot_id") or event.get("bot_id") or not msg.get("user"):
        return
    deps = deps_of(context)
    capture_thread_message(deps.db(), channel=str(event.get("channel") or ""), thread_ts=str(thread_ts),
                           user=str(msg["user"]), text=str(msg.get("text") or ""), ts=str(ts), change=change,
                           previous=str(previous) if previous is not None else None, key=deps.key())


def register(app: App) -> None:
    app.event("message")(on_message)
    app.action(PROPOSE_ACTION_ID)(on_propose)
    app.action(WITHDRAW_ACTION_ID)(on_withdraw)
    app.action(REJECT_ACTION_ID)(on_reject)
    app.action(CREDIT_APPROVE_ACTION_ID)(on_credit_approve)
    app.action(CREDIT_REJECT_ACTION_ID)(on_credit_reject)
    app.action(OVERFLOW_ACTION_ID)(on_invoice_overflow)
    app.view(REASON_CALLBACK_ID)(on_reason)
    app.view(OPEN_CALLBACK_ID)(on_open)
