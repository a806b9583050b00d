"""App Home: the viewer's queue, their recent decisions, the last sync per source and the last run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.blocks.common import cap_blocks, clip, esc, money_text, period_text, slack_date
from bot.blocks.exceptions import KIND_TITLE, decision_buttons
from storage.models import BillingException, BillingRun, Decision

MAX_QUEUE = 10  # 3 blocks each; keeps the view under Slack's 50-block limit with the other sections


@dataclass(frozen=True)
class QueueItem:
    exc: BillingException
    subject_hash: str
    advertiser_name: str


@dataclass(frozen=True)
class SourceLine:
    source: str
    last_success_at: datetime | None
    data_until: date | None
    last_state: str | None


def _queue_blocks(items: Sequence[QueueItem]) -> list[Block]:
    if not items:
        return [SectionBlock(text=MarkdownTextObject(text=":tada: Nothing waits for you."))]
    blocks: list[Block] = []
    for it in items[:MAX_QUEUE]:
        exc = it.exc
        text = (f"*{KIND_TITLE.get(exc.kind, exc.kind)}* — {clip(esc(it.advertiser_name), 150)} · "
                f"{money_text(exc.amount, exc.currency)} · {period_text(exc.period_start, exc.period_end)}\n"
                f"SLA due {slack_date(exc.due_at)}")
        if exc.state == "escalated":
            text += " :rotating_light: escalated"
        blocks.append(SectionBlock(block_id=f"home:{exc.id}", text=MarkdownTextObject(text=clip(text, 3000))))
        blocks.append(decision_buttons(exc, it.subject_hash))
    if len(items) > MAX_QUEUE:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"… and {len(items) - MAX_QUEUE} more — `/billing exceptions` lists them all.")]))
    return blocks


def _count(value: object) -> int:
    """A run's summary stores counts (``{"created": 3}``); older rows stored lists of numbers."""
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple):
        return len(value)
    return 0


def home_view(
    *, queue: Sequence[QueueItem], decisions: Sequence[Decision], sources: Sequence[SourceLine],
    last_run: BillingRun | None, receivables: str | None = None,
) -> View:
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=f"Your queue ({len(queue)})"))]
    blocks += _queue_blocks(queue)
    blocks.append(DividerBlock())
    blocks.append(HeaderBlock(text=PlainTextObject(text="Your recent decisions")))
    if decisions:
        lines = [f"• {d.decision} on exception #{d.exception_id} at {slack_date(d.decided_at)}"
                 + (f" — {clip(esc(d.reason), 80)}" if d.reason else "") for d in decisions]
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip("\n".join(lines), 3000))))
    else:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No decisions yet.")))
    blocks.append(DividerBlock())
    blocks.append(HeaderBlock(text=PlainTextObject(text="Data and runs")))
    if sources:
        lines = [f"• *{esc(src.source)}*: last sync {slack_date(src.last_success_at)}"
                 + (f", data until {src.data_until.isoformat()}" if src.data_until else "")
                 + (f" ({esc(src.last_state)})" if src.last_state and src.last_state != "done" else "")
                 for src in sources]
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip("\n".join(lines), 3000))))
    else:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No sync has run yet.")))
    if last_run is not None:
        summary = last_run.summary or {}
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(
            f"*Last billing run* {esc(last_run.period)} — {last_run.state}, started {slack_date(last_run.started_at)}: "
            f"{_count(summary.get('created'))} invoice(s) created, {_count(summary.get('skipped'))} skipped",
            3000))))
    else:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No billing run yet.")))
    if receivables is not None:  # finance managers (issue 18)
        blocks.append(DividerBlock())
        blocks.append(SectionBlock(block_id="receivables", text=MarkdownTextObject(text=clip(receivables, 3000))))
    return View(type="home", blocks=cap_blocks(blocks))
