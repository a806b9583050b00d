"""Submission of the reason modal (Reject / Force): check the reason, close the modal, decide."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid
from bot.blocks.modals import REASON_BLOCK_ID, REASON_CALLBACK_ID
from bot.handlers.actions.decide import request_decision
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.handlers.payloads import ReasonSubmission

MIN_REASON = 3


def on_reason(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    try:
        sub = ReasonSubmission.parse(body, view)
    except Invalid as e:  # foreign or damaged metadata: told in the modal, acked (never a connection error)
        ack(response_action="errors", errors={REASON_BLOCK_ID: e.message})
        return
    if len(sub.reason.strip()) < MIN_REASON:
        ack(response_action="errors",
            errors={REASON_BLOCK_ID: "Please give a reason; it goes into the signed decision record."})
        return
    ack()
    with after_ack(body, client):
        request_decision(deps_of(context), exception_id=sub.exception_id, decision=sub.decision,
                         subject_hash=sub.subject_hash, reason=sub.reason, where=sub.where, client=client)


def register(app: App) -> None:
    app.view(REASON_CALLBACK_ID)(on_reason)
