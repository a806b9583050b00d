"""Block Kit for cash-application exceptions: a payment matching could not settle.

Unmatched → "Allocate to…" (the three best candidates); an under-payment beyond the tolerance →
"Write off difference"; an over-payment → "Allocate to…" another invoice or "Refund". Who may click
what is checked by the workflow (:func:`bot.workflows.payments.access_payment_action`).
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)

from bot.blocks.common import clip, money_text
from bot.workflows.payments import PaymentCase

ALLOCATE_ACTION_ID = "payment_allocate"
WRITE_OFF_ACTION_ID = "payment_write_off"
REFUND_ACTION_ID = "payment_refund"


def _esc(text: str | None) -> str:
    """Bank-supplied text is user text: escaped for mrkdwn (``&``, ``<``, ``>``)."""
    return (text or "—").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def title_of(case: PaymentCase) -> str:
    p = case.payment
    if p.state == "unmatched":
        return f"Unmatched payment {money_text(p.amount, p.currency)}"
    if p.state == "overpaid" or p.unapplied > 0:
        return f"Over-payment of {money_text(p.unapplied, p.currency)} on {case.invoice}"
    return f"Under-payment: {money_text(case.invoice_open, p.currency)} left open on {case.invoice}"


def payment_message(case: PaymentCase, *, outcome: str | None = None) -> list[Block]:
    p = case.payment
    facts = [
        MarkdownTextObject(text=f"*Amount*\n{money_text(p.amount, p.currency)}"),
        MarkdownTextObject(text=f"*Booked*\n{p.booking_date.isoformat()}"),
        MarkdownTextObject(text=f"*Payer*\n{clip(_esc(p.payer_name), 200)}"),
        MarkdownTextObject(text=f"*Payer IBAN*\n{_esc(p.payer_iban)}"),
        MarkdownTextObject(text=f"*Remittance*\n{clip(_esc(p.remittance), 500)}"),
        MarkdownTextObject(text=f"*Unapplied*\n{money_text(p.unapplied, p.currency)}"),
    ]
    if p.allocations:
        applied = ", ".join(f"{n} {money_text(a, p.currency)}" for n, a, _m in p.allocations)
        facts.append(MarkdownTextObject(text=f"*Applied to*\n{clip(applied, 500)}"))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(title_of(case), 150))),
        SectionBlock(block_id=f"payment:{p.id}", fields=facts),
        ContextBlock(elements=[MarkdownTextObject(text=f"Payment #{p.id} · cash application")]),
    ]
    if outcome:
        blocks.append(SectionBlock(block_id=f"settled:{p.id}", text=MarkdownTextObject(text=clip(outcome, 3000))))
    if case.settled:
        return blocks
    elements: list[Any] = []
    if p.unapplied > 0 and case.candidates:
        elements.append(StaticSelectElement(
            action_id=ALLOCATE_ACTION_ID, placeholder=PlainTextObject(text="Allocate to…"),
            options=[Option(text=PlainTextObject(text=clip(f"{n} · {name} · {money_text(o, cur)}", 75)),
                            value=f"{p.id}:{n}") for n, name, o, cur in case.candidates]))
    if case.invoice and case.invoice_open > 0:
        elements.append(ButtonElement(text=PlainTextObject(text="Write off difference"), action_id=WRITE_OFF_ACTION_ID,
                                      value=f"{p.id}:{case.invoice}", style="danger"))
    if p.unapplied > 0 and p.state != "unmatched":
        elements.append(ButtonElement(text=PlainTextObject(text="Refund"), action_id=REFUND_ACTION_ID,
                                      value=str(p.id)))
    if elements:
        blocks.append(ActionsBlock(block_id=f"cash:{p.id}", elements=elements))
    return blocks


def fallback(case: PaymentCase) -> str:
    return clip(title_of(case), 300)
