"""Ingest building blocks: exact money text, day parsing, and upsert counting on both databases."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from storage.db import Database
from storage.ingest import IngestContext, _micros, ingest_stats, micros_to_text, parse_day, upsert
from storage.models import DeliveryFact, ExternalId
from storage.sources.base import get_source_config, make_frame
from tests.storage.conftest import NOW

amounts = st.decimals(min_value=Decimal("-99999999.999999"), max_value=Decimal("99999999.999999"), places=6,
                      allow_nan=False, allow_infinity=False)


@given(st.lists(amounts, min_size=1, max_size=20))
def test_amount_text_survives_micros_exactly(values: list[Decimal]) -> None:
    text = pd.Series([format(v, "f") for v in values], dtype=object)
    micros, bad, negative = _micros(text, already_micros=False)
    assert not bad.any()
    assert list(negative) == [v < 0 for v in values]
    back = micros_to_text(micros)
    assert [Decimal(t) for t in back] == values
    assert all(t == "0" or not t.endswith("0") or "." not in t for t in back)  # canonical: no trailing zeros


@given(st.integers(min_value=0, max_value=10**15))
def test_api_micros_become_currency_units(m: int) -> None:
    micros, bad, _neg = _micros(pd.Series([str(m)], dtype=object), already_micros=True)
    assert not bad.any()
    assert Decimal(micros_to_text(micros)[0]) == Decimal(m) / 1_000_000


def test_day_spellings() -> None:
    assert {parse_day(x) for x in ("2026-02-01", "Feb 1, 2026", "20260201", "02/01/2026", "01.02.2026",
                                   "2026-02-01T00:00:00")} == {date(2026, 2, 1)}
    assert parse_day("2026-02-30") is None and parse_day("") is None


def test_upsert_counts_inserted_updated_unchanged(db: Database) -> None:
    rows = pd.DataFrame({"external_id": ["a", "b", "c"], "our_id": ["x", "y", "z"]})
    with db.transaction() as s:
        first = upsert(s, ExternalId.__table__, rows, key=("source", "kind", "external_id"), compare=("our_id",),
                       const={"source": "t", "kind": "item"})
    assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)
    rows2 = pd.DataFrame({"external_id": ["a", "b", "d"], "our_id": ["x", "CHANGED", "w"]})
    with db.transaction() as s:
        second = upsert(s, ExternalId.__table__, rows2, key=("source", "kind", "external_id"), compare=("our_id",),
                        const={"source": "t", "kind": "item"})
    assert (second.inserted, second.updated, second.unchanged) == (1, 1, 1)
    with db.read() as s:
        assert dict(s.execute(select(ExternalId.external_id, ExternalId.our_id)).all()) == {
            "a": "x", "b": "CHANGED", "c": "z", "d": "w"}


def test_stats_repeat_counts_once_and_reingest_is_unchanged(scenario: Database) -> None:
    cfg = get_source_config("tracker", kind="hasoffers")
    ctx = IngestContext(source="tracker", now=NOW, tz=cfg.tz, currency="EUR")
    rows = [{"day": "2026-02-01", "external_item": "101", "affiliate": "5", "impressions": "10", "clicks": "1",
             "revenue": "0.10", "_loc": f"p1:{i}", "_raw": "{}"} for i in range(1, 3)]
    rows.append({"day": "2026-02-01", "external_item": "101", "affiliate": "6", "impressions": "5", "clicks": "0",
                 "revenue": "0.05", "_loc": "p1:3", "_raw": "{}"})
    frame = make_frame("stats", rows)
    with scenario.transaction() as s:
        res = ingest_stats(s, frame, ctx, item_label="offer")
    assert (res.counts.inserted, res.counts.duplicates) == (1, 1)
    with scenario.transaction() as s:
        again = ingest_stats(s, frame, ctx, item_label="offer")
    assert (again.counts.inserted, again.counts.updated, again.counts.unchanged) == (0, 0, 1)
    with scenario.read() as s:
        f = s.execute(select(DeliveryFact)).scalar_one()
    assert (f.impressions, f.clicks, f.revenue) == (15, 1, Decimal("0.15"))


def test_the_bulk_upsert_stores_each_value_as_the_orm_would(scenario: Database) -> None:
    """The bulk upsert binds values itself (SQLite: one executemany; PostgreSQL: COPY into a staging table);
    a row it stores reads back, as stored text and types, exactly like the same row added through the ORM."""
    from sqlalchemy import text

    cfg = get_source_config("tracker", kind="hasoffers")
    ctx = IngestContext(source="tracker", now=NOW, tz=cfg.tz, currency="EUR")
    frame = make_frame("stats", [{"day": "2026-02-03", "external_item": "101", "affiliate": "5", "impressions": "7",
                                  "clicks": "2", "revenue": "12.345", "_loc": "p1:1", "_raw": "{}"}])
    with scenario.transaction() as s:
        assert ingest_stats(s, frame, ctx, item_label="offer").counts.inserted == 1
        fact = s.execute(select(DeliveryFact)).scalar_one()
        s.add(DeliveryFact(item_id=fact.item_id, day=date(2026, 2, 3), source="orm", party="first_party",
                           impressions=7, clicks=2, conversions=0, revenue=Decimal("12.345"), currency="EUR",
                           updated_at=NOW, sync_run_id=None))
    cols = "item_id, day, party, impressions, clicks, conversions, revenue, currency, updated_at"
    with scenario.read() as s:
        kind = "typeof" if s.get_bind().dialect.name == "sqlite" else "pg_typeof"
        stored = {src: rest for src, *rest in s.execute(text(
            f"SELECT source, {cols}, " + ", ".join(f"CAST({kind}({c}) AS TEXT)" for c in cols.split(", ")) +
            " FROM delivery_facts ORDER BY source")).all()}
    assert stored["tracker"] == stored["orm"]
    assert str(stored["tracker"][1]) == "2026-02-03" and str(stored["tracker"][6]).rstrip("0") == "12.345"
