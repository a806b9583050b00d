"""The "Retry PDF" button on a failed-PDF message: operators put the PDF back in the render queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from billing.errors import Invalid
from bot.blocks.documents import RETRY_PDF_ACTION_ID
from bot.handlers.deps import deps_of
from bot.handlers.errors import after_ack
from bot.handlers.payloads import where_of
from bot.slack.replies import tell
from bot.workflows.documents import retry_failed_pdfs


def on_retry_pdf(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                 context: BoltContext) -> None:
    ack()
    with after_ack(body, client):
        _retry(body, action, client, context)


def _retry(body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    deps = deps_of(context)
    where = where_of(body)
    try:
        invoice_id = int(action.get("value", ""))
    except ValueError:
        raise Invalid("this button carries no invoice id") from None
    ids = retry_failed_pdfs(deps.db(), actor=where.user_id, key=deps.key(), now=datetime.now(UTC),
                            invoice_id=invoice_id, slack_user=where.user_id)
    if not ids:
        tell(client, where, "That PDF is not failed (any more); nothing to retry.")
        return
    deps.background("render_pdf", invoice_id=invoice_id)
    tell(client, where, ":arrows_counterclockwise: Rendering the PDF again.")


def register(app: App) -> None:
    app.action(RETRY_PDF_ACTION_ID)(on_retry_pdf)
