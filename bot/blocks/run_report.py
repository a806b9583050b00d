"""The finished billing run in Slack: totals first, the job log inline only when it is short (a long
one is attached to the thread as CSV and text, :mod:`bot.tasks.slack_command`)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.blocks.common import FIELD_TEXT_MAX, SECTION_TEXT_MAX, clip, esc, mention, money_text
from bot.blocks.lists import lines_with_more
from bot.blocks.progress import STATE_ICON
from bot.workflows.run_reports import Converted, RunReport

INLINE_LOG_LINES = 15  # a longer job log is attached as a file instead
MAX_PROBLEMS = 8


def totals_text(totals: Mapping[str, Decimal]) -> str:
    return " · ".join(money_text(v, c) for c, v in totals.items()) or "—"


def converted_text(c: Converted | None, totals: Mapping[str, Decimal]) -> str:
    """``≈ 12,345.00 EUR`` when the totals span currencies or differ from the reporting one."""
    if c is None or not totals or (list(totals) == [c.currency]):
        return ""
    text = f"≈ {money_text(c.amount, c.currency)}"
    if c.missing:
        text += f" (without {', '.join(c.missing)}: no rate)"
    return text


def run_report_blocks(report: RunReport, *, title: str, started_by: str, log_attached: bool) -> list[Block]:
    state = report.state
    head = f"{STATE_ICON.get(state, '')} *{clip(esc(title), 200)}* — {state}"
    net = totals_text(report.net)
    conv = converted_text(report.net_reporting, report.net)
    fields = [
        f"*Invoices created*\n{report.created:,}",
        f"*Net invoiced*\n{net}" + (f"\n{conv}" if conv else ""),
        f"*Skipped below threshold*\n{report.skipped:,} · {totals_text(report.skipped_totals)}"
        + (f"\n{c}" if (c := converted_text(report.skipped_reporting, report.skipped_totals)) else ""),
        f"*Held*\n{report.held:,} · {totals_text(report.held_totals)}"
        + (f"\n{c}" if (c := converted_text(report.held_reporting, report.held_totals)) else ""),
    ]
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=head),
                     fields=[MarkdownTextObject(text=clip(x, FIELD_TEXT_MAX)) for x in fields]),
    ]
    if report.problems:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=lines_with_more(
            ["*Problems*", *(f"• {esc(p)}" for p in report.problems)], MAX_PROBLEMS + 1))))
    if report.log and not log_attached:
        body = lines_with_more([esc(line) for line in report.log], INLINE_LOG_LINES, max_chars=SECTION_TEXT_MAX - 6,
                               more="more lines")
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"```{body}```")))
    foot = f"run {report.run_id} · started by {mention(started_by)}"
    if log_attached:
        foot += f" · full job log ({len(report.log):,} lines) in the thread as CSV and text"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=foot)]))
    return blocks


def run_report_text(report: RunReport, title: str) -> str:
    return clip(f"{esc(title)} — {report.state}: {report.created:,} invoice(s), net {totals_text(report.net)}", 300)
