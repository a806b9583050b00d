"""Cash-application exceptions in Slack: reactions to ``payment.exception`` and the message update
after a person decided (allocate, write off, refund)."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from slack_sdk import WebClient

from bot.blocks.common import mention, money_text
from bot.blocks.payments import fallback, payment_message
from bot.slack.context import SlackContext
from bot.workflows.payments import payment_case, payment_posted
from storage.db import Database
from storage.settings import get_settings

log = logging.getLogger(__name__)


def on_payment_exception(sc: SlackContext, *, payment_id: int, **_: Any) -> None:
    """``payment.exception``: post the payment to the exceptions channel with its choices."""
    client = sc.client
    if client is None:
        return
    case = payment_case(sc.db(), payment_id, tolerance=get_settings().payment_tolerance)
    resp = client.chat_postMessage(channel=sc.exceptions_channel, blocks=payment_message(case), text=fallback(case))
    if resp.get("ts"):  # the SLA reminder replies in this thread
        payment_posted(sc.db(), payment_id, channel=str(resp.get("channel") or sc.exceptions_channel),
                       ts=str(resp["ts"]))


def show_decided(client: WebClient, db: Database, payment_id: int, *, channel: str | None, ts: str | None,
                 actor: str, what: str, amount: Decimal, invoice: str | None = None) -> None:
    """Update the payment's message in place after a decision ("<@U…> allocated 77.77 EUR to INV-…");
    the buttons go once nothing is left to decide."""
    if not channel or not ts:
        return
    case = payment_case(db, payment_id, tolerance=get_settings().payment_tolerance)
    outcome = f"{mention(actor)} {what} {money_text(amount, case.payment.currency)}" + (
        f" {'to' if what == 'allocated' else 'on'} {invoice}." if invoice else ".")
    client.chat_update(channel=channel, ts=ts, blocks=payment_message(case, outcome=outcome), text=fallback(case))
