"""SLA reminders and escalations in Slack: the sweep's talking half (:mod:`bot.workflows.sla` moves
the rows). Each due exception is claimed by its conditional UPDATE, then told; a failed post hands
the claim back so the next sweep retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.blocks.common import esc, mention, money_text
from bot.slack.held import remind_held
from bot.workflows import decisions, sla
from storage.db import Database
from storage.models import BillingException, Payment
from storage.settings import get_settings, local_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    reminded: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    auto_approved: list[int] = field(default_factory=list)  # the rule's timeout outcome (issue 21)
    failed: list[str] = field(default_factory=list)  # "reminder 12: channel_not_found"
    held_reminded: list[int] = field(default_factory=list)  # owners of items held for correction
    payments_reminded: list[int] = field(default_factory=list)  # cash-application exceptions (payment ids)
    payments_escalated: list[int] = field(default_factory=list)


def _describe(e: BillingException) -> str:
    who = e.advertiser.name if e.advertiser is not None else e.advertiser_id
    period = f" {e.period_start}–{e.period_end}" if e.period_start and e.period_end else ""
    return (f"{e.kind.replace('_', ' ')} #{e.id} for {esc(who)}{period}: {money_text(e.amount, e.currency)} "
            f"({esc(e.cause)})")


def _assignees(e: BillingException, approvers: list[str], managers: list[str]) -> tuple[list[str], str | None]:
    """Who a reminder names: the managers for a repeat after expiry, else the routing rule's group
    (its listed users, or the Slack user group mention), else every approver."""
    if sla.reminder_goes_to_managers(e):
        return managers, None
    group = (e.review or {}).get("approvers")
    if group:
        return list(group.get("users") or []), (f"<!subteam^{group['group']}>" if group.get("group") else None)
    return approvers, None


def _post_reminder(client: WebClient, e: BillingException, assignees: list[str], exceptions_channel: str,
                   *, group: str | None = None, overdue: bool = False) -> None:
    mentions = " ".join(mention(u) for u in assignees if u != e.started_by)
    mentions = " ".join(x for x in (group, mentions) if x) or "Approvers"
    due = local_time(e.due_at, empty="soon")
    text = f":hourglass_flowing_sand: {mentions}: still waiting for a decision on {_describe(e)}. Due {due}."
    if overdue:
        text = (f":rotating_light: {mentions}: the SLA of {_describe(e)} expired at {due} and it still waits "
                "for a decision.")
    if e.channel and e.message_ts:
        client.chat_postMessage(channel=e.channel, thread_ts=e.message_ts, text=text)
    else:  # never posted (Slack was down when it opened): remind in the exceptions channel
        client.chat_postMessage(channel=e.channel or exceptions_channel, text=text)
    if e.owner:  # issue 21: the owner gets the reminder in a DM (a failed DM is logged, the thread has it)
        try:
            dm = client.conversations_open(users=e.owner)
            client.chat_postMessage(channel=dm["channel"]["id"], text=(
                f":hourglass_flowing_sand: You own {_describe(e)}; it is still waiting for a decision. Due {due}."))
        except SlackClientError as err:
            log.warning("reminder DM of exception %s to its owner %s failed: %s", e.id, e.owner, err)


def _post_escalation(client: WebClient, e: BillingException, managers: list[str], managers_channel: str) -> list[str]:
    """Channel post first (its failure hands the claim back: nothing was posted yet); then one DM per
    finance manager — a failed DM is reported, never retried, so nobody gets the channel post twice."""
    due = local_time(e.due_at, empty="?")
    text = f":rotating_light: SLA breached (due {due}): {_describe(e)} is escalated to the finance managers."
    if e.owner:
        text += f" Owner: {mention(e.owner)}."
    link = ""
    if e.channel and e.message_ts:
        try:
            link = client.chat_getPermalink(channel=e.channel, message_ts=e.message_ts).get("permalink", "")
        except SlackClientError:  # a missing permalink only shortens the message
            link = ""
    if link:
        text += f" <{link}|Open the exception>"
    return _tell_managers(client, text, managers, managers_channel, f"escalation {e.id}")


def _tell_managers(client: WebClient, text: str, managers: list[str], managers_channel: str, what: str) -> list[str]:
    client.chat_postMessage(channel=managers_channel, text=text)
    failed = []
    for user in managers:
        try:
            dm = client.conversations_open(users=user)
            client.chat_postMessage(channel=dm["channel"]["id"], text=text)
        except SlackClientError as err:  # one unreachable manager must not block the others
            log.warning("%s DM to %s failed: %s", what, user, err)
            failed.append(f"{what} DM {user}: {err}")
    return failed


def _describe_payment(p: Payment) -> str:
    what = {"unmatched": "unmatched payment", "overpaid": "over-payment", "partial": "under-payment"}.get(
        p.state, "payment")
    return f"{what} #{p.id} of {money_text(p.amount, p.currency)} from {esc(p.payer_name or 'an unknown payer')}"


def _post_payment_reminder(client: WebClient, p: Payment, assignees: list[str], exceptions_channel: str) -> None:
    mentions = " ".join(mention(u) for u in assignees) or "Cash appliers"
    text = (f":hourglass_flowing_sand: {mentions}: still waiting for a decision on {_describe_payment(p)}. "
            f"Due {local_time(p.due_at, empty='soon')}.")
    if p.channel and p.message_ts:
        client.chat_postMessage(channel=p.channel, thread_ts=p.message_ts, text=text)
    else:  # never posted: remind in the exceptions channel
        client.chat_postMessage(channel=exceptions_channel, text=text)


def _post_payment_escalation(client: WebClient, p: Payment, managers: list[str], managers_channel: str) -> list[str]:
    text = (f":rotating_light: SLA breached (due {local_time(p.due_at, empty='?')}): {_describe_payment(p)} "
            "is escalated to the finance managers.")
    if p.channel and p.message_ts:
        try:
            link = client.chat_getPermalink(channel=p.channel, message_ts=p.message_ts).get("permalink", "")
        except SlackClientError:
            link = ""
        if link:
            text += f" <{link}|Open the payment>"
    return _tell_managers(client, text, managers, managers_channel, f"payment escalation {p.id}")


def sweep(
    db: Database,
    *,
    now: datetime | None = None,
    client: WebClient | None = None,
    key: Ed25519PrivateKey | None = None,
    managers_channel: str | None = None,
    exceptions_channel: str | None = None,
) -> SweepResult:
    """Remind and escalate every open exception whose timer passed, each exactly once; remind the
    owners of items held for correction (:func:`bot.slack.held.remind_held`).

    Reminders go into the exception's Slack thread (``chat.postMessage`` with ``thread_ts``),
    mentioning the approvers; escalations post to the managers channel and DM every
    ``finance_manager`` (``conversations.open`` + ``chat.postMessage``). ``client=None`` only
    moves the rows (no Slack)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    st = get_settings()
    managers_channel = managers_channel or st.managers_channel
    exceptions_channel = exceptions_channel or st.exceptions_channel
    todo = sla.due(db, now)
    result = SweepResult()
    for exc_id in todo.remind:
        claimed = sla.claim_reminder(db, exc_id, now, key)
        if claimed is None:
            continue
        try:
            if client is not None:
                e = sla.load_exception(db, exc_id)
                who, group = _assignees(e, todo.approvers, todo.managers)
                _post_reminder(client, e, who, exceptions_channel, group=group,
                               overdue=sla.reminder_goes_to_managers(e))
            result.reminded.append(exc_id)
        except SlackClientError as err:  # hand the claim back so the next sweep retries
            log.warning("reminder for exception %s failed: %s", exc_id, err)
            sla.release(db, exc_id, now, "reminder", error=str(err), key=key, claimed=claimed)
            result.failed.append(f"reminder {exc_id}: {err}")
    for exc_id in todo.escalate:
        # the routing rule's timeout outcome: small variances are approved by the system, not escalated
        if decisions.auto_approve_on_timeout(db, exc_id, now=now, key=key, today=now.astimezone(st.tz).date()):
            result.auto_approved.append(exc_id)
            continue
        if not sla.claim_escalation(db, exc_id, now, key):
            continue
        try:
            if client is not None:
                result.failed.extend(_post_escalation(client, sla.load_exception(db, exc_id), todo.managers,
                                                      managers_channel))
            result.escalated.append(exc_id)
        except SlackClientError as err:  # hand the claim back so the next sweep retries
            log.warning("escalation of exception %s failed: %s", exc_id, err)
            sla.release(db, exc_id, now, "escalation", error=str(err), key=key)
            result.failed.append(f"escalation {exc_id}: {err}")
    held_reminded, held_failed = remind_held(db, client, now=now, key=key)
    result.held_reminded.extend(held_reminded)
    result.failed.extend(held_failed)
    _sweep_payments(db, todo, now, client=client, key=key, result=result, managers_channel=managers_channel,
                    exceptions_channel=exceptions_channel)
    return result


