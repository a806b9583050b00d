"""Approve / Reject buttons on a master-data change set's message (issue 14).

Approve calls the workflow at once (it checks the role and that the clicker is not the author);
Reject first checks the clicker may decide, then opens the reason modal; its submission rejects."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid
from bot.blocks.change_sets import (
    APPROVE_ACTION_ID,
    REASON_ACTION_ID,
    REASON_BLOCK_ID,
    REASON_CALLBACK_ID,
    REJECT_ACTION_ID,
    parse_button_value,
    reason_modal,
)
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.handlers.payloads import where_of
from bot.workflows.change_sets import check_may_decide, decide_change_set, get_change_set

MIN_REASON = 3


def _parse(action: dict[str, Any]) -> tuple[int, str]:
    try:
        return parse_button_value(str(action.get("value", "")))
    except ValueError:
        raise Invalid("this button carries no change set; the message may be from an older billbot") from None


def on_approve(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
               context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        cs_id, digest = _parse(action)
        decide_change_set(deps.db(), change_set_id=cs_id, decision="approve", actor=where_of(body).user_id,
                          key=deps.key(), subject_hash=digest)


def on_reject(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
              context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        cs_id, digest = _parse(action)
        where = where_of(body)
        check_may_decide(deps.db(), change_set_id=cs_id, actor=where.user_id, decision="reject")
        client.views_open(trigger_id=body.get("trigger_id"), view=reason_modal(
            get_change_set(deps.db(), cs_id), {"cs": cs_id, "h": digest, "c": where.channel_id}))


def on_reason(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    values = (view.get("state") or {}).get("values") or {}
    reason = str(((values.get(REASON_BLOCK_ID) or {}).get(REASON_ACTION_ID) or {}).get("value") or "")
    if len(reason.strip()) < MIN_REASON:
        ack(response_action="errors", errors={REASON_BLOCK_ID: "Please give a reason; it goes into the audit log."})
        return
    ack()
    with after_ack(body, client):
        meta = json.loads(view.get("private_metadata") or "{}")
        deps = deps_of(context)
        decide_change_set(deps.db(), change_set_id=int(meta["cs"]), decision="reject",
                          actor=str((body.get("user") or {}).get("id", "")), key=deps.key(), reason=reason,
                          subject_hash=str(meta["h"]))


def register(app: App) -> None:
    app.action(APPROVE_ACTION_ID)(on_approve)
    app.action(REJECT_ACTION_ID)(on_reject)
    app.view(REASON_CALLBACK_ID)(on_reason)
