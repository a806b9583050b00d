"""Fixtures for sync and import tests: a small scenario, a configured tracker source, the fake tracker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from storage.db import Database
from storage.loader import load_scenario
from storage.sources.base import get_source_config
from storage.sources.hasoffers import HasOffersClient, HasOffersSource
from tests.fakes.tracker import FakeTracker

NOW = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)

SCENARIO: dict[str, Any] = {
    "legal_entities": [{"id": "northwind-media", "name": "Northwind Media GmbH", "country": "DE", "currency": "EUR",
                        "vat_id": "DE811907980", "start_of_week": "monday"}],
    "advertisers": [{"id": "autohaus-elbe", "name": "Autohaus Elbe KG", "legal_entity": "northwind-media",
                     "currency": "EUR", "country": "DE", "billing_threshold": "250.00"}],
    "campaigns": [{
        "id": "elbe-winter", "advertiser": "autohaus-elbe", "name": "Winter campaign", "payment_interval": "monthly",
        "start": "2026-01-01", "end": "2026-03-31",
        "items": [
            {"id": "elbe-display", "description": "Display", "billing": "delivery", "rate_type": "cpm",
             "rate": "4.20", "booked_quantity": 500000,
             "external_ids": {"tracker": "101", "gam": "5550001"}},
            {"id": "elbe-leads", "description": "Leads", "billing": "delivery", "rate_type": "cpl", "rate": "25.00",
             "booked_quantity": 120, "external_ids": {"tracker": "102", "gam": "5550002", "dealer-logs": "elbe"}},
        ],
    }],
}


@pytest.fixture
def scenario(db: Database) -> Database:
    load_scenario(db, SCENARIO)
    return db


@pytest.fixture
def tracker() -> Iterator[FakeTracker]:
    with FakeTracker(token="secret-token") as t:
        t.employees[1] = {"first_name": "Erika", "last_name": "Muster", "email": "erika@example.com",
                          "status": "active"}
        t.advertisers[17] = {"company": "Autohaus Elbe KG", "country": "DE", "status": "active"}
        t.advertisers[18] = {"company": "Garage du Rhône", "country": "FR", "status": "active"}
        t.affiliates[5] = {"company": "Deal Portal", "status": "active", "country": "DE"}
        yield t


@pytest.fixture
def source_env(tracker: FakeTracker, monkeypatch: pytest.MonkeyPatch) -> FakeTracker:
    for k, v in {"URL": tracker.url, "TOKEN": tracker.token, "KIND": "hasoffers", "TIMEZONE": "Europe/Berlin",
                 "CURRENCY": "EUR", "LEGAL_ENTITY": "northwind-media", "PAGE_LIMIT": "50"}.items():
        monkeypatch.setenv(f"BILLBOT_SOURCE_TRACKER_{k}", v)
    return tracker


class Sleeps(list[float]):
    """Records the waits the client asks for instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def connector(sleeps: Sleeps, *, timeout: float = 5.0, max_attempts: int = 4, **overrides: str) -> HasOffersSource:
    cfg = get_source_config("tracker", require=True)
    if overrides:
        cfg = cfg.model_copy(update=overrides)
    client = HasOffersClient(cfg.url or "", cfg.token, timeout=timeout, max_attempts=max_attempts, backoff=0.01,
                             sleep=sleeps)
    return HasOffersSource(cfg, client=client)


def stat(day: str, offer: str, affiliate: str = "5", impressions: int = 1000, clicks: int = 10,
         conversions: int = 0, revenue: str = "4.20", payout: str = "1.00") -> dict[str, Any]:
    return {"date": day, "offer_id": offer, "affiliate_id": affiliate, "impressions": impressions,
            "clicks": clicks, "conversions": conversions, "revenue": revenue, "payout": payout}


def conversion(cid: str, when: str, status: str = "approved", offer: str = "102", affiliate: str = "5",
               payout: str = "10.00", revenue: str = "25.00", currency: str = "EUR") -> dict[str, Any]:
    return {"id": cid, "datetime": when, "status": status, "offer_id": offer, "affiliate_id": affiliate,
            "payout": payout, "revenue": revenue, "currency": currency}