def _sweep_payments(db: Database, todo: sla.Due, now: datetime, *, client: WebClient | None,
                    key: Ed25519PrivateKey | None, result: SweepResult, managers_channel: str,
                    exceptions_channel: str) -> None:
    """The same for cash-application exceptions: reminders mention the cash appliers (finance
    managers when there are none), escalations go to the finance managers."""
    for pid in todo.remind_payments:
        if not sla.claim_payment_reminder(db, pid, now, key):
            continue
        try:
            if client is not None:
                _post_payment_reminder(client, sla.load_payment(db, pid), todo.cash_appliers or todo.managers,
                                       exceptions_channel)
            result.payments_reminded.append(pid)
        except SlackClientError as err:
            log.warning("reminder for payment %s failed: %s", pid, err)
            sla.release_payment(db, pid, now, "reminder", error=str(err), key=key)
            result.failed.append(f"payment reminder {pid}: {err}")
    for pid in todo.escalate_payments:
        if not sla.claim_payment_escalation(db, pid, now, key):
            continue
        try:
            if client is not None:
                result.failed.extend(_post_payment_escalation(client, sla.load_payment(db, pid), todo.managers,
                                                              managers_channel))
            result.payments_escalated.append(pid)
        except SlackClientError as err:
            log.warning("escalation of payment %s failed: %s", pid, err)
            sla.release_payment(db, pid, now, "escalation", error=str(err), key=key)
            result.failed.append(f"payment escalation {pid}: {err}")
