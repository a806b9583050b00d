"""A failed invoice PDF: what went wrong and, for operators, a Retry PDF button."""

from __future__ import annotations

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.blocks.common import clip

RETRY_PDF_ACTION_ID = "pdf_retry"


def pdf_failed_text(number: str, advertiser: str, error: str) -> str:
    return f":warning: PDF of {number} for {advertiser} failed: {error}"


def pdf_failed_blocks(invoice_id: int, number: str, advertiser: str, error: str) -> list[Block]:
    """The reason in full (clipped to Slack's limit) and the Retry PDF button (operators only; the
    handler checks the role)."""
    return [
        SectionBlock(text=MarkdownTextObject(text=clip(pdf_failed_text(number, advertiser, error), 3000))),
        ActionsBlock(block_id=f"pdf:{invoice_id}", elements=[
            ButtonElement(text=PlainTextObject(text="Retry PDF"), action_id=RETRY_PDF_ACTION_ID,
                          value=str(invoice_id)),
        ]),
    ]
