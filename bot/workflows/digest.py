"""The managers' daily digest: what waits, what breached its SLA, what was billed or skipped, and
how fresh each source is — one Slack message plus a small PNG chart in its thread.

"Since the last digest" is the ``kv`` setting ``digest.last_sent_at`` (the first digest looks back
one day). The digest is read-only except for that setting and its audit record, both written after
the message was posted: a failed post leaves the window open for the next digest.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.payments import BUCKETS, bucket
from bot.workflows import freshness
from bot.workflows.audit import record
from bot.workflows.disputes import DisputeStats, dispute_stats_in
from bot.workflows.held import HeldItem, held_items
from bot.workflows.payments import ReportingAging, aging_in, dso_by_currency, open_as_of
from bot.workflows.run_reports import Converted, Converter, reporting_currency
from storage.db import Database
from storage.models import OPEN_EXCEPTION_STATES, Advertiser, BillingException, Invoice, Setting, SourceState

LAST_SENT_KEY = "digest.last_sent_at"
#: (label, lower bound inclusive, upper bound exclusive) of an open exception's age
AGE_BUCKETS: tuple[tuple[str, timedelta, timedelta | None], ...] = (
    ("< 1 day", timedelta(0), timedelta(days=1)),
    ("1–3 days", timedelta(days=1), timedelta(days=3)),
    ("3–7 days", timedelta(days=3), timedelta(days=7)),
    ("> 7 days", timedelta(days=7), None),
)
#: a source whose last successful sync is older than this is flagged (nightly sync + margin)
STALE_AFTER = timedelta(hours=26)


@dataclass(frozen=True)
class AgeBucket:
    label: str
    count: int
    totals: dict[str, Decimal]  # currency → amount
    reporting: Decimal | None = None  # the totals in the reporting currency (None: some amount has no rate)


@dataclass(frozen=True)
class TrendPoint:
    """Open exceptions at the end of one day (``day`` in UTC) and their amount in the reporting currency."""

    day: date
    count: int
    amount: Decimal


@dataclass(frozen=True)
class Breach:
    exception_id: int
    kind: str
    advertiser: str
    amount: Decimal
    currency: str
    due_at: datetime
    overdue: timedelta
    state: str


def target_text(r: freshness.SourceFreshness | None) -> str | None:
    """``data until 2026-02-28 due 2026-03-02: missed`` — a source's freshness target, if it has one."""
    if r is None or r.target_days is None or r.due is None:
        return None
    return f"target: data until {r.period_end.isoformat()} by {r.due.isoformat()} — {r.state}"


@dataclass(frozen=True)
class Freshness:
    source: str
    last_success_at: datetime | None
    data_until: str | None
    stale: bool
    target: str | None = None  # the freshness target against the last closed month (issue 21)


@dataclass(frozen=True)
class DigestData:
    now: datetime
    since: datetime
    first: bool
    open_count: int
    open_totals: dict[str, Decimal]
    buckets: list[AgeBucket]
    breaches: list[Breach]
    invoices_created: int
    credit_notes_created: int
    invoiced_totals: dict[str, Decimal]  # gross per currency, invoices minus credit notes
    skipped_count: int
    skipped_totals: dict[str, Decimal]
    sources: list[Freshness]
    # receivables (issue 18): currency → bucket (current, d1_30, …) → open amount; DSO per currency
    aging: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    dso: dict[str, Decimal | None] = field(default_factory=dict)
    # disputes (issue 20): open count and amount, median days to resolve, top categories over 90 days
    disputes: DisputeStats | None = None
    # one figure across currencies (issue 17): REPORTING_CURRENCY or the main legal entity's
    reporting_currency: str = "EUR"
    open_reporting: Converted | None = None
    invoiced_reporting: Converted | None = None
    trend: list[TrendPoint] = field(default_factory=list)  # the last 7 days, oldest first
    # items held for correction with their owners (issue 17), the largest first
    held: list[HeldItem] = field(default_factory=list)
    aging_reporting: ReportingAging | None = None  # the buckets over all currencies in the reporting currency


