"""Submission of the decision modal (Reject / Force, and Approve under a checklist): check the reason and
that every checklist item is ticked, close the modal, decide."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid
from bot.blocks.common import clip
from bot.blocks.modals import CHECKLIST_BLOCK_ID, REASON_BLOCK_ID, REASON_CALLBACK_ID
from bot.handlers.actions.decide import request_decision
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.handlers.payloads import ReasonSubmission
from bot.workflows.review import missing_items
from storage.models import BillingException

MIN_REASON = 3


def on_reason(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    try:
        sub = ReasonSubmission.parse(body, view)
    except Invalid as e:  # foreign or damaged metadata: told in the modal, acked (never a connection error)
        ack(response_action="errors", errors={REASON_BLOCK_ID: e.message})
        return
    missing = _missing_items(context, sub)
    if missing:  # every item ticked, or the modal stays open naming what is not (issue 21)
        ack(response_action="errors", errors={CHECKLIST_BLOCK_ID: clip(
            "Tick every item before you " + sub.decision + ". Not ticked: " + "; ".join(missing), 2000)})
        return
    if sub.decision != "approve" and len(sub.reason.strip()) < MIN_REASON:
        ack(response_action="errors",
            errors={REASON_BLOCK_ID: "Please give a reason; it goes into the signed decision record."})
        return
    ack()
    with after_ack(body, client):
        request_decision(deps_of(context), exception_id=sub.exception_id, decision=sub.decision,
                         subject_hash=sub.subject_hash, reason=sub.reason or None, where=sub.where,
                         client=client, checked=sub.checked)


def _missing_items(context: BoltContext, sub: ReasonSubmission) -> list[str]:
    """The checklist items of the decision not ticked in the modal (the workflow checks again)."""
    with deps_of(context).db().read() as s:
        exc = s.get(BillingException, sub.exception_id)
        return missing_items(exc, sub.decision, sub.checked) if exc is not None else []


def register(app: App) -> None:
    app.view(REASON_CALLBACK_ID)(on_reason)
