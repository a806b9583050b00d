"""Accounting exports posted to the managers' channel (issue 19): after an export batch commits
(``accounting.exported``), its file — re-written from the batch's snapshot, the same bytes the CLI
wrote — is uploaded to ``MANAGERS_CHANNEL``, in the thread of a message saying what it holds."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.exports import default_file_name, writer
from bot.slack.context import SlackContext
from bot.workflows.accounting import ExportResult, batch_file

log = logging.getLogger(__name__)

FORMAT_NAMES = {"datev": "DATEV Buchungsstapel", "beancount": "Beancount ledger"}


def exported_text(res: ExportResult) -> str:
    parts = []
    if res.documents:
        parts.append(f"{len(res.documents)} document(s), {res.documents[0]} … {res.documents[-1]}")
    if res.bookings:
        parts.append(f"{len(res.bookings)} payment/write-off booking(s)")
    return (f":ledger: {FORMAT_NAMES[res.format]} for {res.legal_entity} {res.period} (batch {res.batch_id}): "
            + "; ".join(parts))


def on_accounting_exported(sc: SlackContext, *, batch_id: int, **_: Any) -> None:
    """``accounting.exported``: upload the batch's file to the managers' channel."""
    client = sc.client
    if client is None:
        return
    res = batch_file(sc.db(), batch_id, writer)
    if res.data is None or not (res.documents or res.bookings):
        return
    name = default_file_name(res.header)
    try:  # the message first: its answer names the channel's id, which file uploads need
        resp = client.chat_postMessage(channel=sc.managers_channel, text=exported_text(res))
        client.files_upload_v2(channel=str(resp["channel"]), thread_ts=str(resp["ts"]), file=res.data,
                               filename=name, title=name)
    except SlackClientError as e:
        log.warning("posting export batch %s to %s failed: %s", batch_id, sc.managers_channel, e)
