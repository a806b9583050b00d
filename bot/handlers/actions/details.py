"""The "Details" button: a modal with the exception's evidence in plain language; its "Download
evidence" button uploads the full pack (a zip) into the exception's thread."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid, NotFound
from bot.blocks.exceptions import DETAILS_ACTION_ID
from bot.blocks.modals import DOWNLOAD_ACTION_ID, details_modal
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.slack.exceptions import send_evidence
from bot.workflows.comments import thread_comments
from bot.workflows.exception_evidence import top_rows
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
    db = deps_of(context).db()
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None:
            raise NotFound(f"exception {exception_id} does not exist")
        adv = s.get(Advertiser, exc.advertiser_id)
        name = adv.name if adv is not None else None
    rows, total = top_rows(db, exception_id)
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        assert exc is not None
        view = details_modal(exc, name, thread_comments(s, "exception", exc.id), rows=rows, total_rows=total)
    client.views_open(trigger_id=body.get("trigger_id"), view=view)


def on_download(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        try:
            exception_id = int(action.get("value", ""))
        except ValueError:
            raise Invalid("this button carries no exception id") from None
        send_evidence(client, deps_of(context).db(), exception_id, user_id=str((body.get("user") or {}).get("id")))


def register(app: App) -> None:
    app.action(DETAILS_ACTION_ID)(on_details)
    app.action(DOWNLOAD_ACTION_ID)(on_download)
