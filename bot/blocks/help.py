"""Help text for ``/billing``."""

from __future__ import annotations

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.blocks.common import esc

COMMANDS = (
    ("sync [standard|partial] [source]", "pull delivery data from a source (operators)"),
    ("run [period] [advertiser…]", "billing run for a period, e.g. `2026-02` (operators)"),
    ("import [source…]", "import the files waiting in the watched inbox folders (operators)"),
    ("preinvoices [period]", "pre-invoices of a period and their state"),
    ("preinvoices create [period] [advertiser…]", "create or update a period's pre-invoices (operators)"),
    ("exceptions", "exceptions waiting for a decision"),
    ("invoice NUMBER", "one invoice"),
    ("status", "last sync per source, data freshness and the last billing run"),
    ("schedule list|add|remove …", "cron schedules for syncs, imports, pre-invoices, runs and the digest"),
    ("dispute NUMBER [category] reason…", "open a client's dispute of an invoice (holds dunning)"),
    ("help", "this text"),
)


def help_text() -> str:
    return "Usage: /billing " + " | ".join(c for c, _ in COMMANDS)


def help_blocks(problem: str | None = None) -> list[Block]:
    lines = "\n".join(f"• `/billing {cmd}` — {what}" for cmd, what in COMMANDS)
    blocks: list[Block] = []
    if problem:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f":grey_question: {esc(problem)[:2900]}")))
    blocks.append(SectionBlock(text=MarkdownTextObject(text="*billbot — the billing desk*\n" + lines)))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text="Exceptions are decided with the buttons on their message or in the App Home.")]))
    return blocks
