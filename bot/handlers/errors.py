"""The one error handler: the BillingError family becomes an ephemeral message to the person who
clicked or typed; anything else is logged and the person is told something went wrong."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_sdk.errors import SlackClientError

from billing.errors import BillingError, Conflict, Invalid, NotAllowed, NotFound
from bot.handlers.payloads import Where, where_of

log = logging.getLogger(__name__)

ICON = {Conflict: ":raised_hand:", NotAllowed: ":no_entry:", NotFound: ":mag:", Invalid: ":warning:"}


def error_text(error: Exception) -> str:
    if isinstance(error, Invalid):
        return ":warning: " + "\n".join(f"• {p}" for p in error.problems) if len(error.problems) > 1 \
            else f":warning: {error.message}"
    if isinstance(error, BillingError):
        icon = next((i for cls, i in ICON.items() if isinstance(error, cls)), ":warning:")
        return f"{icon} {error.message}"
    return ":boom: Something went wrong on our side; it has been logged. Please try again."


def _where(body: dict[str, Any]) -> Where:
    if body.get("type") == "view_submission":
        try:
            meta = json.loads((body.get("view") or {}).get("private_metadata") or "{}")
        except ValueError:
            meta = {}
        return Where(user_id=str((body.get("user") or {}).get("id", "")), channel_id=meta.get("c"),
                     from_home=bool(meta.get("home")))
    if "command" in body:  # slash command (form body)
        return Where(user_id=str(body.get("user_id", "")), channel_id=body.get("channel_id"))
    return where_of(body)


def tell(client: Any, where: Where, text: str) -> None:
    """Ephemeral in the channel; from the App Home (no channel) as a DM."""
    try:
        if where.channel_id:
            client.chat_postEphemeral(channel=where.channel_id, user=where.user_id, text=text)
        elif where.user_id:
            client.chat_postMessage(channel=where.user_id, text=text)
    except SlackClientError:
        log.exception("could not tell %s: %s", where.user_id, text)


def on_error(error: Exception, body: dict[str, Any], client: Any) -> None:
    if not isinstance(error, BillingError):
        log.error("unhandled error in a Slack handler", exc_info=error)
    tell(client, _where(body or {}), error_text(error))


@contextmanager
def after_ack(body: dict[str, Any], client: Any) -> Iterator[None]:
    """Render errors raised after ``ack()`` here instead of re-raising them into Bolt.

    slack_bolt's thread runner, when a listener raises after it acked, sets the acknowledged
    response back to ``None`` (``run_ack_function_asynchronously``); if the request thread looks
    after that, Slack gets a 404 "unhandled request" instead of the ack. A refusal (Force without
    the role) is exactly such an error, so it must not travel through Bolt."""
    try:
        yield
    except Exception as e:  # rendered to the user (and logged if unexpected) by the one mapping
        on_error(e, body, client)


def register(app: Any) -> None:
    app.error(on_error)
