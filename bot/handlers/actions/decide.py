"""Approve / Reject / Force buttons (on exception messages and in the App Home).

Approve decides at once; Reject and Force first check the clicker may decide (a refusal is told and
audited right away) and then open the reason modal (:mod:`bot.handlers.views.reason` decides).

The decision itself is the ``decide`` task of the jobs facade, submitted right after the ack: the
web process only acks, parses and hands on (in embedded mode the task runs in the ``decisions``
process pool at a lower priority, on a Procrastinate worker in distributed mode), so a burst of
clicks is acked at once while earlier decisions still wait for the database and Slack.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from billing.errors import BillingError, Conflict
from bot.handlers.deps import Deps, deps_of
from bot.handlers.errors import after_ack
from bot.handlers.payloads import DecisionClick, Where
from bot.tasks import task

ACTION_PATTERN = re.compile(r"^decide_(approve|reject|force)$")


def refresh_surface(deps: Deps, client: Any, where: Where, exception_id: int) -> None:
    """Bring what the user looked at up to date: the channel message, or their App Home."""
    from bot.workflows.notify_slack import refresh_exception_message

    refresh_exception_message(exception_id)
    if where.from_home:
        from bot.handlers.home import publish_home

        publish_home(deps, client, where.user_id)


def decide_and_render(deps: Deps, client: Any, *, exception_id: int, decision: str, subject_hash: str,
                      reason: str | None, where: Where) -> None:
    """Run the decision workflow; the message update and thread reply follow from
    ``exception.decided`` after commit. A stale click refreshes what the user saw, then is told."""
    from bot.workflows.decisions import decide

    now = datetime.now(UTC)
    try:
        decide(deps.db(), exception_id=exception_id, decision=decision, actor=where.user_id,
               subject_hash=subject_hash, reason=reason, signing_key=deps.key(), now=now,
               today=deps.today(now), client=client)
    except Conflict as e:
        if e.code == "stale":
            refresh_surface(deps, client, where, exception_id)
        raise
    if where.from_home:
        from bot.handlers.home import publish_home

        publish_home(deps, client, where.user_id)


@task("decide", queue="decisions", own_process=True)
def decide_task(*, exception_id: int, decision: str, subject_hash: str, reason: str | None,
                where: dict[str, Any]) -> dict[str, Any]:
    """Decide one exception for the person who clicked (``where``), then tell them how it went: the
    message update and thread reply follow the commit; a refusal or conflict ("already approved by
    @x at t") is an ephemeral message, and so is an unexpected failure (which also fails the job)."""
    from bot.handlers.errors import error_text, tell
    from bot.tasks import wire_worker
    from bot.workflows.notify_slack import wired_client

    wire_worker()
    client = wired_client()
    deps = Deps.from_context()
    w = Where.model_validate(where)
    try:
        decide_and_render(deps, client, exception_id=exception_id, decision=decision, subject_hash=subject_hash,
                          reason=reason, where=w)
    except BillingError as e:
        tell(client, w, error_text(e))
        return {"decided": False, "code": getattr(e, "code", None), "message": e.message}
    except Exception as e:
        tell(client, w, error_text(e))
        raise
    return {"decided": True}


def request_decision(deps: Deps, *, exception_id: int, decision: str, subject_hash: str, reason: str | None,
                     where: Where) -> None:
    """Hand the decision to the ``decide`` task (called right after the ack)."""
    deps.background("decide", exception_id=exception_id, decision=decision, subject_hash=subject_hash,
                    reason=reason, where=where.model_dump())


def on_decide(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any, context: Any) -> None:
    ack()
    with after_ack(body, client):
        _decide_clicked(body, action, client, context)


def _decide_clicked(body: dict[str, Any], action: dict[str, Any], client: Any, context: Any) -> None:
    deps = deps_of(context)
    click = DecisionClick.parse(body, action)
    if click.decision == "approve":
        request_decision(deps, exception_id=click.exception_id, decision="approve",
                         subject_hash=click.subject_hash, reason=None, where=click.where)
        return
    # Reject / Force: the modal must open while the trigger id is fresh (3 s), so here, not deferred
    from bot.blocks.modals import reason_modal
    from bot.workflows.decisions import preflight

    try:
        exc = preflight(deps.db(), exception_id=click.exception_id, decision=click.decision,
                        actor=click.where.user_id, subject_hash=click.subject_hash, signing_key=deps.key(),
                        client=client)
    except Conflict as e:
        if e.code == "stale":
            refresh_surface(deps, client, click.where, click.exception_id)
        raise
    client.views_open(trigger_id=click.trigger_id, view=reason_modal(exc, click.decision, click.metadata()))


def register(app: Any) -> None:
    app.action(ACTION_PATTERN)(on_decide)