def _sum(pairs: Iterable[tuple[str, Decimal]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(lambda: Decimal("0"))
    for cur, amount in pairs:
        out[cur] += amount  # money is TEXT on SQLite: summed here in Decimal, never in SQL
    return dict(sorted(out.items()))


def last_sent_at(s: Session) -> datetime | None:
    row = s.get(Setting, LAST_SENT_KEY)
    return datetime.fromisoformat(row.value).astimezone(UTC) if row is not None else None


def collect(s: Session, *, now: datetime, since: datetime | None = None,
            stale_after: timedelta = STALE_AFTER) -> DigestData:
    """Everything the digest shows, as data."""
    last = last_sent_at(s) if since is None else since
    window_start = last or now - timedelta(days=1)
    names: dict[str, str] = {r.id: r.name for r in s.execute(select(Advertiser.id, Advertiser.name))}

    open_rows = list(s.execute(
        select(BillingException).where(BillingException.state.in_(OPEN_EXCEPTION_STATES))
        .order_by(BillingException.id)).scalars())
    conv = Converter(s, reporting_currency(s), now.date())
    buckets = []
    for label, lo, hi in AGE_BUCKETS:
        rows = [e for e in open_rows if now - e.created_at >= lo and (hi is None or now - e.created_at < hi)]
        totals = _sum((e.currency, e.amount) for e in rows)
        c = conv.total(totals)
        buckets.append(AgeBucket(label, len(rows), totals, None if c.missing else c.amount))
    breaches = [
        Breach(e.id, e.kind, names.get(e.advertiser_id, e.advertiser_id), e.amount, e.currency, e.due_at,
               now - e.due_at, e.state)
        for e in open_rows if e.due_at is not None and e.due_at <= now
    ]
    breaches.sort(key=lambda b: b.due_at)

    invoices = list(s.execute(select(Invoice).where(Invoice.created_at >= window_start,
                                                    Invoice.created_at < now)).scalars())
    skipped = list(s.execute(
        select(BillingException).where(BillingException.kind == "below_threshold",
                                       BillingException.created_at >= window_start,
                                       BillingException.created_at < now)).scalars())
    targets = {r.source: r for r in freshness.report(s, now.date())}
    sources = [
        Freshness(st.source, st.last_success_at, st.data_until.isoformat() if st.data_until else None,
                  st.last_success_at is None or now - st.last_success_at > stale_after
                  or (st.source in targets and targets[st.source].state == "missed"),
                  target_text(targets.get(st.source)))
        for st in s.execute(select(SourceState).order_by(SourceState.source)).scalars()
    ]
    invoiced_totals = _sum((i.currency, i.gross if i.kind == "invoice" else -abs(i.gross)) for i in invoices)
    known = {f.source for f in sources}
    sources += [Freshness(r.source, None, None, True, target_text(r)) for r in targets.values()
                if r.source not in known]
    return DigestData(
        now=now, since=window_start, first=last is None,
        open_count=len(open_rows), open_totals=_sum((e.currency, e.amount) for e in open_rows),
        buckets=buckets, breaches=breaches,
        invoices_created=sum(1 for i in invoices if i.kind == "invoice"),
        credit_notes_created=sum(1 for i in invoices if i.kind == "credit_note"),
        invoiced_totals=invoiced_totals,
        skipped_count=len(skipped), skipped_totals=_sum((e.currency, e.amount) for e in skipped),
        sources=sources, aging=(aging := receivables_aging(s, now)), dso=receivables_dso(s, now),
        aging_reporting=receivables_in_reporting_currency(s, now) if aging else None,
        disputes=dispute_stats_in(s, now=now),
        held=held_items(s),
        reporting_currency=conv.to, open_reporting=conv.total(_sum((e.currency, e.amount) for e in open_rows)),
        invoiced_reporting=conv.total(invoiced_totals), trend=open_trend(s, now, conv),
    )


TREND_DAYS = 7


def open_trend(s: Session, now: datetime, conv: Converter, days: int = TREND_DAYS) -> list[TrendPoint]:
    """Open exceptions at the end of each of the last ``days`` days (today: now). An exception counts
    from its ``created_at`` until it was decided (``decided_at``; closed without one: ``updated_at``)."""
    since = now - timedelta(days=days)
    rows = list(s.execute(select(BillingException).where(BillingException.created_at <= now)).scalars())
    out = []
    for k in range(days - 1, -1, -1):
        at = now - timedelta(days=k)
        open_then = []
        for e in rows:
            closed = None if e.state in OPEN_EXCEPTION_STATES else (e.decided_at or e.updated_at)
            if e.created_at <= at and (closed is None or closed > at) and (closed is None or closed > since):
                open_then.append(e)
        c = conv.total(_sum((e.currency, e.amount) for e in open_then))
        out.append(TrendPoint(at.date(), len(open_then), c.amount))
    return out


def receivables_aging(s: Session, now: datetime) -> dict[str, dict[str, Decimal]]:
    """Open receivables per currency and days-past-due bucket, on the digest's day."""
    out: dict[str, dict[str, Decimal]] = {}
    today = now.date()
    for inv in open_as_of(s, today):
        b = out.setdefault(inv.currency, dict.fromkeys(BUCKETS, Decimal("0.00")))
        b[bucket((today - inv.due_date).days)] += inv.open_amount
    return dict(sorted(out.items()))


def receivables_in_reporting_currency(s: Session, now: datetime) -> ReportingAging:
    """The aging buckets over every currency, converted to the reporting currency
    (:class:`bot.workflows.payments.ReportingAging` says at which rates)."""
    return aging_in(s, as_of=now.date())[1]


def receivables_dso(s: Session, now: datetime) -> dict[str, Decimal | None]:
    return dso_by_currency(s, as_of=now.date())


def render_chart(data: DigestData) -> bytes:
    """A small PNG shown inline in the digest: open exceptions per age bucket (count and amount), the
    7-day trend of open exceptions and their amount, and receivables aging. matplotlib's object API on
    the Agg canvas (no pyplot global state, so it is safe in worker threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 2 + (1 if data.aging else 0)
    fig = Figure(figsize=(6.4, 2.3 * panels), dpi=100)
    FigureCanvasAgg(fig)
    rc = data.reporting_currency
    ax = fig.add_subplot(panels, 1, 1)
    labels = [b.label for b in data.buckets]
    counts = [b.count for b in data.buckets]
    colors = ["#2eb67d", "#ecb22e", "#e8912d", "#e01e5a"][: len(labels)]
    bars = ax.bar(labels, counts, color=colors)
    ax.bar_label(bars, labels=[f"{b.count}" + (f"\n{b.reporting:,.0f} {rc}" if b.reporting is not None else "")
                               for b in data.buckets], padding=2, fontsize=7)
    ax.set_title("Open exceptions by age", fontsize=10)
    ax.set_ylim(0, max([*counts, 1]) * 1.45)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    tx = fig.add_subplot(panels, 1, 2)
    days = [p.day.strftime("%d %b") for p in data.trend]
    tx.plot(days, [p.count for p in data.trend], marker="o", color="#1264a3", label="open")
    tx.set_ylim(0, max([p.count for p in data.trend] + [1]) * 1.3)
    tx.set_ylabel("open", fontsize=8)
    amounts = tx.twinx()
    amounts.bar(days, [float(p.amount) for p in data.trend], color="#1264a3", alpha=0.15)  # a picture, not money
    amounts.set_ylabel(rc, fontsize=8)
    tx.set_zorder(amounts.get_zorder() + 1)
    tx.patch.set_visible(False)
    tx.set_title(f"Open exceptions, last {len(data.trend)} days (line) and amount in {rc} (bars)", fontsize=10)
    for a in (tx, amounts):
        a.tick_params(labelsize=7)
        a.spines[["top"]].set_visible(False)
    if data.aging:  # receivables aging: one bar group per bucket, one bar per currency
        ax2 = fig.add_subplot(panels, 1, 3)
        names = ["current", "1–30", "31–60", "61–90", "> 90"]
        width = 0.8 / len(data.aging)
        for k, (cur, b) in enumerate(data.aging.items()):
            xs = [i + k * width for i in range(len(BUCKETS))]
            ax2.bar(xs, [float(b[x]) for x in BUCKETS], width=width, label=cur)  # a picture, not money
        ax2.set_xticks([i + 0.4 - width / 2 for i in range(len(BUCKETS))], names)
        ax2.set_title("Receivables by days past due", fontsize=10)
        ax2.tick_params(labelsize=8)
        ax2.legend(fontsize=7, frameon=False)
        ax2.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def record_sent(db: Database, data: DigestData, *, now: datetime, key: Ed25519PrivateKey | None, actor: str,
                channel: str, ts: str, file_id: str | None) -> None:
    """The digest went out: remember when (the next digest covers what happened since), audited."""
    with db.transaction() as s:
        row = s.get(Setting, LAST_SENT_KEY)
        if row is None:
            s.add(Setting(key=LAST_SENT_KEY, value=now.isoformat()))
        else:
            row.value = now.isoformat()
        record(s, key=key, actor=actor, action="digest.sent", subject_type="digest", subject_id=now.date().isoformat(),
               payload={"channel": channel, "ts": ts, "since": data.since.isoformat(),
                        "open": data.open_count, "breaches": len(data.breaches),
                        "invoices": data.invoices_created, "file": file_id}, now=now)
