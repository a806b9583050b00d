"""The "Details" button: a modal with the exception's full evidence."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid, NotFound
from bot.blocks.exceptions import DETAILS_ACTION_ID
from bot.blocks.modals import details_modal
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.workflows.comments import thread_comments
from storage.models import Advertiser, BillingException


def on_details(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
               context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        _open_details(body, action, client, context)


def _open_details(body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    try:
        exception_id = int(action.get("value", ""))
    except ValueError:
        raise Invalid("this button carries no exception id") from None
    with deps_of(context).db().read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None:
            raise NotFound(f"exception {exception_id} does not exist")
        adv = s.get(Advertiser, exc.advertiser_id)
        said = thread_comments(s, "exception", exc.id)
        view = details_modal(exc, adv.name if adv is not None else None, said)
    client.views_open(trigger_id=body.get("trigger_id"), view=view)


def register(app: App) -> None:
    app.action(DETAILS_ACTION_ID)(on_details)
