"""Missed freshness targets, told to the operators (issue 21): :func:`bot.workflows.freshness.claim_missed`
claims each source's missed month once; this posts it to the exceptions channel, mentioning every operator.
A failed post hands the claim back so the next sweep retries."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.blocks.common import esc, mention
from bot.workflows import freshness
from storage.db import Database
from storage.settings import get_settings

log = logging.getLogger(__name__)


def missed_text(r: freshness.SourceFreshness, operators: list[str]) -> str:
    until = r.data_until.isoformat() if r.data_until else "no data yet"
    who = " ".join(mention(u) for u in operators) or "Operators"
    due = r.due.isoformat() if r.due else "?"
    return (f":warning: {who}: freshness target missed — *{esc(r.source)}* has data until {until}; the month ending "
            f"{r.period_end.isoformat()} needed it by {due}. Pre-invoices fed by it are held (`stale_source`) "
            "until a sync or import catches up.")


def alert_missed(db: Database, *, client: WebClient | None, key: Ed25519PrivateKey | None,
                 now: datetime | None = None, channel: str | None = None) -> list[str]:
    """Post every newly missed target; the sources told. Without a client nothing is claimed."""
    if client is None:
        return []
    now = now or datetime.now(UTC)
    channel = channel or get_settings().exceptions_channel
    told = []
    ops = freshness.operators(db)
    for r in freshness.claim_missed(db, today=now.astimezone(get_settings().tz).date(), key=key, now=now):
        try:
            client.chat_postMessage(channel=channel, text=missed_text(r, ops))
        except SlackClientError as err:
            log.warning("freshness alert for %s failed: %s", r.source, err)
            freshness.release_missed(db, r)
            continue
        told.append(r.source)
    return told
