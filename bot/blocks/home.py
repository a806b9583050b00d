"""App Home, the approver's desk: waiting for you (soonest SLA first), waiting for others, your recent
decisions with links, source freshness and the last runs with their totals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
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
from bot.blocks.lists import lines_with_more
from bot.workflows.run_reports import RunReport
from storage.models import BillingException, BillingRun, Decision

MAX_QUEUE = 10  # 2 blocks each; keeps the view under Slack's 50-block limit with the other sections
MAX_OTHERS = 10


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


def _queue_line(it: QueueItem) -> str:
    exc = it.exc
    text = (f"*{KIND_TITLE.get(exc.kind, exc.kind)}* — {clip(esc(it.advertiser_name), 150)} · "
            f"{money_text(exc.amount, exc.currency)} · {period_text(exc.period_start, exc.period_end)}\n"
            f"SLA due {slack_date(exc.due_at)}")
    if exc.state == "escalated":
        text += " :rotating_light: escalated"
    return text


def _queue_blocks(items: Sequence[QueueItem]) -> list[Block]:
    if not items:
        return [SectionBlock(text=MarkdownTextObject(text=":tada: Nothing waits for you."))]
    blocks: list[Block] = []
    for it in items[:MAX_QUEUE]:
        blocks.append(SectionBlock(block_id=f"home:{it.exc.id}", text=MarkdownTextObject(text=clip(_queue_line(it),
                                                                                                    3000))))
        buttons = decision_buttons(it.exc, it.subject_hash)
        for el in buttons.elements:  # action ids are unique within a view: one set of buttons per exception
            if isinstance(el, ButtonElement):
                el.action_id = f"{el.action_id}:{it.exc.id}"
        blocks.append(buttons)
    if len(items) > MAX_QUEUE:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"… and {len(items) - MAX_QUEUE:,} more (the soonest due are shown first)")]))
    return blocks


def _others_blocks(items: Sequence[QueueItem]) -> list[Block]:
    if not items:
        return [SectionBlock(text=MarkdownTextObject(text="Nothing waits for anyone else."))]
    lines = [f"• #{it.exc.id} {KIND_TITLE.get(it.exc.kind, it.exc.kind)} — {clip(esc(it.advertiser_name), 80)} · "
             f"{money_text(it.exc.amount, it.exc.currency)} · SLA {slack_date(it.exc.due_at)}"
             + (" · escalated" if it.exc.state == "escalated" else "") for it in items]
    return [SectionBlock(block_id="home:others", text=MarkdownTextObject(text=lines_with_more(lines, MAX_OTHERS)))]


@dataclass(frozen=True)
class DecisionLine:
    decision: Decision
    title: str  # "Variance — Autohaus Elbe KG"
    message_url: str | None = None  # the exception's message in Slack
    invoices: tuple[str, ...] = ()  # what billing made of it since


DECIDED = {"approve": "Approved", "reject": "Held for correction", "force": "Forced"}


def _decision_text(lines: Sequence[DecisionLine]) -> str:
    out = []
    for x in lines:
        d = x.decision
        ref = f"<{x.message_url}|#{d.exception_id}>" if x.message_url else f"#{d.exception_id}"
        text = f"• {DECIDED.get(d.decision, d.decision)} {ref} {clip(esc(x.title), 100)} · {slack_date(d.decided_at)}"
        if x.invoices:
            text += " · billed on " + ", ".join(esc(n) for n in x.invoices[:3])
        if d.reason:
            text += f" — {clip(esc(d.reason), 80)}"
        out.append(text)
    return lines_with_more(out, 10)


def _run_line(r: RunReport) -> str:
    net = " · ".join(money_text(v, c) for c, v in r.net.items()) or "—"
    conv = r.net_reporting
    if r.net and list(r.net) != [conv.currency]:
        net += f" (≈ {money_text(conv.amount, conv.currency)})"
    held = f"{r.held:,} held" + (f" ({' · '.join(money_text(v, c) for c, v in r.held_totals.items())})"
                                 if r.held_totals else "")
    return (f"• *Run {r.run_id}* {esc(r.period)} — {r.state}, {slack_date(r.started_at)}: {r.created:,} invoice(s), "
            f"net {net}; {r.skipped:,} skipped; {held}" + (f"; {len(r.problems)} problem(s)" if r.problems else ""))


def _count(value: object) -> int:
    """A run's summary stores counts (``{"created": 3}``); older rows stored lists of numbers."""
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple):
        return len(value)
    return 0


def home_view(
    *, queue: Sequence[QueueItem], decisions: Sequence[Decision], sources: Sequence[SourceLine],
    last_run: BillingRun | None, receivables: str | None = None, others: Sequence[QueueItem] | None = None,
    decision_lines: Sequence[DecisionLine] | None = None, runs: Sequence[RunReport] | None = None,
) -> View:
    """The approver's desk: what waits for the viewer (soonest SLA first, with the buttons), what waits
    for others, the viewer's recent decisions with links, source freshness, the last runs with totals."""
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=f"Waiting for you ({len(queue):,})"))]
    blocks += _queue_blocks(queue)
    if others is not None:
        blocks.append(DividerBlock())
        blocks.append(HeaderBlock(text=PlainTextObject(text=f"Waiting for others ({len(others):,})")))
        blocks += _others_blocks(others)
    blocks.append(DividerBlock())
    blocks.append(HeaderBlock(text=PlainTextObject(text="Your recent decisions")))
    if decision_lines:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_decision_text(decision_lines))))
    elif decisions:
        lines = [f"• {d.decision} on exception #{d.exception_id} at {slack_date(d.decided_at)}"
                 + (f" — {clip(esc(d.reason), 80)}" if d.reason else "") for d in decisions]
        blocks.append(SectionBlock(text=MarkdownTextObject(text=lines_with_more(lines, 10))))
    else:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No decisions yet.")))
    blocks.append(DividerBlock())
    blocks.append(HeaderBlock(text=PlainTextObject(text="Data and runs")))
    if sources:
        lines = [f"• *{clip(esc(src.source), 80)}*: last sync {slack_date(src.last_success_at)}"
                 + (f", data until {src.data_until.isoformat()}" if src.data_until else "")
                 + (f" ({esc(src.last_state)})" if src.last_state and src.last_state != "done" else "")
                 for src in sources]
        blocks.append(SectionBlock(text=MarkdownTextObject(text=lines_with_more(["*Sources*", *lines], 13))))
    else:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No sync has run yet.")))
    if runs:
        blocks.append(SectionBlock(block_id="home:runs", text=MarkdownTextObject(text=lines_with_more(
            ["*Last billing runs*", *(_run_line(r) for r in runs)], len(runs) + 1))))
    elif last_run is not None:
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
