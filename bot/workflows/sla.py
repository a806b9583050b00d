"""SLA timers as data: the sweep that reminds and escalates open exceptions.

Each open exception carries ``remind_at`` (default: half its SLA) and ``due_at``. :func:`sweep`
runs every minute and at start-up, in any number of processes. Every step is claimed by ONE
conditional UPDATE whose row count decides who acts:

- reminder: ``UPDATE exceptions SET reminded_at = :now WHERE id = :id AND reminded_at IS NULL
  AND state IN ('pending', 'escalated') AND remind_at <= :now``
- escalation: ``UPDATE exceptions SET state = 'escalated', escalated_at = :now … WHERE id = :id
  AND escalated_at IS NULL AND state = 'pending' AND due_at <= :now``

A concurrent sweeper's UPDATE waits for the winner's row lock (PostgreSQL) or its
``BEGIN IMMEDIATE`` (SQLite), re-evaluates the WHERE clause and matches nothing. Because the state
lives in the row, a process that was down across ``due_at`` catches up on its first sweep — once.
Slack is called after the claim commits; if the post fails the claim is handed back (another
conditional UPDATE) so the next sweep retries, and nothing is ever posted twice for one claim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.money import fmt
from bot.workflows.audit import record
from bot.workflows.effects import notify
from storage.db import Database
from storage.models import OPEN_EXCEPTION_STATES, BillingException, User, UserRole

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    reminded: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "reminder 12: channel_not_found"


def _claim_reminder(db: Database, exc_id: int, now: datetime, key: Ed25519PrivateKey | None) -> bool:
    with db.transaction() as s:
        res = s.execute(
            update(BillingException)
            .where(BillingException.id == exc_id, BillingException.reminded_at.is_(None),
                   BillingException.state.in_(OPEN_EXCEPTION_STATES), BillingException.remind_at <= now)
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        record(s, key=key, actor="system", action="exception.reminded", subject_type="exception",
               subject_id=exc_id, payload={"reminded_at": now.isoformat()}, now=now)
    return True


def _claim_escalation(db: Database, exc_id: int, now: datetime, key: Ed25519PrivateKey | None) -> bool:
    with db.transaction() as s:
        res = s.execute(
            update(BillingException)
            .where(BillingException.id == exc_id, BillingException.escalated_at.is_(None),
                   BillingException.state == "pending", BillingException.due_at <= now)
            .values(state="escalated", escalated_at=now, updated_at=now, version=BillingException.version + 1)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        record(s, key=key, actor="system", action="exception.escalated", subject_type="exception",
               subject_id=exc_id, payload={"escalated_at": now.isoformat(), "from": "pending"}, now=now)
        notify(s, "exception.updated", exception_id=exc_id)
    return True


def _release(db: Database, exc_id: int, now: datetime, what: str, *, error: str,
             key: Ed25519PrivateKey | None) -> None:
    """Hand a claim back after a failed Slack post, only if nobody moved the row since."""
    with db.transaction() as s:
        q = update(BillingException).where(BillingException.id == exc_id)
        if what == "reminder":
            q = q.where(BillingException.reminded_at == now).values(reminded_at=None)
        else:
            q = q.where(BillingException.escalated_at == now, BillingException.state == "escalated").values(
                state="pending", escalated_at=None, updated_at=now, version=BillingException.version + 1)
        res = s.execute(q.execution_options(synchronize_session=False))
        if res.rowcount == 1:  # type: ignore[attr-defined]
            record(s, key=key, actor="system", action=f"exception.{what}_failed", subject_type="exception",
                   subject_id=exc_id, payload={"error": error, "retry": True}, now=now)
            if what == "escalation":
                notify(s, "exception.updated", exception_id=exc_id)


def _users_with_role(s: Session, role: str) -> list[str]:
    return list(s.execute(
        select(User.slack_id).join(UserRole, UserRole.slack_id == User.slack_id)
        .where(UserRole.role == role).order_by(User.slack_id)
    ).scalars())


def _describe(e: BillingException) -> str:
    who = e.advertiser.name if e.advertiser is not None else e.advertiser_id
    period = f" {e.period_start}–{e.period_end}" if e.period_start and e.period_end else ""
    return f"{e.kind.replace('_', ' ')} #{e.id} for {who}{period}: {money_text(e.amount, e.currency)} ({e.cause})"


def money_text(amount: Decimal, currency: str) -> str:
    """``1,234.50 EUR`` for people (the CLI's JSON uses :func:`billing.money.fmt`)."""
    return f"{Decimal(fmt(amount, currency)):,} {currency}"


def _post_reminder(client: Any, e: BillingException, assignees: list[str], exceptions_channel: str) -> None:
    mentions = " ".join(f"<@{u}>" for u in assignees if u != e.started_by) or "Approvers"
    due = e.due_at.strftime("%Y-%m-%d %H:%M UTC") if e.due_at else "soon"
    text = f":hourglass_flowing_sand: {mentions}: still waiting for a decision on {_describe(e)}. Due {due}."
    if e.channel and e.message_ts:
        client.chat_postMessage(channel=e.channel, thread_ts=e.message_ts, text=text)
    else:  # never posted (Slack was down when it opened): remind in the exceptions channel
        client.chat_postMessage(channel=e.channel or exceptions_channel, text=text)


def _post_escalation(client: Any, e: BillingException, managers: list[str], managers_channel: str) -> list[str]:
    """Channel post first (its failure hands the claim back: nothing was posted yet); then one DM per
    finance manager — a failed DM is reported, never retried, so nobody gets the channel post twice."""
    due = e.due_at.strftime("%Y-%m-%d %H:%M UTC") if e.due_at else "?"
    text = f":rotating_light: SLA breached (due {due}): {_describe(e)} is escalated to the finance managers."
    link = ""
    if e.channel and e.message_ts:
        try:
            link = client.chat_getPermalink(channel=e.channel, message_ts=e.message_ts).get("permalink", "")
        except Exception:  # a missing permalink only shortens the message
            link = ""
    if link:
        text += f" <{link}|Open the exception>"
    client.chat_postMessage(channel=managers_channel, text=text)
    failed = []
    for user in managers:
        try:
            dm = client.conversations_open(users=user)
            client.chat_postMessage(channel=dm["channel"]["id"], text=text)
        except Exception as err:  # one unreachable manager must not block the others
            log.warning("escalation DM of exception %s to %s failed: %s", e.id, user, err)
            failed.append(f"escalation {e.id} DM {user}: {err}")
    return failed


def sweep(
    db: Database,
    *,
    now: datetime | None = None,
    client: Any = None,
    key: Ed25519PrivateKey | None = None,
    managers_channel: str | None = None,
    exceptions_channel: str | None = None,
) -> SweepResult:
    """Remind and escalate every open exception whose timer passed, each exactly once.

    Reminders go into the exception's Slack thread (``chat.postMessage`` with ``thread_ts``),
    mentioning the approvers; escalations post to the managers channel and DM every
    ``finance_manager`` (``conversations.open`` + ``chat.postMessage``). ``client=None`` only
    moves the rows (no Slack)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if managers_channel is None or exceptions_channel is None:
        from bot.settings import get_settings

        st = get_settings()
        managers_channel = managers_channel or st.managers_channel
        exceptions_channel = exceptions_channel or st.exceptions_channel
    with db.read() as s:
        remind_ids = list(s.execute(
            select(BillingException.id).where(
                BillingException.state.in_(OPEN_EXCEPTION_STATES), BillingException.reminded_at.is_(None),
                BillingException.remind_at.is_not(None), BillingException.remind_at <= now,
            ).order_by(BillingException.id)).scalars())
        escalate_ids = list(s.execute(
            select(BillingException.id).where(
                BillingException.state == "pending", BillingException.escalated_at.is_(None),
                BillingException.due_at.is_not(None), BillingException.due_at <= now,
            ).order_by(BillingException.id)).scalars())
        approvers = _users_with_role(s, "approver")
        managers = _users_with_role(s, "finance_manager")

    result = SweepResult()
    for exc_id in remind_ids:
        if not _claim_reminder(db, exc_id, now, key):
            continue
        try:
            if client is not None:
                with db.read() as s:
                    e = s.get(BillingException, exc_id)
                    assert e is not None
                    _post_reminder(client, e, approvers, exceptions_channel)
            result.reminded.append(exc_id)
        except Exception as err:  # Slack failed: hand the claim back so the next sweep retries
            log.warning("reminder for exception %s failed: %s", exc_id, err)
            _release(db, exc_id, now, "reminder", error=str(err), key=key)
            result.failed.append(f"reminder {exc_id}: {err}")
    for exc_id in escalate_ids:
        if not _claim_escalation(db, exc_id, now, key):
            continue
        try:
            if client is not None:
                with db.read() as s:
                    e = s.get(BillingException, exc_id)
                    assert e is not None
                    result.failed.extend(_post_escalation(client, e, managers, managers_channel))
            result.escalated.append(exc_id)
        except Exception as err:  # Slack failed: hand the claim back so the next sweep retries
            log.warning("escalation of exception %s failed: %s", exc_id, err)
            _release(db, exc_id, now, "escalation", error=str(err), key=key)
            result.failed.append(f"escalation {exc_id}: {err}")
    return result
