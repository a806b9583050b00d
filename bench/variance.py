"""Benchmark: variance checks over 1,000,000 delivery rows.

4,000 CPM items × 125 days × (first party, third party) = 1,000,000 rows; the March pre-invoice of
every item is checked (delivered vs booked, first vs third party, March vs February). About 5 % of
the items carry an injected problem (tracking gap, under-delivery, party discrepancy), so the
evidence path is timed too. Prints progress, then as the last line
``{"rows": 1000000, "seconds": …, …}`` (seconds: the slowest of three runs).

    .venv/bin/python bench/variance.py
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from billing.variance import ItemPeriod, check_variances  # noqa: E402

ITEMS = 4_000
DAYS = 125
START = date(2026, 1, 1)


def make_data(seed: int = 7) -> tuple[list[ItemPeriod], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    item_ids = np.array([f"item-{i:05d}" for i in range(ITEMS)])
    daily = rng.integers(5_000, 20_000, ITEMS)
    n = ITEMS * DAYS
    item_idx = np.repeat(np.arange(ITEMS), DAYS)
    day_off = np.tile(np.arange(DAYS), ITEMS)
    noise = rng.normal(1.0, 0.01, n)
    first = np.maximum(0, (daily[item_idx] * noise)).astype(np.int64)
    third = (first * rng.normal(0.98, 0.005, n)).astype(np.int64)
    march = (day_off >= 59) & (day_off <= 89)
    broken = item_idx % 20 == 3  # tracking gap: first-party March 10-14 zeroed (rows dropped below)
    third = np.where((item_idx % 20 == 7) & march, (third * 0.8).astype(np.int64), third)  # party discrepancy
    first = np.where((item_idx % 20 == 11) & march, (first * 0.7).astype(np.int64), first)  # under-delivery
    days = (np.datetime64(START.isoformat()) + day_off.astype("timedelta64[D]"))
    df_first = pd.DataFrame({"item_id": item_ids[item_idx], "day": days, "party": "first_party",
                             "impressions": first, "clicks": first // 500, "conversions": 0})
    gap = broken & (day_off >= 68) & (day_off <= 72)
    df_first = df_first[~gap]
    df_third = pd.DataFrame({"item_id": item_ids[item_idx], "day": days, "party": "third_party",
                             "impressions": third, "clicks": third // 500, "conversions": 0})
    facts = pd.concat([df_first, df_third], ignore_index=True)
    extra = 1_000_000 - len(facts)  # top up to exactly one million rows (later days, same items)
    if extra > 0:
        more_idx = np.arange(extra) % ITEMS
        more_days = np.datetime64((START + timedelta(days=DAYS)).isoformat()) + (
            np.arange(extra) // ITEMS).astype("timedelta64[D]")
        facts = pd.concat([facts, pd.DataFrame({
            "item_id": item_ids[more_idx], "day": more_days, "party": "first_party",
            "impressions": daily[more_idx], "clicks": 0, "conversions": 0})], ignore_index=True)
    facts["party"] = facts["party"].astype("category")
    facts["item_id"] = facts["item_id"].astype("category")
    facts.insert(0, "id", np.arange(1, len(facts) + 1))
    items = [
        ItemPeriod(
            preinvoice_id=i + 1, item_id=str(item_ids[i]), billing="delivery", unit="quantity", rate_type="cpm",
            item_start=START, item_end=START + timedelta(days=DAYS - 1),
            period_start=date(2026, 3, 1), period_end=date(2026, 3, 31),
            prior_start=date(2026, 2, 1), prior_end=date(2026, 2, 28),
            tolerance=Decimal("0.10"), tolerance_source="default", currency="EUR",
            amount=Decimal(int(daily[i]) * 31) * Decimal("0.0042"), unit_price=Decimal("0.0042"),
            booked_quantity=Decimal(int(daily[i]) * DAYS), description=f"Display {i}",
        )
        for i in range(ITEMS)
    ]
    return items, facts


def main() -> None:
    t0 = time.perf_counter()
    items, facts = make_data()
    print(f"generated {len(facts):,} delivery rows for {len(items):,} items in {time.perf_counter() - t0:.2f} s",
          flush=True)
    check_variances(items[:10], facts.head(1000))  # warm-up (imports, first-call overheads)
    times = []
    found = 0
    for attempt in range(3):
        t = time.perf_counter()
        found = len(check_variances(items, facts))
        times.append(time.perf_counter() - t)
        print(f"run {attempt + 1}: {times[-1]:.3f} s, {found} variances", flush=True)
    # the figure is the slowest of the three runs, not the best one
    print(json.dumps({"rows": len(facts), "seconds": round(max(times), 3), "best_seconds": round(min(times), 3),
                      "variances": found}))


if __name__ == "__main__":
    main()
