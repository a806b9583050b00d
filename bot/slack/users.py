"""People's names and emails from Slack (``users.info``), for the decision records that name them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from billing.errors import NotAllowed
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


def group_lookup(client: WebClient | None) -> Callable[[str], list[str]] | None:
    """``members(usergroup_id)`` → the Slack ids in a user group (``usergroups.users.list``), for a
    routing rule that names a Slack user group without listing its users. A failed call raises
    NotAllowed (nobody is let through on a membership Slack could not confirm)."""
    if client is None:
        return None

    def members(group_id: str) -> list[str]:
        try:
            resp = client.usergroups_users_list(usergroup=group_id)
        except SlackClientError as e:
            log.warning("usergroups.users.list %s failed: %s", group_id, e)
            raise NotAllowed(f"The members of the approver group <!subteam^{group_id}> could not be looked up "
                             "in Slack; please try again.", code="group_lookup_failed") from None
        users = resp.get("users")
        return [str(u) for u in users] if isinstance(users, list) else []

    return members
