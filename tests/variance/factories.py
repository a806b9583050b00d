"""Rows for the variance tests, built with the models (one legal entity, advertiser, campaign)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from storage.models import (
    Advertiser,
    Campaign,
    CampaignItem,
    Conversion,
    DeliveryFact,
    ExchangeRate,
    LegalEntity,
    PreInvoice,
    PreInvoiceLine,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FEB = (date(2026, 2, 1), date(2026, 2, 28))
JAN = (date(2026, 1, 1), date(2026, 1, 31))


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def master(s: Session, *, le_tol: str | None = None, adv_tol: str | None = None, camp_tol: str | None = None,
           le_currency: str = "EUR", adv_currency: str = "EUR", channel: str | None = None) -> None:
    s.add(LegalEntity(id="nw", name="Northwind Media GmbH", country="DE", currency=le_currency,
                      tolerance=Decimal(le_tol) if le_tol else None, exceptions_channel=channel))
    s.add(Advertiser(id="elbe", name="Autohaus Elbe KG", legal_entity_id="nw", currency=adv_currency, country="DE",
                     tolerance=Decimal(adv_tol) if adv_tol else None))
    s.add(Campaign(id="winter", advertiser_id="elbe", name="Winter", payment_interval="monthly",
                   start=date(2026, 1, 1), end=date(2026, 3, 31), tolerance=Decimal(camp_tol) if camp_tol else None))
    s.flush()


def item(s: Session, item_id: str = "display", *, rate_type: str | None = "cpm", rate: str | None = "4.00",
         booked: str | None = "900000", billing: str = "delivery", unit: str = "quantity", amount: str | None = None,
         tol: str | None = None, make_good: bool = False, start: date | None = None,
         end: date | None = None) -> CampaignItem:
    it = CampaignItem(id=item_id, campaign_id="winter", description=f"Item {item_id}", billing=billing, unit=unit,
                      rate_type=rate_type, rate=Decimal(rate) if rate else None,
                      booked_quantity=Decimal(booked) if booked else None, amount=Decimal(amount) if amount else None,
                      tolerance=Decimal(tol) if tol else None, make_good=make_good, start=start, end=end)
    s.add(it)
    s.flush()
    return it


def daily(s: Session, item_id: str, start: date, end: date, *, per_day: int, party: str = "first_party",
          metric: str = "impressions", skip: tuple[date, ...] = (), source: str = "gam") -> list[DeliveryFact]:
    rows = []
    for d in days(start, end):
        if d in skip:
            continue
        f = DeliveryFact(item_id=item_id, day=d, source=source, party=party, impressions=0, clicks=0, conversions=0)
        setattr(f, metric, per_day)
        s.add(f)
        rows.append(f)
    s.flush()
    return rows


def conversions(s: Session, item_id: str, day: date, n: int, *, status: str = "approved") -> list[Conversion]:
    rows = [Conversion(source="tracker", external_id=f"{item_id}-{day}-{status}-{i}", item_id=item_id, day=day,
                       status=status) for i in range(n)]
    s.add_all(rows)
    s.flush()
    return rows


def rate(s: Session, day: date, base: str, quote: str, value: str) -> None:
    s.add(ExchangeRate(day=day, base=base, quote=quote, rate=Decimal(value), source="ECB"))
    s.flush()


def preinvoice(s: Session, period: tuple[date, date] = FEB, lines: list[dict[str, Any]] | None = None,
               *, state: str = "draft", currency: str = "EUR") -> PreInvoice:
    pi = PreInvoice(campaign_id="winter", advertiser_id="elbe", legal_entity_id="nw", period_start=period[0],
                    period_end=period[1], state=state, currency=currency, created_at=NOW, updated_at=NOW,
                    content_hash="x")
    for pos, ln in enumerate(lines or []):
        pi.lines.append(PreInvoiceLine(position=pos, item_id=ln.get("item_id"), kind=ln.get("kind", "item"),
                                       description=ln.get("description", "line"),
                                       quantity=Decimal(ln.get("quantity", "1")), unit=ln.get("unit", "unit"),
                                       unit_price=Decimal(ln.get("unit_price", ln["amount"])),
                                       amount=Decimal(ln["amount"]), computation=ln.get("computation", {})))
    pi.net = sum((ln.amount for ln in pi.lines), Decimal(0))
    s.add(pi)
    s.flush()
    return pi
