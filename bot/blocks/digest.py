"""Block Kit for the managers' digest (slack_sdk models, which validate lengths)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    ImageBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.blocks.common import clip, esc
from bot.blocks.held import held_section
from bot.blocks.lists import lines_with_more
from bot.workflows.digest import DigestData
from bot.workflows.disputes import DisputeStats
from bot.workflows.payments import ReportingAging
from bot.workflows.run_reports import Converted
from storage.settings import local_time

MAX_BREACH_LINES = 10
MAX_SOURCE_LINES = 12


def money_text(amount: Decimal, currency: str) -> str:
    return f"{amount.quantize(Decimal('0.01')):,} {currency}"


def totals_text(totals: dict[str, Decimal]) -> str:
    return ", ".join(money_text(v, c) for c, v in totals.items()) or "—"


def _when(dt: datetime) -> str:
    return local_time(dt)


def _age(d: timedelta) -> str:
    hours = int(d.total_seconds() // 3600)
    return f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{hours}h"


def digest_text(d: DigestData) -> str:
    """The notification / fallback text."""
    return (f"Billing digest {d.now.date().isoformat()}: {d.open_count} open exceptions, "
            f"{len(d.breaches)} SLA breaches, {d.invoices_created} invoices created")


def _reporting(c: Converted | None) -> str:
    if c is None:
        return ""
    missing = f" (without {', '.join(c.missing)}: no rate)" if c.missing else ""
    return f"≈ {money_text(c.amount, c.currency)}{missing}"


def _currencies(totals: dict[str, Decimal], limit: int = 4) -> str:
    """Per currency, at most ``limit`` of them (largest first), then "and N more"."""
    items = sorted(totals.items(), key=lambda kv: -abs(kv[1]))
    text = ", ".join(money_text(v, c) for c, v in items[:limit]) or "—"
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def digest_blocks(d: DigestData, *, chart_file_id: str | None = None) -> list[Block]:
    """Header, window, open exceptions by age (count and amount) with one total in the reporting
    currency, the 7-day trend, the chart inline (an uploaded file), SLA breaches, invoices, skipped,
    source freshness, receivables. Every section stays within Slack's limits ("… and N more")."""
    rc = d.reporting_currency
    open_head = f"*Open exceptions:* {d.open_count:,}"
    if d.open_totals and list(d.open_totals) == [rc]:
        open_head += f" · {money_text(d.open_totals[rc], rc)}"
    elif d.open_totals:
        open_head += f" · {_reporting(d.open_reporting)}\n{_currencies(d.open_totals)}"
    blocks: list[Block] = [
        HeaderBlock(text=f"Billing digest — {d.now.date().isoformat()}"),
        ContextBlock(elements=[MarkdownTextObject(
            text=("First digest: covering the last 24 hours" if d.first else f"Since {_when(d.since)}")
            + f" · as of {_when(d.now)} · totals in {rc}")]),
        SectionBlock(
            text=MarkdownTextObject(text=clip(open_head, 3000)),
            fields=[MarkdownTextObject(text=clip(
                f"*{b.label}*\n{b.count:,}"
                + (f" · {money_text(b.reporting, rc)}" if b.reporting is not None and b.count else "")
                + (f"\n{_currencies(b.totals)}" if b.totals and list(b.totals) != [rc] else ""), 2000))
                for b in d.buckets],
        ),
    ]
    if d.trend:
        oldest, newest = d.trend[0], d.trend[-1]
        change = newest.count - oldest.count
        trend = " → ".join(f"{p.count}" for p in d.trend)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(
            f"*Last {len(d.trend)} days:* open {trend} ({'+' if change > 0 else ''}{change}); amount "
            f"{money_text(oldest.amount, rc)} → {money_text(newest.amount, rc)}", 3000))))
    if chart_file_id:
        blocks.append(ImageBlock(slack_file={"id": chart_file_id}, alt_text=(
            f"Open exceptions by age and over the last {len(d.trend)} days"
            + (", receivables by days past due" if d.aging else ""))[:2000],
            title=PlainTextObject(text="Open exceptions by age and trend")))
    if d.breaches:
        lines = [
            f"• #{b.exception_id} {b.kind.replace('_', ' ')} — {clip(esc(b.advertiser), 80)}, "
            f"{money_text(b.amount, b.currency)}, "
            f"overdue {_age(b.overdue)}{' (escalated)' if b.state == 'escalated' else ''}"
            for b in d.breaches
        ]
        breach_text = lines_with_more([f":rotating_light: *SLA breaches:* {len(d.breaches):,}", *lines],
                                      MAX_BREACH_LINES + 1)
    else:
        breach_text = ":white_check_mark: *SLA breaches:* none"
    blocks.append(SectionBlock(text=MarkdownTextObject(text=breach_text)))
    blocks.append(DividerBlock())
    invoiced = f"*Invoices created:* {d.invoices_created:,}"
    if d.credit_notes_created:
        invoiced += f" (+ {d.credit_notes_created:,} credit notes)"
    inv_total = _currencies(d.invoiced_totals)
    if d.invoiced_totals and list(d.invoiced_totals) != [rc]:
        inv_total += f"\n{_reporting(d.invoiced_reporting)}"
    blocks.append(SectionBlock(fields=[
        MarkdownTextObject(text=clip(f"{invoiced}\n{inv_total}", 2000)),
        MarkdownTextObject(text=clip(
            f"*Skipped below threshold:* {d.skipped_count:,}\n{_currencies(d.skipped_totals)}", 2000)),
    ]))
    if d.sources:
        source_lines: list[str] = []
        for f in d.sources:
            mark = ":warning:" if f.stale else ":white_check_mark:"
            last = _when(f.last_success_at) if f.last_success_at else "never synced"
            until = f", data until {f.data_until}" if f.data_until else ""
            target = f" · {esc(f.target)}" if f.target else ""
            source_lines.append(f"{mark} *{clip(esc(f.source), 80)}* — last sync {last}{until}{target}")
        source_text = lines_with_more(["*Source freshness*", *source_lines], MAX_SOURCE_LINES + 1)
    else:
        source_text = "*Source freshness*\nno sources synced yet"
    blocks.append(SectionBlock(text=MarkdownTextObject(text=source_text)))
    if d.aging:
        blocks.append(receivables_block(d))
    if d.disputes is not None and not d.disputes.empty:
        blocks.append(disputes_block(d.disputes))
    if d.held:
        blocks.extend(held_section(d.held))
    if not chart_file_id:
        chart = "open exceptions by age and trend" + (" and receivables aging" if d.aging else "")
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Chart: {chart}, in the thread.")]))
    return blocks


