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
from bot.workflows import sla
from storage.db import Database
from storage.models import BillingException
from storage.settings import get_settings, local_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    reminded: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "reminder 12: channel_not_found"
    held_reminded: list[int] = field(default_factory=list)  # owners of items held for correction


def _describe(e: BillingException) -> str:
    who = e.advertiser.name if e.advertiser is not None else e.advertiser_id
    period = f" {e.period_start}–{e.period_end}" if e.period_start and e.period_end else ""
    return (f"{e.kind.replace('_', ' ')} #{e.id} for {esc(who)}{period}: {money_text(e.amount, e.currency)} "
            f"({esc(e.cause)})")


def _post_reminder(client: WebClient, e: BillingException, assignees: list[str], exceptions_channel: str) -> None:
    mentions = " ".join(mention(u) for u in assignees if u != e.started_by) or "Approvers"
    due = local_time(e.due_at, empty="soon")
    text = f":hourglass_flowing_sand: {mentions}: still waiting for a decision on {_describe(e)}. Due {due}."
    if e.channel and e.message_ts:
        client.chat_postMessage(channel=e.channel, thread_ts=e.message_ts, text=text)
    else:  # never posted (Slack was down when it opened): remind in the exceptions channel
        client.chat_postMessage(channel=e.channel or exceptions_channel, text=text)


def _post_escalation(client: WebClient, e: BillingException, managers: list[str], managers_channel: str) -> list[str]:
    """Channel post first (its failure hands the claim back: nothing was posted yet); then one DM per
    finance manager — a failed DM is reported, never retried, so nobody gets the channel post twice."""
    due = local_time(e.due_at, empty="?")
    text = f":rotating_light: SLA breached (due {due}): {_describe(e)} is escalated to the finance managers."
    link = ""
    if e.channel and e.message_ts:
        try:
            link = client.chat_getPermalink(channel=e.channel, message_ts=e.message_ts).get("permalink", "")
        except SlackClientError:  # a missing permalink only shortens the message
            link = ""
    if link:
        text += f" <{link}|Open the exception>"
    client.chat_postMessage(channel=managers_channel, text=text)
    failed = []
    for user in managers:
        try:
            dm = client.conversations_open(users=user)
            client.chat_postMessage(channel=dm["channel"]["id"], text=text)
        except SlackClientError as err:  # one unreachable manager must not block the others
            log.warning("escalation DM of exception %s to %s failed: %s", e.id, user, err)
            failed.append(f"escalation {e.id} DM {user}: {err}")
    return failed


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
        if not sla.claim_reminder(db, exc_id, now, key):
            continue
        try:
            if client is not None:
                _post_reminder(client, sla.load_exception(db, exc_id), todo.approvers, exceptions_channel)
            result.reminded.append(exc_id)
        except SlackClientError as err:  # hand the claim back so the next sweep retries
            log.warning("reminder for exception %s failed: %s", exc_id, err)
            sla.release(db, exc_id, now, "reminder", error=str(err), key=key)
            result.failed.append(f"reminder {exc_id}: {err}")
    for exc_id in todo.escalate:
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
    return result
