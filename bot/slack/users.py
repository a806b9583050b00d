"""People's names and emails from Slack (``users.info``), for the decision records that name them."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.workflows.users import ProfileLookup

log = logging.getLogger(__name__)


def profile_lookup(client: WebClient | None) -> ProfileLookup | None:
    """``lookup(slack_id)`` → the user object of ``users.info``, or None when Slack cannot tell (the
    cached profile then stays as it was). None without a client: nothing to ask."""
    if client is None:
        return None

    def lookup(slack_id: str) -> dict[str, Any] | None:
        try:
            resp = client.users_info(user=slack_id)
        except SlackApiError as e:
            log.warning("users.info %s failed: %s", slack_id, e.response.get("error"))
            return None
        except SlackClientError as e:  # connection refused, retries exhausted
            log.warning("users.info %s failed: %s", slack_id, e)
            return None
        user = resp.get("user")
        return user if isinstance(user, dict) else None

    return lookup
