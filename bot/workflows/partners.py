"""Partners (issue 19): the sales partners that own several advertisers (branches), and their monthly
statement — every invoice and credit note of the partner's branches whose service period ends in the
month, whether the partner is invoiced per branch or with one consolidated invoice.

Read-only: nothing here changes state (partners are master data, loaded by ``billbot load``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload

from billing.errors import NotFound
from billing.money import ZERO
from billing.periods import parse_period
from storage.db import Database
from storage.models import Advertiser, Invoice, Partner


@dataclass(frozen=True)
class StatementRow:
    """One document on a partner statement."""

    number: str
    kind: str  # invoice | credit_note
    issue_date: date
    due_date: date
    service_start: date | None
    service_end: date | None
    branches: tuple[str, ...]  # the branch(es) it bills: one, or several on a consolidated invoice
    currency: str
    net: Decimal
    vat: Decimal
    gross: Decimal


@dataclass(frozen=True)
class Statement:
    partner_id: str
    partner_name: str
    invoicing: str
    period: str
    period_start: date
    period_end: date
    seller: str
    branches: tuple[str, ...]  # every branch of the partner, by id
    rows: tuple[StatementRow, ...]
    #: per currency: net, VAT, gross of all rows (credit notes count negative)
    totals: dict[str, tuple[Decimal, Decimal, Decimal]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"partner": self.partner_id, "name": self.partner_name, "invoicing": self.invoicing,
                "period": self.period, "branches": list(self.branches),
                "documents": [{"number": r.number, "kind": r.kind, "issue_date": r.issue_date.isoformat(),
                               "due_date": r.due_date.isoformat(), "branches": list(r.branches),
                               "currency": r.currency, "net": f"{r.net:.2f}", "vat": f"{r.vat:.2f}",
                               "gross": f"{r.gross:.2f}"} for r in self.rows],
                "totals": {c: {"net": f"{n:.2f}", "vat": f"{v:.2f}", "gross": f"{g:.2f}"}
                           for c, (n, v, g) in self.totals.items()}}


def list_partners(db: Database) -> list[dict[str, Any]]:
    """Every partner with its invoicing choice and number of branches."""
    with db.read() as s:
        counts = dict(s.execute(select(Advertiser.partner_id, func.count()).where(Advertiser.partner_id.is_not(None))
                                .group_by(Advertiser.partner_id)).all())
        return [{"id": p.id, "name": p.name, "invoicing": p.invoicing, "head_office": p.head_office_id,
                 "branches": int(counts.get(p.id, 0))}
                for p in s.execute(select(Partner).order_by(Partner.id)).scalars()]


def partner_statement(db: Database, partner_id: str, *, period: str) -> Statement:
    """The partner's statement for ``period`` (``2026-10``): its branches' invoices and credit notes whose
    service period ends in the period (documents without one: issued in it), by issue date and number."""
    p = parse_period(period)
    with db.read() as s:
        partner = s.get(Partner, partner_id)
        if partner is None:
            raise NotFound(f"partner {partner_id!r} not found (billbot partners list shows the partners)")
        return _statement(s, partner, p.label, p.start, p.end)


def _statement(s: Session, partner: Partner, label: str, start: date, end: date) -> Statement:
    branches = {a.id: a.name for a in s.execute(
        select(Advertiser).where(Advertiser.partner_id == partner.id).order_by(Advertiser.id)).scalars()}
    invoices = list(s.execute(
        select(Invoice).options(joinedload(Invoice.legal_entity))
        .where(Invoice.advertiser_id.in_(list(branches)),
               or_(Invoice.service_end.between(start, end),
                   Invoice.service_end.is_(None) & Invoice.issue_date.between(start, end)))
        .order_by(Invoice.issue_date, Invoice.number)).scalars()) if branches else []
    rows = []
    totals: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
    for inv in invoices:
        buyer = (inv.parties or {}).get("buyer") or {}
        names = tuple(buyer.get("branches") or [branches[inv.advertiser_id]])
        rows.append(StatementRow(inv.number, inv.kind, inv.issue_date, inv.due_date, inv.service_start,
                                 inv.service_end, names, inv.currency, inv.net, inv.vat, inv.gross))
        n, v, g = totals.get(inv.currency, (ZERO, ZERO, ZERO))
        totals[inv.currency] = (n + inv.net, v + inv.vat, g + inv.gross)
    seller = invoices[0].legal_entity.name if invoices else ""
    return Statement(partner.id, partner.name, partner.invoicing, label, start, end, seller,
                     tuple(branches.values()), tuple(rows), dict(sorted(totals.items())))
