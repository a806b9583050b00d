"""The decision after an Approve / Reject / Force click, off the web process.

The web process only acks, parses and submits ``decide`` (:mod:`bot.handlers.actions.decide`); in
embedded mode the task runs in the ``decisions`` process pool at a lower priority, on a
Procrastinate worker in distributed mode, so a burst of clicks is acked at once while earlier
decisions still wait for the database and Slack. The message update and thread reply follow the
commit (reactions to ``exception.decided``); what is left here is telling the person who clicked
when it did not go through, and refreshing what they looked at.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient

from billing.errors import BillingError, Conflict
from bot import context
from bot.slack.client import get_client
from bot.slack.exceptions import refresh_surface, show_exception
from bot.slack.home import publish_home
from bot.slack.replies import Where, error_text, tell
from bot.slack.users import group_lookup, profile_lookup
from bot.tasks.registry import task
from bot.workflows.decisions import DecisionKind, decide
from storage.settings import get_settings

log = logging.getLogger(__name__)

#: The name handlers submit.
DECIDE = "decide"


def decide_for(client: WebClient, *, exception_id: int, decision: DecisionKind, subject_hash: str,
               reason: str | None, where: Where, checked: list[str] | None = None) -> None:
    """Run the decision workflow for the person at ``where``. A stale click refreshes what they saw,
    then is told (the Conflict propagates)."""
    now = datetime.now(UTC)
    try:
        decide(context.get_db(), exception_id=exception_id, decision=decision, actor=where.user_id,
               subject_hash=subject_hash, reason=reason, signing_key=context.get_key(), now=now,
               today=now.astimezone(get_settings().tz).date(), lookup_profile=profile_lookup(client),
               group_lookup=group_lookup(client), checked=checked or ())
    except Conflict as e:
        if e.code == "stale":
            refresh_surface(client, context.get_db(), where, exception_id,
                            default_channel=get_settings().exceptions_channel)
        raise
    if where.from_home:
        publish_home(client, context.get_db(), where.user_id)


def _restore(client: WebClient, exception_id: int) -> None:
    """The decision did not go through: the message shows its buttons again in place of "Working…"."""
    try:
        show_exception(client, context.get_db(), exception_id, default_channel=get_settings().exceptions_channel)
    except Exception:  # noqa: BLE001 - telling the user comes next and matters more
        log.exception("restoring the message of exception %s failed", exception_id)


@task(DECIDE, queue="decisions", own_process=True)
def decide_task(*, exception_id: int, decision: DecisionKind, subject_hash: str, reason: str | None,
                where: dict[str, Any], checked: list[str] | None = None) -> dict[str, Any]:
    """Decide one exception for the person who clicked (``where``), then tell them how it went: a
    refusal or conflict ("already approved by @x at t") is an ephemeral message, and so is an
    unexpected failure (which also fails the job)."""
    client = get_client()
    w = Where.model_validate(where)
    try:
        decide_for(client, exception_id=exception_id, decision=decision, subject_hash=subject_hash,
                   reason=reason, where=w, checked=checked)
    except BillingError as e:
        _restore(client, exception_id)
        tell(client, w, error_text(e))
        return {"decided": False, "code": getattr(e, "code", None), "message": e.message}
    except Exception as e:
        _restore(client, exception_id)
        tell(client, w, error_text(e))
        raise
    return {"decided": True}
