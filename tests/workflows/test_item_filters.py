"""Delivery read for many campaign items at once (a chunk of a scaled-out run, a slice of the scale bench):
past 500 items PostgreSQL filters with one array parameter (``= ANY``), so only the wanted items' rows come
back; SQLite reads the date window and keeps the wanted ones. Either way the figures are the same."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import event, insert

from bot.workflows.preinvoices import delivery_days
from bot.workflows.variance_checks import _facts_frame
from storage.db import Database
from storage.models import CampaignItem, Conversion, DeliveryFact
from tests.factories import master

FEB1, FEB2 = date(2026, 2, 1), date(2026, 2, 2)


def test_many_items_read_only_their_own_delivery(db: Database, backend: str) -> None:
    ids = [f"it-{n:04d}" for n in range(800)]
    with db.transaction() as s:
        master(s)
        s.execute(insert(CampaignItem), [{"id": i, "campaign_id": "winter", "description": i, "billing": "delivery",
                                          "unit": "quantity", "rate_type": "cpc", "position": n}
                                         for n, i in enumerate(ids)])
        s.execute(insert(DeliveryFact), [{"item_id": i, "day": d, "source": "gam", "party": "first_party",
                                          "impressions": 10 * n, "clicks": n, "conversions": 0}
                                         for n, i in enumerate(ids) for d in (FEB1, FEB2)])
        s.execute(insert(Conversion), [{"source": "tracker", "external_id": f"c-{i}", "item_id": i, "day": FEB1,
                                        "status": "approved"} for i in ids])
    wanted = ids[100:700]  # 600 items: past the IN list's limit
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.read() as s:
            days = delivery_days(s, wanted, FEB1, FEB2)
            frame = _facts_frame(s, wanted, FEB1, FEB2)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert set(days) == set(wanted)
    n = 250
    assert [(d.day, d.impressions, d.clicks, d.approved_conversions) for d in days[f"it-{n:04d}"]] == [
        (FEB1, 10 * n, n, 1), (FEB2, 10 * n, n, 0)]
    assert set(frame["item_id"]) == set(wanted) and len(frame) == 600 * 3  # two days of facts, one conversion
    reads = [q for q in statements if "FROM delivery_facts" in q or "FROM conversions" in q]
    assert len(reads) == 4
    if backend == "postgres":  # one array parameter, not the month's rows of every item
        assert all("ANY" in q for q in reads)
