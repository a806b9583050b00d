"""Block Kit for the daily dunning proposal: the letters due today per level, "Send all", "Skip one"."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)

from bot.blocks.common import clip, money_text
from bot.workflows.dunning import Letter

SEND_ALL_ACTION_ID = "dunning_send_all"
SKIP_ONE_ACTION_ID = "dunning_skip_one"
LEVEL_TITLE = {"reminder": "Reminders", "first_notice": "First notices", "final_notice": "Final notices"}


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def proposal_blocks(letters: list[Letter], *, today: date, outcome: str | None = None) -> list[Block]:
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=f"Dunning proposal — {today.isoformat()}"))]
    by_level: dict[tuple[int, str], list[Letter]] = defaultdict(list)
    for x in letters:
        by_level[(x.level, x.name)].append(x)
    for (level, name), group in sorted(by_level.items()):
        lines = [f"• {x.invoice} — {_esc(x.advertiser)}, {x.days_past_due} days past due, "
                 f"{money_text(x.total, x.currency)}" for x in group]
        blocks.append(SectionBlock(block_id=f"level:{level}", text=MarkdownTextObject(text=clip(
            f"*{LEVEL_TITLE.get(name, name)}* (level {level}): {len(group)}\n" + "\n".join(lines), 3000))))
    if not letters:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No letters due today.")))
    if outcome:
        blocks.append(SectionBlock(block_id="dunning:outcome", text=MarkdownTextObject(text=clip(outcome, 3000))))
        return blocks
    if letters:
        blocks.append(ActionsBlock(block_id=f"dunning:{today.isoformat()}", elements=[
            ButtonElement(text=PlainTextObject(text="Send all"), action_id=SEND_ALL_ACTION_ID, style="primary",
                          value=today.isoformat()),
            StaticSelectElement(action_id=SKIP_ONE_ACTION_ID, placeholder=PlainTextObject(text="Skip one…"),
                                options=[Option(text=PlainTextObject(text=clip(f"{x.invoice} · {x.advertiser}", 75)),
                                                value=f"{today.isoformat()}:{x.invoice}") for x in letters[:100]]),
        ]))
    return blocks
