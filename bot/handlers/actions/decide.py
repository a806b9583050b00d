"""Approve / Reject / Force buttons (on exception messages and in the App Home).

Ack, parse the click, hand on: Approve (confirmed in Slack's dialog) shows "Working…" on the
message and submits the ``decide`` task at once (:mod:`bot.tasks.decide` decides, off the web
process) unless the exception's checklist applies; Reject and Force (and such an Approve) first check
the clicker may decide (a refusal is told — naming who can — and audited right away) and then open the
reason modal directly, which is their confirmation (:mod:`bot.handlers.views.reason` shows "Working…"
and submits the task when the reason and the ticked items arrive).
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Conflict
from bot.blocks.modals import reason_modal
from bot.handlers.deps import Deps, deps_of
from bot.handlers.errors import after_ack
from bot.handlers.payloads import DecisionClick
from bot.slack.exceptions import refresh_surface, show_working
from bot.slack.replies import Where
from bot.slack.users import group_lookup, profile_lookup
from bot.workflows.decisions import DecisionKind, preflight
from bot.workflows.review import checklist_for
from storage.models import BillingException

# a view repeats the buttons once per exception (the App Home), each set with its own ":<id>" suffix: action
# ids are unique within a view
ACTION_PATTERN = re.compile(r"^decide_(approve|reject|force)(:\d+)?$")


def request_decision(deps: Deps, *, exception_id: int, decision: DecisionKind, subject_hash: str,
                     reason: str | None, where: Where, client: WebClient | None = None,
                     checked: list[str] | None = None) -> None:
    """Hand the decision to the ``decide`` task (called right after the ack). With ``client``, the
    message shows "Working…" in place of its buttons first, so nobody clicks again meanwhile."""
    if client is not None:
        show_working(client, deps.db(), exception_id, decision=decision, user_id=where.user_id)
    extra = {"checked": checked} if checked else {}
    deps.background("decide", exception_id=exception_id, decision=decision, subject_hash=subject_hash,
                    reason=reason, where=where.model_dump(), **extra)


def _has_checklist(deps: Deps, exception_id: int, decision: DecisionKind) -> bool:
    with deps.db().read() as s:
        exc = s.get(BillingException, exception_id)
        return exc is not None and bool(checklist_for(exc, decision))


def on_decide(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
              context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        _decide_clicked(body, action, client, context)


def _decide_clicked(body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    deps = deps_of(context)
    click = DecisionClick.parse(body, action)
    if click.decision == "approve" and not _has_checklist(deps, click.exception_id, "approve"):
        request_decision(deps, exception_id=click.exception_id, decision="approve",
                         subject_hash=click.subject_hash, reason=None, where=click.where, client=client)
        return
    # Reject / Force, and Approve under a checklist: the modal must open while the trigger id is fresh
    # (3 s), so here, not deferred
    db = deps.db()
    try:
        exc = preflight(db, exception_id=click.exception_id, decision=click.decision,
                        actor=click.where.user_id, subject_hash=click.subject_hash, signing_key=deps.key(),
                        lookup_profile=profile_lookup(client), group_lookup=group_lookup(client))
    except Conflict as e:
        if e.code == "stale":
            refresh_surface(client, db, click.where, click.exception_id,
                            default_channel=deps.settings.exceptions_channel)
        raise
    client.views_open(trigger_id=click.trigger_id, view=reason_modal(exc, click.decision, click.metadata()))


def register(app: App) -> None:
    app.action(ACTION_PATTERN)(on_decide)
