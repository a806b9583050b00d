"""Periods and distribution: the worked examples of DESIGN.md and issue 3, plus properties."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.distribution import distribute_amount, distribute_item, distribute_quantity
from billing.errors import Invalid
from billing.periods import Period, billing_periods, parse_period, week_start

D = Decimal


def test_parse_period_forms() -> None:
    assert parse_period("2026-02") == Period(date(2026, 2, 1), date(2026, 2, 28), "2026-02")
    assert parse_period("2024-02").end == date(2024, 2, 29)
    w = parse_period("2026-W07")
    assert (w.start, w.end, w.label) == (date(2026, 2, 9), date(2026, 2, 15), "2026-W07")
    assert parse_period("2026-q1") == Period(date(2026, 1, 1), date(2026, 3, 31), "2026-Q1")
    assert parse_period("2026") == Period(date(2026, 1, 1), date(2026, 12, 31), "2026")
    r = parse_period("2026-02-01..2026-02-10")
    assert (r.start, r.end, r.days) == (date(2026, 2, 1), date(2026, 2, 10), 10)


@pytest.mark.parametrize("bad", ["", "2026-13", "2026-W60", "Feb 2026", "2026-02-10..2026-02-01", "2026-Q5"])
def test_parse_period_refuses_with_a_message(bad: str) -> None:
    with pytest.raises(Invalid) as e:
        parse_period(bad)
    assert "period" in str(e.value)


def test_weeks_start_on_the_legal_entitys_day() -> None:
    assert week_start(date(2019, 12, 9), 6) == date(2019, 12, 8)  # Sunday weeks
    assert week_start(date(2019, 12, 9), 0) == date(2019, 12, 9)  # a Monday
    ps = billing_periods(date(2019, 12, 1), date(2019, 12, 9), "weekly", start_of_week=0)
    assert [(p.start, p.end) for p in ps] == [(date(2019, 12, 1), date(2019, 12, 1)),
                                              (date(2019, 12, 2), date(2019, 12, 8)),
                                              (date(2019, 12, 9), date(2019, 12, 9))]


def test_worked_example_9000_sunday_weeks_day_based() -> None:
    """DESIGN.md: week starts Sunday, 9,000.00 EUR, 2019-12-01..09, day-based → 7,000.00 + 2,000.00."""
    ps = billing_periods(date(2019, 12, 1), date(2019, 12, 9), "weekly", start_of_week=6)
    shares = distribute_item(unit="amount", basis="day_based", start=date(2019, 12, 1), end=date(2019, 12, 9),
                             periods=ps, currency="EUR", amount=D("9000.00"))
    assert [(s.period.start, s.period.end, s.amount) for s in shares] == [
        (date(2019, 12, 1), date(2019, 12, 7), D("7000.00")),
        (date(2019, 12, 8), date(2019, 12, 9), D("2000.00")),
    ]


def test_monthly_even_vs_day_based_for_partial_months() -> None:
    """7,000.00 from Jan 10 to Mar 20: day-based follows the days (22/28/20 of 70), even splits in thirds."""
    start, end = date(2026, 1, 10), date(2026, 3, 20)
    ps = billing_periods(start, end, "monthly")
    assert [(p.start, p.end, p.label) for p in ps] == [
        (date(2026, 1, 10), date(2026, 1, 31), "2026-01"), (date(2026, 2, 1), date(2026, 2, 28), "2026-02"),
        (date(2026, 3, 1), date(2026, 3, 20), "2026-03")]
    day_based = distribute_amount(D("7000.00"), ps, start, end, "day_based", currency="EUR")
    even = distribute_amount(D("7000.00"), ps, start, end, "even", currency="EUR")
    assert day_based == [D("2200.00"), D("2800.00"), D("2000.00")]
    assert even == [D("2333.33"), D("2333.33"), D("2333.34")]  # cut to cents, remainder to the last


def test_quantity_7_8_million_impressions_over_12_months() -> None:
    ps = billing_periods(date(2026, 1, 1), date(2026, 12, 31), "monthly")
    shares = distribute_item(unit="quantity", basis="even", start=date(2026, 1, 1), end=date(2026, 12, 31),
                             periods=ps, currency="EUR", booked_quantity=D(7_800_000), rate=D("5.00"),
                             rate_type="cpm")
    assert [s.quantity for s in shares] == [D(650_000)] * 12
    assert [s.amount for s in shares] == [D("3250.00")] * 12  # 650,000 / 1,000 × 5.00


def test_quantity_remainder_goes_to_the_last_period() -> None:
    ps = billing_periods(date(2026, 1, 1), date(2026, 3, 31), "monthly")
    qs = distribute_quantity(D(100), ps, date(2026, 1, 1), date(2026, 3, 31), "even")
    assert qs == [D(33), D(33), D(34)]


def test_quarterly_and_total_intervals() -> None:
    ps = billing_periods(date(2026, 2, 15), date(2026, 7, 10), "quarterly")
    assert [(p.label, p.start, p.end) for p in ps] == [("2026-Q1", date(2026, 2, 15), date(2026, 3, 31)),
                                                      ("2026-Q2", date(2026, 4, 1), date(2026, 6, 30)),
                                                      ("2026-Q3", date(2026, 7, 1), date(2026, 7, 10))]
    assert billing_periods(date(2026, 2, 15), date(2026, 7, 10), "total") == [Period(date(2026, 2, 15),
                                                                                     date(2026, 7, 10))]
    with pytest.raises(Invalid):
        billing_periods(date(2026, 1, 1), date(2026, 2, 1), "fortnightly")


amounts = st.decimals(min_value=D("-1000000"), max_value=D("10000000"), places=2, allow_nan=False,
                      allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(total=amounts, start_offset=st.integers(0, 400), days=st.integers(0, 500),
       interval=st.sampled_from(["weekly", "monthly", "quarterly", "total"]), sow=st.integers(0, 6),
       basis=st.sampled_from(["day_based", "even"]), item_trim=st.integers(0, 30))
def test_any_distribution_sums_exactly_and_never_flips_sign(
    total: Decimal, start_offset: int, days: int, interval: str, sow: int, basis: str, item_trim: int
) -> None:
    start = date(2025, 1, 1) + timedelta(days=start_offset)
    end = start + timedelta(days=days)
    item_start = min(start + timedelta(days=item_trim), end)
    ps = billing_periods(start, end, interval, sow)
    parts = distribute_amount(total, ps, item_start, end, basis, currency="EUR")
    assert sum(parts) == total
    assert all(p >= 0 for p in parts) if total >= 0 else all(p <= 0 for p in parts)
    assert all(p == p.quantize(D("0.01")) for p in parts)
    # periods before the item starts get nothing
    assert all(p == 0 for p, per in zip(parts, ps, strict=True) if per.end < item_start)


@settings(max_examples=200, deadline=None)
@given(qty=st.integers(0, 50_000_000), months=st.integers(1, 36), basis=st.sampled_from(["day_based", "even"]))
def test_any_quantity_distribution_is_whole_units_summing_exactly(qty: int, months: int, basis: str) -> None:
    start = date(2026, 1, 1)
    end = date(2026 + (months - 1) // 12, (months - 1) % 12 + 1, 28)
    ps = billing_periods(start, end, "monthly")
    qs = distribute_quantity(D(qty), ps, start, end, basis)
    assert sum(qs) == qty
    assert all(q >= 0 and q == q.to_integral_value() for q in qs)
