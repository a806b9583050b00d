"""Cash-application choices on a payment's message: "Allocate to…", "Write off difference", "Refund".

Ack, parse the value (``payment_id:invoice``), call one workflow (it checks the clicker's role and
separation of duties and writes the signed audit record), then update the message in place.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid
from bot.blocks.payments import ALLOCATE_ACTION_ID, REFUND_ACTION_ID, WRITE_OFF_ACTION_ID
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.slack.payments import show_decided
from bot.workflows import payments as wf


def _parse(value: str) -> tuple[int, str]:
    pid, _, invoice = (value or "").partition(":")
    if not pid.isdigit():
        raise Invalid("this choice carries no payment id")
    return int(pid), invoice


def _message(body: dict[str, Any]) -> tuple[str | None, str | None]:
    container = body.get("container") or {}
    return container.get("channel_id"), container.get("message_ts")


def on_cash_action(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                   context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        _decide(body, action, client, context)


def _decide(body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    deps = deps_of(context)
    actor = str((body.get("user") or {}).get("id", ""))
    value = (action.get("selected_option") or {}).get("value") if action.get("type") == "static_select" \
        else action.get("value")
    payment_id, invoice = _parse(str(value or ""))
    db = deps.db()
    kind = action.get("action_id")
    if kind == ALLOCATE_ACTION_ID:
        what, amount = "allocated", wf.allocate(db, payment_id=payment_id, invoice_number=invoice, actor=actor,
                                                key=deps.key())
    elif kind == WRITE_OFF_ACTION_ID:
        what, amount = "wrote off", wf.write_off(db, invoice_number=invoice, actor=actor, key=deps.key(),
                                                 payment_id=payment_id,
                                                 reason=f"difference of payment {payment_id}, written off in Slack")
    elif kind == REFUND_ACTION_ID:
        what, amount = "recorded a refund of", wf.refund(db, payment_id=payment_id, actor=actor, key=deps.key(),
                                                         reason="over-payment refunded from Slack")
        invoice = ""
    else:
        raise Invalid(f"unknown cash-application action {kind!r}")
    channel, ts = _message(body)
    show_decided(client, db, payment_id, channel=channel, ts=ts, actor=actor, what=what, amount=amount,
                 invoice=invoice or None)


def register(app: App) -> None:
    for action_id in (ALLOCATE_ACTION_ID, WRITE_OFF_ACTION_ID, REFUND_ACTION_ID):
        app.action(action_id)(on_cash_action)
