"""Items held for correction in Slack: the owner's DM after a hold (``exception.held``) and the
reminder the sweep sends per the SLA rules (:func:`remind_held`, called by the SLA sweep)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.blocks.held import held_dm_text, held_reminder_text
from bot.slack.context import SlackContext
from bot.workflows import held
from storage.db import Database

log = logging.getLogger(__name__)


def _dm(client: WebClient, user: str, text: str) -> None:
    dm = client.conversations_open(users=user)
    client.chat_postMessage(channel=str(dm["channel"]["id"]), text=text)


def on_exception_held(sc: SlackContext, *, exception_id: int, owner: str | None = None, **_: Any) -> None:
    """``exception.held``: tell the owner in a DM what is held, why, and when they will be reminded."""
    client = sc.client
    if client is None or not owner:
        return
    it = held.held_item(sc.db(), exception_id)
    if it is None or not it.owner:
        return
    try:
        _dm(client, it.owner, held_dm_text(it))
    except SlackClientError as e:  # the digest still lists it, and the reminder comes
        log.warning("telling %s about held exception %s failed: %s", it.owner, exception_id, e)


def remind_held(db: Database, client: WebClient | None, *, now: datetime,
                key: Ed25519PrivateKey | None) -> tuple[list[int], list[str]]:
    """Remind the owners of held items whose reminder time passed, each once (claimed first; a
    failed DM hands the claim back for the next sweep). Returns (reminded ids, failures)."""
    reminded: list[int] = []
    failed: list[str] = []
    for exc_id in held.due_reminders(db, now):
        if not held.claim_reminder(db, exc_id, now, key):
            continue
        it = held.held_item(db, exc_id)
        try:
            if client is not None and it is not None and it.owner:
                _dm(client, it.owner, held_reminder_text(it))
            reminded.append(exc_id)
        except SlackClientError as err:
            log.warning("held reminder for exception %s failed: %s", exc_id, err)
            held.release_reminder(db, exc_id, now, error=str(err), key=key)
            failed.append(f"held reminder {exc_id}: {err}")
    return reminded, failed
