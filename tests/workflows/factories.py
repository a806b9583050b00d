"""Scenario dicts for billing tests (the ``billbot load`` format), loaded with storage.loader."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from storage.db import Database
from storage.loader import load_scenario


def entity(id: str = "northwind", *, country: str = "DE", currency: str = "EUR", sow: str = "monday",
           vat_id: str | None = "DE811907980", series: str = "INV-{year}-{seq:06d}",
           cn_series: str = "CN-{year}-{seq:06d}") -> dict[str, Any]:
    return {"id": id, "name": f"{id.title()} Media GmbH", "country": country, "currency": currency,
            "vat_id": vat_id, "start_of_week": sow, "invoice_series": series, "credit_note_series": cn_series,
            "address": "Hafenstrasse 1, 20457 Hamburg"}


def advertiser(id: str, name: str | None = None, *, le: str = "northwind", country: str = "DE",
               currency: str = "EUR", vat_id: str | None = None, threshold: str = "0.00",
               terms: int = 14) -> dict[str, Any]:
    return {"id": id, "name": name or id.replace("-", " ").title(), "legal_entity": le, "currency": currency,
            "country": country, "vat_id": vat_id, "billing_threshold": threshold, "payment_terms_days": terms}


def linear(id: str, amount: str, **kw: Any) -> dict[str, Any]:
    return {"id": id, "description": kw.pop("description", f"Booked {id}"), "billing": "linear",
            "unit": "amount", "period": "day_based", "amount": amount, **kw}


def delivery(id: str, rate_type: str, rate: str, **kw: Any) -> dict[str, Any]:
    return {"id": id, "description": kw.pop("description", f"Delivered {id}"), "billing": "delivery",
            "rate_type": rate_type, "rate": rate, **kw}


def campaign(id: str, adv: str, items: list[dict[str, Any]], *, start: str = "2026-01-01", end: str = "2026-12-31",
             interval: str = "monthly") -> dict[str, Any]:
    return {"id": id, "advertiser": adv, "name": f"Campaign {id}", "bill_me": True, "payment_interval": interval,
            "start": start, "end": end, "items": items}


def scenario(*, entities: list[dict[str, Any]] | None = None, advertisers: list[dict[str, Any]],
             campaigns: list[dict[str, Any]], delivery_rows: list[dict[str, Any]] | None = None,
             rates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"legal_entities": entities or [entity()], "advertisers": advertisers,
                            "campaigns": campaigns}
    if delivery_rows:
        data["delivery"] = delivery_rows
    if rates:
        data["exchange_rates"] = rates
    return data


def load(db: Database, data: dict[str, Any]) -> None:
    load_scenario(db, data, actor="test")


def monthly_advertisers(n: int, *, amount: str = "1000.00", threshold: str = "0.00",
                        prefix: str = "adv") -> dict[str, Any]:
    """``n`` domestic advertisers, each with one linear campaign over 2026 billing ``amount`` a month."""
    yearly = str(Decimal(amount) * 12)
    return scenario(
        advertisers=[advertiser(f"{prefix}-{i:03d}", f"Autohaus {prefix} {i:03d}", threshold=threshold)
                     for i in range(n)],
        campaigns=[campaign(f"{prefix}-c{i:03d}", f"{prefix}-{i:03d}", [linear(f"{prefix}-i{i:03d}", yearly,
                                                                             period="even")])
                   for i in range(n)],
    )
