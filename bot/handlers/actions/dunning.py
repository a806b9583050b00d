""""Send all" and "Skip one" on the daily dunning proposal (finance managers; the workflow checks)."""

from __future__ import annotations

from datetime import date
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid
from bot.blocks.dunning import SEND_ALL_ACTION_ID, SKIP_ONE_ACTION_ID, proposal_blocks
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.slack.dunning import deliver, show_outcome
from bot.workflows import dunning as wf


def on_dunning_action(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                      context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        _act(body, action, client, context)


def _act(body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    deps = deps_of(context)
    actor = str((body.get("user") or {}).get("id", ""))
    container = body.get("container") or {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    raw = (action.get("selected_option") or {}).get("value") if action.get("type") == "static_select" \
        else action.get("value")
    day, _, invoice = str(raw or "").partition(":")
    try:
        today = date.fromisoformat(day)
    except ValueError:
        raise Invalid("this choice carries no date") from None
    db = deps.db()
    if action.get("action_id") == SEND_ALL_ACTION_ID:
        sent = wf.send_dunning(db, today=today, actor=actor, key=deps.key())
        deliver(client, db, sent, channel=channel, thread_ts=ts)
        show_outcome(client, channel=channel, ts=ts, letters=sent, today=today,
                     outcome=f"<@{actor}> sent {len(sent)} letter(s); the PDFs are in the thread.")
        return
    skipped = wf.skip_letter(db, invoice_number=invoice, today=today, actor=actor, key=deps.key())
    left = wf.run_dunning(db, today=today, actor=actor, key=None, dry_run=True)
    if channel and ts:
        client.chat_update(channel=channel, ts=ts, blocks=proposal_blocks(left, today=today),
                           text=f"{skipped.invoice} skipped")


def register(app: App) -> None:
    for action_id in (SEND_ALL_ACTION_ID, SKIP_ONE_ACTION_ID):
        app.action(action_id)(on_dunning_action)
