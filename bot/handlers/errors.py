"""The one error handler: the BillingError family becomes an ephemeral message to the person who
clicked or typed (:mod:`bot.slack.replies`); anything else is logged and the person is told
something went wrong."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from billing.errors import BillingError
from bot.handlers.payloads import where_of
from bot.slack.replies import Where, error_text, tell

log = logging.getLogger(__name__)


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


def on_error(error: Exception, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if context.get("billbot") is None:
        # failed before billbot's own middleware ran — e.g. in Bolt's request verification: the body
        # is not known to come from Slack, so nothing it names is told anything
        log.warning("refused a request before verification completed: %s", type(error).__name__)
        return
    _tell(error, body, client)


def _tell(error: Exception, body: dict[str, Any], client: WebClient) -> None:
    if not isinstance(error, BillingError):
        log.error("unhandled error in a Slack handler", exc_info=error)
    tell(client, _where(body or {}), error_text(error))


@contextmanager
def after_ack(body: dict[str, Any], client: WebClient) -> Iterator[None]:
    """Render errors raised after ``ack()`` here instead of re-raising them into Bolt.

    slack_bolt's thread runner, when a listener raises after it acked, sets the acknowledged
    response back to ``None`` (``run_ack_function_asynchronously``); if the request thread looks
    after that, Slack gets a 404 "unhandled request" instead of the ack. A refusal (Force without
    the role) is exactly such an error, so it must not travel through Bolt."""
    try:
        yield
    except Exception as e:  # rendered to the user (and logged if unexpected) by the one mapping
        _tell(e, body, client)


def register(app: App) -> None:
    app.error(on_error)
