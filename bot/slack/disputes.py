"""Disputes in Slack (issue 20), reactions run after commit: ``dispute.opened`` posts the dispute with
its resolution buttons to the exceptions channel and the evidence summary in its thread;
``dispute.updated`` refreshes the message and says the change in the thread. The evidence pack itself
is built by the ``dispute_evidence`` task and uploaded into the thread (:func:`post_evidence_pack`);
:func:`sweep` reminds and escalates disputes past their SLA, each once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.blocks.common import esc, mention, money_text
from bot.blocks.disputes import dispute_message, fallback_text, summary_text, updated_reply
from bot.slack.context import SlackContext
from bot.workflows import disputes
from storage.db import Database
from storage.settings import get_settings, local_time

log = logging.getLogger(__name__)


def on_dispute_opened(sc: SlackContext, *, dispute_id: int, **_: Any) -> None:
    client = sc.client
    if client is None:
        return
    db = sc.db()
    v = disputes.get_dispute(db, dispute_id)
    resp = client.chat_postMessage(channel=sc.exceptions_channel, blocks=dispute_message(v), text=fallback_text(v))
    channel, ts = str(resp.get("channel") or sc.exceptions_channel), str(resp["ts"])
    disputes.store_message(db, dispute_id, channel, ts)
    client.chat_postMessage(channel=channel, thread_ts=ts, text=summary_text(v, disputes.evidence_summary(db, v.id)))


def on_dispute_updated(sc: SlackContext, *, dispute_id: int, **_: Any) -> None:
    client = sc.client
    if client is None:
        return
    v = disputes.get_dispute(sc.db(), dispute_id)
    if not v.channel or not v.message_ts:
        return
    client.chat_update(channel=v.channel, ts=v.message_ts, blocks=dispute_message(v), text=fallback_text(v))
    client.chat_postMessage(channel=v.channel, thread_ts=v.message_ts, text=updated_reply(v))


def post_evidence_pack(client: WebClient | None, db: Database, dispute_id: int, path: Path, sha256: str) -> None:
    """Upload the evidence pack into the dispute's thread (when there is one)."""
    v = disputes.get_dispute(db, dispute_id)
    if client is None or not v.channel or not v.message_ts:
        return
    client.files_upload_v2(channel=v.channel, thread_ts=v.message_ts, file=str(path), filename=path.name,
                           title=f"Evidence pack {v.invoice}",
                           initial_comment=f"Evidence pack of {esc(v.invoice)} (SHA-256 `{sha256[:16]}…`): "
                                           f"`billbot evidence verify {esc(path.name)}` checks it.")


@dataclass(frozen=True)
class SweepResult:
    reminded: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _describe(v: disputes.DisputeView) -> str:
    return (f"dispute #{v.id} on {esc(v.invoice)} ({esc(v.advertiser)}, "
            f"{disputes.CATEGORY_TEXT.get(v.category, v.category)}, {money_text(v.amount, v.currency)})")


def sweep(db: Database, *, now: datetime | None = None, client: WebClient | None = None,
          key: Ed25519PrivateKey | None = None, managers_channel: str | None = None) -> SweepResult:
    """Remind the owner in the dispute's thread at ``remind_at``; at ``due_at`` escalate to the managers
    channel. Each claimed by a conditional UPDATE; a failed post hands the claim back."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    managers_channel = managers_channel or get_settings().managers_channel
    todo = disputes.due(db, now)
    result = SweepResult()
    for what, ids, done in (("reminder", todo.remind, result.reminded),
                            ("escalation", todo.escalate, result.escalated)):
        for dispute_id in ids:
            if not disputes.claim(db, dispute_id, what, now, key):
                continue
            try:
                if client is not None:
                    v = disputes.get_dispute(db, dispute_id)
                    if what == "reminder":
                        text = (f":hourglass_flowing_sand: {mention(v.owner)}: {_describe(v)} is still open. "
                                f"Resolve it by {local_time(v.due_at, empty='soon')}.")
                        client.chat_postMessage(channel=v.channel or get_settings().exceptions_channel,
                                                thread_ts=v.message_ts, text=text)
                    else:
                        client.chat_postMessage(channel=managers_channel, text=(
                            f":rotating_light: Dispute SLA breached (due {local_time(v.due_at, empty='?')}): "
                            f"{_describe(v)}, owner {mention(v.owner)}."))
                        if v.channel and v.message_ts:
                            client.chat_update(channel=v.channel, ts=v.message_ts, blocks=dispute_message(v),
                                               text=fallback_text(v))
                done.append(dispute_id)
            except SlackClientError as err:  # hand the claim back so the next sweep retries
                log.warning("dispute %s %s failed: %s", what, dispute_id, err)
                disputes.release(db, dispute_id, what, now)
                result.failed.append(f"dispute {what} {dispute_id}: {err}")
    return result
