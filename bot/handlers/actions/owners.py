"""Owners (issue 21): "Assign to me" and "Assign…" on an exception's message."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid, NotFound
from bot.blocks.exceptions import ASSIGN_ACTION_ID, ASSIGN_ME_ACTION_ID
from bot.blocks.modals import ASSIGN_BLOCK_ID, ASSIGN_CALLBACK_ID, ASSIGN_INPUT_ID, assign_modal
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.workflows.owners import assign
from storage.models import BillingException


def _exception_id(action: dict[str, Any]) -> int:
    try:
        return int(action.get("value", ""))
    except ValueError:
        raise Invalid("this button carries no exception id") from None


def on_assign_me(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                 context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        actor = str((body.get("user") or {}).get("id", ""))
        assign(deps.db(), exception_id=_exception_id(action), owner=actor, actor=actor, key=deps.key())


def on_assign(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
              context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        exception_id = _exception_id(action)
        with deps_of(context).db().read() as s:
            exc = s.get(BillingException, exception_id)
            if exc is None:
                raise NotFound(f"exception {exception_id} does not exist")
            view = assign_modal(exc, {"e": exception_id})
        client.views_open(trigger_id=body.get("trigger_id"), view=view)


def on_assign_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient,
                     context: BoltContext) -> None:
    values = (view.get("state") or {}).get("values") or {}
    picked = (values.get(ASSIGN_BLOCK_ID) or {}).get(ASSIGN_INPUT_ID) or {}
    owner = str(picked.get("selected_user") or picked.get("value") or "").strip()
    if not owner:
        ack(response_action="errors", errors={ASSIGN_BLOCK_ID: "Pick the new owner."})
        return
    ack()
    with after_ack(body, client):
        deps = deps_of(context)
        meta = json.loads(view.get("private_metadata") or "{}")
        assign(deps.db(), exception_id=int(meta["e"]), owner=owner,
               actor=str((body.get("user") or {}).get("id", "")), key=deps.key())


def register(app: App) -> None:
    app.action(ASSIGN_ME_ACTION_ID)(on_assign_me)
    app.action(ASSIGN_ACTION_ID)(on_assign)
    app.view(ASSIGN_CALLBACK_ID)(on_assign_submit)
