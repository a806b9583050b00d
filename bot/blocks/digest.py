"""Block Kit for the managers' digest (slack_sdk models, which validate lengths)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.blocks.common import esc
from bot.workflows.digest import DigestData
from bot.workflows.disputes import DisputeStats
from storage.settings import local_time

MAX_BREACH_LINES = 10


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


def digest_blocks(d: DigestData) -> list[Block]:
    """Header, window, open exceptions by age, SLA breaches, invoices, skipped, source freshness."""
    blocks: list[Block] = [
        HeaderBlock(text=f"Billing digest — {d.now.date().isoformat()}"),
        ContextBlock(elements=[MarkdownTextObject(
            text=("First digest: covering the last 24 hours" if d.first else f"Since {_when(d.since)}")
            + f" · as of {_when(d.now)}")]),
        SectionBlock(
            text=MarkdownTextObject(text=f"*Open exceptions:* {d.open_count} · {totals_text(d.open_totals)}"),
            fields=[MarkdownTextObject(text=f"*{b.label}*\n{b.count} · {totals_text(b.totals)}") for b in d.buckets],
        ),
    ]
    if d.breaches:
        lines = [
            f"• #{b.exception_id} {b.kind.replace('_', ' ')} — {esc(b.advertiser)}, "
            f"{money_text(b.amount, b.currency)}, "
            f"overdue {_age(b.overdue)}{' (escalated)' if b.state == 'escalated' else ''}"
            for b in d.breaches[:MAX_BREACH_LINES]
        ]
        if len(d.breaches) > MAX_BREACH_LINES:
            lines.append(f"… and {len(d.breaches) - MAX_BREACH_LINES} more")
        breach_text = f":rotating_light: *SLA breaches:* {len(d.breaches)}\n" + "\n".join(lines)
    else:
        breach_text = ":white_check_mark: *SLA breaches:* none"
    blocks.append(SectionBlock(text=MarkdownTextObject(text=breach_text)))
    blocks.append(DividerBlock())
    invoiced = f"*Invoices created:* {d.invoices_created}"
    if d.credit_notes_created:
        invoiced += f" (+ {d.credit_notes_created} credit notes)"
    blocks.append(SectionBlock(fields=[
        MarkdownTextObject(text=f"{invoiced}\n{totals_text(d.invoiced_totals)}"),
        MarkdownTextObject(text=f"*Skipped below threshold:* {d.skipped_count}\n{totals_text(d.skipped_totals)}"),
    ]))
    if d.sources:
        lines = []
        for f in d.sources:
            mark = ":warning:" if f.stale else ":white_check_mark:"
            last = _when(f.last_success_at) if f.last_success_at else "never synced"
            until = f", data until {f.data_until}" if f.data_until else ""
            lines.append(f"{mark} *{esc(f.source)}* — last sync {last}{until}")
        source_text = "*Source freshness*\n" + "\n".join(lines)
    else:
        source_text = "*Source freshness*\nno sources synced yet"
    blocks.append(SectionBlock(text=MarkdownTextObject(text=source_text)))
    if d.aging:
        blocks.append(receivables_block(d))
    if d.disputes is not None and not d.disputes.empty:
        blocks.append(disputes_block(d.disputes))
    chart = "open exceptions by age" + (" and receivables aging" if d.aging else "")
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Chart: {chart}, in the thread.")]))
    return blocks


AGING_LABELS = {"current": "current", "d1_30": "1–30", "d31_60": "31–60", "d61_90": "61–90", "d90_plus": "> 90"}


def receivables_text(aging: dict[str, dict[str, Decimal]], dso: dict[str, Decimal | None]) -> str:
    """Open receivables per currency by days past due, and DSO over the last 90 days (digest, App Home)."""
    lines = []
    for cur, b in aging.items():
        cells = " · ".join(f"{AGING_LABELS[k]}: {money_text(v, cur)}" for k, v in b.items())
        days = dso.get(cur)
        lines.append(f"*{cur}* {cells}" + (f" · DSO {days} days" if days is not None else ""))
    return "*Receivables by days past due*\n" + ("\n".join(lines) or "nothing open")


def receivables_block(d: DigestData) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=receivables_text(d.aging, d.dso)))


def disputes_text(st: DisputeStats) -> str:
    """Open disputes with their amount, the median days to resolve one and the top categories (90 days)."""
    median = f"{st.median_days_to_resolve:g} days" if st.median_days_to_resolve is not None else "—"
    top = ", ".join(f"{c.replace('_', ' ')} ({n})" for c, n in st.top_categories) or "none"
    return (f"*Disputes:* {st.open_count} open · {totals_text(st.open_amount)}\n"
            f"Median time to resolve: {median} ({st.resolved} resolved) · top categories: {top} — last 90 days")


def disputes_block(st: DisputeStats) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=disputes_text(st)))
