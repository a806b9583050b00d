"""Billing runs as reports: totals first (invoices created, net per currency and in the reporting
currency, skipped and held with their totals, problems), then the full job log.

Read-only. The Slack run report, ``billbot cycle``/``run`` and ``billbot runs list|show`` all read
:func:`run_report`, so every surface shows the same figures.

The reporting currency is ``REPORTING_CURRENCY`` or, unset, the currency of the main legal entity
(the one with the most advertisers). An invoice converts at the rate locked on it when that rate
goes to the reporting currency; anything else (other invoices, skipped and held amounts) at the
latest stored rate on or before the day (:func:`billing.fx.find_rate`). An amount without a rate is
named, never converted at 1.0.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.errors import NotFound
from billing.money import ZERO
from bot.workflows.fx import Converted, Converter
from storage.models import Advertiser, BillingRun, Invoice, JobLog, LegalEntity
from storage.settings import get_settings

__all__ = ["Converted", "Converter",  # Converted and Converter live in bot.workflows.fx
           "RunReport", "log_csv", "reporting_currency", "run_report"]


def reporting_currency(s: Session) -> str:
    """``REPORTING_CURRENCY``, else the main legal entity's currency (most advertisers; then by id)."""
    configured = (get_settings().reporting_currency or "").strip().upper()
    if configured:
        return configured
    row = s.execute(
        select(LegalEntity.currency, func.count(Advertiser.id).label("n"))
        .join(Advertiser, Advertiser.legal_entity_id == LegalEntity.id, isouter=True)
        .group_by(LegalEntity.id, LegalEntity.currency)
        .order_by(func.count(Advertiser.id).desc(), LegalEntity.id).limit(1)).first()
    return str(row[0]) if row is not None else "EUR"


@dataclass(frozen=True)
class RunReport:
    run_id: int
    period: str
    state: str
    started_by: str | None
    started_at: datetime
    finished_at: datetime | None
    created: int
    net: dict[str, Decimal]
    net_reporting: Converted
    skipped: int
    skipped_totals: dict[str, Decimal]
    held: int
    held_totals: dict[str, Decimal]
    problems: list[str]
    skipped_reporting: Converted | None = None
    held_reporting: Converted | None = None
    log: list[str] = field(default_factory=list)
    log_rows: list[tuple[datetime, str, str]] = field(default_factory=list)  # at, level, message

    def as_json(self) -> dict[str, Any]:
        def money(d: Mapping[str, Decimal]) -> dict[str, str]:
            return {c: f"{v:.2f}" for c, v in d.items()}

        return {"run": self.run_id, "period": self.period, "state": self.state, "started_by": self.started_by,
                "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "created": self.created, "net": money(self.net),
                "net_reporting": {"currency": self.net_reporting.currency,
                                  "amount": f"{self.net_reporting.amount:.2f}",
                                  "not_converted": list(self.net_reporting.missing)},
                "skipped": self.skipped, "skipped_totals": money(self.skipped_totals),
                "held": self.held, "held_totals": money(self.held_totals), "problems": self.problems}


def _decimals(d: Any) -> dict[str, Decimal]:
    return {str(c): Decimal(str(v)) for c, v in (d or {}).items()} if isinstance(d, Mapping) else {}


def _count(value: Any) -> int:
    """Summaries store counts; older rows stored lists."""
    if isinstance(value, int):
        return value
    return len(value) if isinstance(value, list | tuple) else 0


def run_report(s: Session, run_id: int, *, with_log: bool = True) -> RunReport:
    run = s.get(BillingRun, run_id)
    if run is None:
        raise NotFound(f"billing run {run_id} does not exist")
    return _report(s, run, with_log=with_log)


def recent_runs(s: Session, *, limit: int = 20) -> list[RunReport]:
    """The last ``limit`` billing runs, newest first, without their logs."""
    runs = s.execute(select(BillingRun).order_by(BillingRun.id.desc()).limit(limit)).scalars()
    return [_report(s, r, with_log=False) for r in runs]


def _report(s: Session, run: BillingRun, *, with_log: bool) -> RunReport:
    summary = run.summary or {}
    invoices = list(s.execute(select(Invoice).where(Invoice.billing_run_id == run.id,
                                                    Invoice.kind == "invoice")).scalars())
    net: dict[str, Decimal] = {}
    for inv in invoices:
        net[inv.currency] = net.get(inv.currency, ZERO) + inv.net
    on = (run.finished_at or run.started_at).date()
    conv = Converter(s, reporting_currency(s), on)
    problems = [f"{n} {reason}" for reason, n in (summary.get("held_reasons") or {}).items()]
    failed_pdfs = sum(1 for i in invoices if i.pdf_state == "failed")
    if failed_pdfs:
        problems.append(f"{failed_pdfs} invoice PDF(s) failed to render")
    if summary.get("error"):
        problems.append(f"run failed: {summary['error']}")
    rows: list[tuple[datetime, str, str]] = []
    if with_log:
        rows = [(r.at, r.level, r.message) for r in s.execute(
            select(JobLog).where(JobLog.run_kind == "billing", JobLog.run_id == run.id).order_by(JobLog.id)).scalars()]
    return RunReport(
        run_id=run.id, period=run.period, state=run.state, started_by=run.started_by, started_at=run.started_at,
        finished_at=run.finished_at, created=len(invoices) or _count(summary.get("created")),
        net=dict(sorted(net.items())), net_reporting=conv.sum((inv.net, inv.currency, inv.fx) for inv in invoices),
        skipped=_count(summary.get("skipped")), skipped_totals=_decimals(summary.get("skipped_totals")),
        held=_count(summary.get("held")), held_totals=_decimals(summary.get("held_totals")), problems=problems,
        skipped_reporting=conv.total(_decimals(summary.get("skipped_totals"))),
        held_reporting=conv.total(_decimals(summary.get("held_totals"))),
        log=[m for _, _, m in rows], log_rows=rows)


def log_csv(report: RunReport) -> str:
    """The job log as CSV (``at,level,message``) — the file attached to a long run report."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["at", "level", "message"])
    for at, level, message in report.log_rows:
        w.writerow([at.isoformat(), level, message])
    return buf.getvalue()


def log_text(report: RunReport) -> str:
    return "".join(f"{at:%Y-%m-%d %H:%M:%S} {level:<5} {message}\n" for at, level, message in report.log_rows)
