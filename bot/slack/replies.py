"""Replies to the person who clicked or typed: the BillingError family as one ephemeral message each
(the CLI renders the same errors the same way), anything else as "something went wrong"."""

from __future__ import annotations

import logging

from pydantic import BaseModel
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from billing.errors import BillingError, Conflict, Invalid, NotAllowed, NotFound
from bot.blocks.common import esc

log = logging.getLogger(__name__)

ICON = {Conflict: ":raised_hand:", NotAllowed: ":no_entry:", NotFound: ":mag:", Invalid: ":warning:"}


class Where(BaseModel):
    """Where a reply to the user goes: the channel (ephemeral) or, from the App Home, a DM."""

    user_id: str
    channel_id: str | None = None
    message_ts: str | None = None
    from_home: bool = False


#: messages billbot writes itself from stored Slack ids (``Already approved by <@U…>``): their markup stays,
#: and refusals naming who can decide instead (``Force needs a finance manager: <@U…>``). The approver-group
#: refusals name a routing rule's group and users, whose ids and handle the scenario format restricts to
#: characters without markup (``S…``, ``U…``, ``[a-z0-9._-]``).
TRUSTED_MARKUP = frozenset({"already_decided", "finance_manager_required", "approver_required", "own_work",
                            "own_approval", "not_in_approver_group", "group_lookup_failed"})


def error_text(error: Exception) -> str:
    """The message, escaped (:func:`~bot.blocks.common.esc`): error messages quote what people typed."""
    if isinstance(error, Invalid):
        return ":warning: " + "\n".join(f"• {esc(p)}" for p in error.problems) if len(error.problems) > 1 \
            else f":warning: {esc(error.message)}"
    if isinstance(error, BillingError):
        icon = next((i for cls, i in ICON.items() if isinstance(error, cls)), ":warning:")
        return f"{icon} {error.message if error.code in TRUSTED_MARKUP else esc(error.message)}"
    return ":boom: Something went wrong on our side; it has been logged. Please try again."


def tell(client: WebClient, where: Where, text: str) -> None:
    """Ephemeral in the channel; from the App Home (no channel) as a DM."""
    try:
        if where.channel_id:
            client.chat_postEphemeral(channel=where.channel_id, user=where.user_id, text=text)
        elif where.user_id:
            client.chat_postMessage(channel=where.user_id, text=text)
    except SlackClientError:
        log.exception("could not tell %s: %s", where.user_id, text)