AGING_LABELS = {"current": "current", "d1_30": "1–30", "d31_60": "31–60", "d61_90": "61–90", "d90_plus": "> 90"}


def receivables_text(aging: dict[str, dict[str, Decimal]], dso: dict[str, Decimal | None],
                     reporting: ReportingAging | None = None) -> str:
    """Open receivables per currency by days past due, and DSO over the last 90 days (digest, App Home);
    with ``reporting`` and another currency open, a last line with all of it in the reporting currency."""
    lines = []
    for cur, b in aging.items():
        cells = " · ".join(f"{AGING_LABELS[k]}: {money_text(v, cur)}" for k, v in b.items())
        days = dso.get(cur)
        lines.append(f"*{cur}* {cells}" + (f" · DSO {days} days" if days is not None else ""))
    if reporting is not None and set(aging) - {reporting.currency}:  # one currency and it is the reporting one: said
        cells = " · ".join(f"{AGING_LABELS[k]}: {money_text(v, reporting.currency)}"
                           for k, v in reporting.buckets.items())
        left_out = f" (without {', '.join(reporting.unconverted)}: no rate)" if reporting.unconverted else ""
        lines.append(f"*All in {reporting.currency}*{left_out} {cells} · total "
                     f"{money_text(reporting.total, reporting.currency)}")
    if not lines:
        return "*Receivables by days past due*\nnothing open"
    return lines_with_more(["*Receivables by days past due*", *lines], 12, more="more currencies")


def receivables_block(d: DigestData) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=receivables_text(d.aging, d.dso, d.aging_reporting)))


def disputes_text(st: DisputeStats) -> str:
    """Open disputes with their amount, the median days to resolve one and the top categories (90 days)."""
    median = f"{st.median_days_to_resolve:g} days" if st.median_days_to_resolve is not None else "—"
    top = ", ".join(f"{c.replace('_', ' ')} ({n})" for c, n in st.top_categories) or "none"
    return (f"*Disputes:* {st.open_count} open · {totals_text(st.open_amount)}\n"
            f"Median time to resolve: {median} ({st.resolved} resolved) · top categories: {top} — last 90 days")


def disputes_block(st: DisputeStats) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=disputes_text(st)))
