"""Invoice mails that could not be delivered, told to the operators (issue 19).

A permanent SMTP failure (``invoice.dispatch_failed``, e.g. ``550 mailbox unavailable``) is posted to the
legal entity's exceptions channel (else ``EXCEPTIONS_CHANNEL``) with what to do next; the invoice's
``dispatch_state`` stays ``failed`` until someone resends it (``billbot invoices send NUMBER --resend``).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.slack.context import SlackContext
from storage.models import Advertiser, Invoice, LegalEntity

log = logging.getLogger(__name__)


def dispatch_failed_text(number: str, advertiser: str, error: str) -> str:
    return (f":envelope: :warning: Invoice {number} for {advertiser} could not be delivered: {error}\n"
            f"Fix the advertiser's invoice e-mail address, then `billbot invoices send {number} --resend`.")


def on_invoice_dispatch_failed(sc: SlackContext, *, invoice_id: int, number: str, error: str, **_: Any) -> None:
    """``invoice.dispatch_failed``: an exception message for the operators."""
    client = sc.client
    if client is None:
        return
    with sc.db().read() as s:
        inv = s.get(Invoice, invoice_id)
        if inv is None:
            return
        adv = s.get(Advertiser, inv.advertiser_id)
        le = s.get(LegalEntity, inv.legal_entity_id)
        advertiser = adv.name if adv is not None else inv.advertiser_id
        channel = (le.exceptions_channel if le is not None else None) or sc.exceptions_channel
    try:
        client.chat_postMessage(channel=channel, text=dispatch_failed_text(number, advertiser, error))
    except SlackClientError as e:
        log.warning("telling %s that %s could not be mailed did not work: %s", channel, number, e)
