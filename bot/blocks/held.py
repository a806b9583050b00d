"""Items held for correction: the owner's DM, the reminder, and a section for the managers' digest
(:func:`held_section`, a builder the digest places where it fits)."""

from __future__ import annotations

from decimal import Decimal

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.blocks.common import SECTION_TEXT_MAX, clip, esc, mention, money_text, slack_date
from bot.workflows.held import HeldItem

HELD_SHOWN = 10


def _item_line(it: HeldItem) -> str:
    owner = mention(it.owner) if it.owner else "no owner"
    return (f"• #{it.exception_id} {clip(esc(it.advertiser), 80)} · {money_text(it.amount, it.currency)} · "
            f"owner {owner} · held {slack_date(it.held_at, '{date_short}')}")


def held_dm_text(it: HeldItem) -> str:
    """The owner's DM when an item is held."""
    text = (f":no_entry_sign: {money_text(it.amount, it.currency)} for {esc(it.advertiser)} is held for correction "
            f"(exception #{it.exception_id}, pre-invoice #{it.preinvoice_id}) by {mention(it.held_by)}. "
            "You own the correction: fix the pre-invoice (`billbot preinvoices show "
            f"{it.preinvoice_id}`), then it is checked again in the next run.")
    if it.reason:
        text += f"\nReason: {clip(esc(it.reason), 1500)}"
    if it.remind_at is not None:
        text += f"\nI will remind you {slack_date(it.remind_at)} if it is still held."
    return clip(text, SECTION_TEXT_MAX)


def held_reminder_text(it: HeldItem) -> str:
    return clip(f":hourglass_flowing_sand: Still held for correction: {money_text(it.amount, it.currency)} for "
                f"{esc(it.advertiser)} (exception #{it.exception_id}, pre-invoice #{it.preinvoice_id}), held by "
                f"{mention(it.held_by)} {slack_date(it.held_at)}. It is not billed until corrected."
                + (f"\nReason: {clip(esc(it.reason), 1500)}" if it.reason else ""), SECTION_TEXT_MAX)


def held_totals(items: list[HeldItem]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for it in items:
        out[it.currency] = out.get(it.currency, Decimal(0)) + it.amount
    return out


def held_section(items: list[HeldItem], *, total_count: int | None = None,
                 totals: dict[str, Decimal] | None = None) -> list[Block]:
    """"Held for correction": the count and amounts per currency, then the largest items with their
    owner (at most :data:`HELD_SHOWN`, "and N more"). ``total_count`` / ``totals`` cover all held
    items when ``items`` is only the top of the list. Within Slack's limits (one section, one context)."""
    count = total_count if total_count is not None else len(items)
    sums = totals if totals is not None else held_totals(items)
    if count == 0:
        return [SectionBlock(block_id="held", text=MarkdownTextObject(text="*Held for correction*\nNothing held."))]
    money = ", ".join(money_text(v, c) for c, v in sorted(sums.items()))
    lines = [f"*Held for correction* — {count} item{'s' if count != 1 else ''}, {money}"]
    shown = items[:HELD_SHOWN]
    body = "\n".join(_item_line(it) for it in shown)
    text = "\n".join([*lines, body]) if body else lines[0]
    while len(text) > SECTION_TEXT_MAX and shown:  # whole lines only
        shown = shown[:-1]
        text = "\n".join([*lines, *(_item_line(it) for it in shown)])
    blocks: list[Block] = [SectionBlock(block_id="held", text=MarkdownTextObject(text=text))]
    if count > len(shown):
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"… and {count - len(shown)} more held (`billbot preinvoices list --state held`)")]))
    return blocks
