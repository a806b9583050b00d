"""Paged lists for ``/billing exceptions`` and ``/billing preinvoices``: whole entries only (a name is
clipped inside its entry, never an entry mid-way, so no ``<!date^…>`` token is ever cut), "… and N more"
and a "Show more" button that answers with the next page."""

from __future__ import annotations

import json
from collections.abc import Sequence

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from bot.blocks.common import SECTION_TEXT_MAX

LIST_MORE_ACTION_ID = "billing_list_more"
PAGE_SIZE = 20
MAX_SECTIONS = 10  # a page never needs more; keeps the message far below 50 blocks


def lines_with_more(lines: Sequence[str], limit: int, *, max_chars: int = SECTION_TEXT_MAX,
                    more: str = "more") -> str:
    """As many whole lines as fit in ``limit`` lines and ``max_chars`` characters, then "… and N more".
    Lines are never cut (a cut could break a ``<!date^…>`` token or a name)."""
    kept: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        tail = f"… and {len(lines) - i} {more}"
        if i >= limit or size + len(line) + 1 + len(tail) + 1 > max_chars:
            kept.append(tail)
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def more_value(kind: str, offset: int, period: str | None = None) -> str:
    return json.dumps({"l": kind, "o": offset, **({"p": period} if period else {})}, separators=(",", ":"))


def parse_more_value(value: str) -> tuple[str, int, str | None]:
    data = json.loads(value)
    return str(data["l"]), int(data["o"]), (str(data["p"]) if data.get("p") else None)


def _sections(lines: Sequence[str]) -> list[SectionBlock]:
    """Whole lines packed into sections of at most 3,000 characters."""
    out: list[SectionBlock] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > SECTION_TEXT_MAX:
            out.append(SectionBlock(text=MarkdownTextObject(text="\n".join(chunk))))
            chunk, size = [], 0
        chunk.append(line[:SECTION_TEXT_MAX])  # builders clip names so an entry is far shorter
        size += len(line) + 1
    if chunk:
        out.append(SectionBlock(text=MarkdownTextObject(text="\n".join(chunk))))
    return out[:MAX_SECTIONS]


def paged_list(
    *, title: str, lines: Sequence[str], total: int, offset: int, kind: str, period: str | None = None,
    empty: str = "None.", footer: str | None = None,
) -> list[Block]:
    """``title`` (with the total), entries ``offset+1``…, then "… and N more" with a Show more button."""
    shown_to = offset + len(lines)
    head = f"{title} ({total:,})" if offset == 0 else f"{title}: {offset + 1:,}–{shown_to:,} of {total:,}"
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=head))]
    blocks += _sections(lines) if lines else [SectionBlock(text=MarkdownTextObject(text=empty))]
    rest = total - shown_to
    if footer:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=footer)]))
    if rest > 0:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"… and {rest:,} more")]))
        blocks.append(ActionsBlock(block_id=f"more:{kind}", elements=[ButtonElement(
            text=f"Show {min(rest, PAGE_SIZE)} more", action_id=LIST_MORE_ACTION_ID,
            value=more_value(kind, shown_to, period))]))
    return blocks
