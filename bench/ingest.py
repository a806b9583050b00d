"""Ingest throughput on PostgreSQL: our ingest vs a naive ORM loop vs raw COPY (the floor).

    python bench/ingest.py [--rows 1000000] [--naive-rows 20000]

Generates ``--rows`` daily stat rows (2,000 line items × 500 days, text values as a report connector
yields them), then in one run, each on an empty ``delivery_facts`` table of a fresh database:

- **ours**: ``storage.ingest.ingest_stats`` — pandas normalisation (dates, counts, exact money, currency,
  crosswalk mapping, dedupe) + ``COPY`` into a staging table + one ``INSERT … SELECT … ON CONFLICT``;
  also a re-run of the same rows (all ``unchanged``);
- **naive**: an ORM loop over a ``--naive-rows`` slice — look the row up, add it, flush — scaled to rows/s;
- **COPY**: raw ``COPY delivery_facts FROM STDIN`` of the same, already final rows (the floor).

The database comes from ``BILLBOT_BENCH_PG_URL`` (default: the local test server); the benchmark creates
and drops its own database. Last line: ``{"rows_per_s", "naive_rows_per_s", "copy_rows_per_s",
"ratio_to_copy"}`` with ``ratio_to_copy`` = COPY's rate / ours (target ≤ 3).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.db import Database, dispose_all  # noqa: E402
from storage.ingest import IngestContext, ingest_stats  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Advertiser, Campaign, CampaignItem, DeliveryFact, ExternalId, LegalEntity  # noqa: E402
from storage.sources.base import make_frame  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://billbot:billbot@127.0.0.1:5432/billbot"
ITEMS = 2000
SOURCE = "bench-gam"


def admin(url: str, sql: str) -> None:
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(sql))
    eng.dispose()


def generate(n: int) -> pd.DataFrame:
    days = -(-n // ITEMS)
    rng = np.random.default_rng(42)
    item = np.tile(np.arange(ITEMS), days)[:n]
    day_idx = np.repeat(np.arange(days), ITEMS)[:n]
    start = date(2024, 1, 1)
    day_txt = np.array([(start + timedelta(days=int(i))).isoformat() for i in range(days)], dtype=object)[day_idx]
    imps = rng.integers(0, 200_000, n)
    clicks = rng.integers(0, 500, n)
    cents = rng.integers(0, 100_000, n)
    revenue = pd.Series(cents // 100).astype(str) + "." + pd.Series(cents % 100).astype(str).str.zfill(2)
    ext = pd.Series(item).map(lambda i: f"LI{i:06d}")
    frame = pd.DataFrame({
        "day": day_txt, "external_item": ext.to_numpy(), "affiliate": None, "impressions": imps.astype(str),
        "clicks": clicks.astype(str), "conversions": None, "revenue": revenue.to_numpy(), "currency": "EUR",
        "_loc": None, "_raw": None,
    })
    frame["_loc"] = "bench.csv:" + pd.Series(np.arange(2, n + 2)).astype(str)
    frame["_raw"] = ""
    return frame[list(make_frame("stats", []).columns)]


def setup(db: Database) -> None:
    with db.transaction() as s:
        s.add(LegalEntity(id="le", name="Bench Media GmbH", country="DE", currency="EUR"))
        s.add(Advertiser(id="adv", name="Bench Advertiser", legal_entity_id="le", currency="EUR", country="DE"))
        s.add(Campaign(id="cmp", advertiser_id="adv", name="Bench", start=date(2024, 1, 1), end=date(2026, 12, 31)))
        s.flush()
        s.execute(insert(CampaignItem), [{"id": f"item-{i:06d}", "campaign_id": "cmp", "position": i,
                                          "description": f"Line {i}", "billing": "delivery", "rate_type": "cpm"}
                                         for i in range(ITEMS)])
        s.execute(insert(ExternalId), [{"source": SOURCE, "kind": "item", "external_id": f"LI{i:06d}",
                                        "our_id": f"item-{i:06d}"} for i in range(ITEMS)])


def truncate(db: Database) -> None:
    with db.engine.begin() as c:
        c.execute(text("TRUNCATE delivery_facts RESTART IDENTITY"))


def run_ours(db: Database, frame: pd.DataFrame) -> tuple[float, dict[str, int]]:
    ctx = IngestContext(source=SOURCE, now=datetime.now(UTC), currency="EUR", sync_run_id=1)
    t0 = time.perf_counter()
    with db.transaction() as s:
        res = ingest_stats(s, frame, ctx)
    return time.perf_counter() - t0, res.counts.as_dict()


def final_rows(frame: pd.DataFrame) -> bytes:
    """The same rows as they land in delivery_facts, as COPY text (prepared outside the timing)."""
    out = pd.DataFrame({
        "item_id": "item-" + frame["external_item"].str[2:], "day": frame["day"], "source": SOURCE,
        "party": "first_party", "impressions": frame["impressions"], "clicks": frame["clicks"], "conversions": "0",
        "revenue": frame["revenue"], "currency": "EUR", "sync_run_id": "1",
        "updated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" "),
    })
    buf = io.StringIO()
    out.to_csv(buf, header=False, index=False)
    return buf.getvalue().encode()


def run_copy(db: Database, payload: bytes) -> float:
    cols = "item_id, day, source, party, impressions, clicks, conversions, revenue, currency, sync_run_id, updated_at"
    t0 = time.perf_counter()
    with db.engine.begin() as c:
        raw = c.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY delivery_facts ({cols}) FROM STDIN (FORMAT csv)") as cp:
            view = memoryview(payload)
            for i in range(0, len(view), 1 << 20):
                cp.write(view[i:i + (1 << 20)])
    return time.perf_counter() - t0


def run_naive(db: Database, frame: pd.DataFrame) -> float:
    from decimal import Decimal

    now = datetime.now(UTC)
    t0 = time.perf_counter()
    with db.transaction() as s:
        for rec in frame.to_dict("records"):
            item = s.execute(select(ExternalId.our_id).where(ExternalId.source == SOURCE, ExternalId.kind == "item",
                                                             ExternalId.external_id == rec["external_item"])).scalar()
            day = date.fromisoformat(rec["day"])
            fact = s.execute(select(DeliveryFact).where(DeliveryFact.item_id == item, DeliveryFact.day == day,
                                                        DeliveryFact.source == SOURCE,
                                                        DeliveryFact.party == "first_party")).scalar()
            if fact is None:
                fact = DeliveryFact(item_id=item, day=day, source=SOURCE, party="first_party")
                s.add(fact)
            fact.impressions = int(rec["impressions"])
            fact.clicks = int(rec["clicks"])
            fact.conversions = 0
            fact.revenue = Decimal(rec["revenue"])
            fact.currency = "EUR"
            fact.updated_at = now
            s.flush()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--naive-rows", type=int, default=20_000)
    args = ap.parse_args()
    base = os.environ.get("BILLBOT_BENCH_PG_URL", DEFAULT_PG)
    name = f"billbot_bench_ingest_{os.getpid()}"
    admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(base, f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        db = Database(url)
        upgrade(db)
        setup(db)
        t0 = time.perf_counter()
        frame = generate(args.rows)
        print(f"generated {len(frame):,} stat rows in {time.perf_counter() - t0:.1f}s", flush=True)

        secs, counts = run_ours(db, frame)
        ours = len(frame) / secs
        print(f"ours (normalise + COPY staging + INSERT…ON CONFLICT): {secs:.2f}s, {ours:,.0f} rows/s {counts}",
              flush=True)
        secs2, counts2 = run_ours(db, frame)
        print(f"ours, re-run of the same rows: {secs2:.2f}s, {len(frame) / secs2:,.0f} rows/s "
              f"(inserted {counts2['inserted']}, updated {counts2['updated']}, unchanged {counts2['unchanged']})",
              flush=True)

        payload = final_rows(frame)
        truncate(db)
        secs = run_copy(db, payload)
        copy_rate = len(frame) / secs
        print(f"raw COPY into delivery_facts: {secs:.2f}s, {copy_rate:,.0f} rows/s", flush=True)

        truncate(db)
        naive_slice = frame.iloc[: args.naive_rows]
        secs = run_naive(db, naive_slice)
        naive = len(naive_slice) / secs
        print(f"naive ORM row by row ({len(naive_slice):,} rows): {secs:.2f}s, {naive:,.0f} rows/s "
              f"(≈{len(frame) / naive / 60:.1f} min for {len(frame):,})", flush=True)
        figures = {"rows_per_s": round(ours), "naive_rows_per_s": round(naive), "copy_rows_per_s": round(copy_rate),
                   "ratio_to_copy": round(copy_rate / ours, 2), "rerun_rows_per_s": round(len(frame) / secs2),
                   "rows": len(frame)}
    finally:
        dispose_all()
        admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
