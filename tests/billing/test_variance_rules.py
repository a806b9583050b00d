"""The pure variance rules (billing/variance.py): each rule and each cause, with its evidence."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.variance import (
    RULE_DELIVERY,
    RULE_PARTY,
    RULE_PRIOR,
    ItemPeriod,
    check_variances,
    findings_by_preinvoice,
    prior_period,
    resolve_tolerance,
)

FEB = (date(2026, 2, 1), date(2026, 2, 28))
JAN = (date(2026, 1, 1), date(2026, 1, 31))


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def ip(**kw: object) -> ItemPeriod:
    """A CPM item running Jan 1 – Mar 31 (90 days) booked for 900,000 impressions: 280,000 in February."""
    base = ItemPeriod(
        preinvoice_id=1, item_id="display", billing="delivery", unit="quantity", rate_type="cpm",
        item_start=date(2026, 1, 1), item_end=date(2026, 3, 31), period_start=FEB[0], period_end=FEB[1],
        prior_start=JAN[0], prior_end=JAN[1], tolerance=Decimal("0.10"), tolerance_source="default",
        currency="EUR", unit_price=Decimal("0.004"), booked_quantity=Decimal(900000), description="Display",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class Facts:
    """Builds the facts frame row by row; ids are 1, 2, 3, … in insertion order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def add(self, item: str, start: date, end: date, per_day: int, *, party: str = "first_party",
            metric: str = "impressions", skip: tuple[date, ...] = (), table: str = "delivery_facts") -> list[int]:
        ids = []
        for d in days(start, end):
            if d in skip:
                continue
            row = {"id": len(self.rows) + 1, "item_id": item, "day": d, "party": party, "impressions": 0,
                   "clicks": 0, "conversions": 0, "table": table}
            row[metric] = per_day
            self.rows.append(row)
            ids.append(row["id"])
        return ids

    def frame(self) -> pd.DataFrame:
        cols = ["id", "item_id", "day", "party", "impressions", "clicks", "conversions", "table"]
        return pd.DataFrame(self.rows, columns=cols)


def only(vs, rule):  # type: ignore[no-untyped-def]
    found = [v for v in vs if v.rule == rule]
    assert len(found) == 1, vs
    return found[0]


# --------------------------------------------------------------------------- delivered vs booked


def test_delivery_within_tolerance_is_no_variance() -> None:
    f = Facts()
    f.add("display", *FEB, 9300)  # 260,400 of 280,000: -7 %
    assert check_variances([ip()], f.frame()) == []


def test_under_delivery_with_every_day_present() -> None:
    f = Facts()
    ids = f.add("display", *FEB, 8000)
    v = only(check_variances([ip()], f.frame()), RULE_DELIVERY)
    assert v.cause == "under_delivery"
    assert v.figures["delivered"] == "224000"
    assert v.figures["expected"] == "280000"
    assert v.figures["booked_quantity"] == "900000"
    assert v.figures["difference"] == "-56000"
    assert v.figures["difference_pct"] == "-20.00"
    assert v.figures["running_days"] == "28" and v.figures["item_days"] == "90"
    assert v.figures["missing_days"] == "0"
    assert v.days == tuple(days(*FEB))
    assert v.row_ids == tuple(ids)
    assert v.tolerance == Decimal("0.10") and v.tolerance_source == "default"
    assert v.amount_at_stake == Decimal("224.00")  # 56,000 impressions × 4.00 / 1,000
    ev = v.evidence()
    assert ev["rule"] == "delivered_vs_booked" and ev["tolerance"] == "0.1" and ev["cause"] == "under_delivery"
    assert ev["days"][0] == "2026-02-01" and ev["row_ids"] == ids


def test_exactly_at_tolerance_is_not_beyond_it() -> None:
    f = Facts()
    f.add("display", *FEB, 9000)  # 252,000 = exactly -10 %
    assert check_variances([ip()], f.frame()) == []
    f.rows[0]["impressions"] = 8999  # one impression short of the tolerance
    v = only(check_variances([ip()], f.frame()), RULE_DELIVERY)
    assert v.figures["delivered"] == "251999"


def test_tracking_gap_names_the_missing_days() -> None:
    gap = (date(2026, 2, 10), date(2026, 2, 11), date(2026, 2, 12), date(2026, 2, 20), date(2026, 2, 21))
    f = Facts()
    ids = f.add("display", *FEB, 10000, skip=gap)
    v = only(check_variances([ip()], f.frame()), RULE_DELIVERY)
    assert v.cause == "tracking_gap"
    assert v.days == gap
    assert v.figures["missing_days"] == "5" and v.figures["days_with_data"] == "23"
    assert v.figures["delivered"] == "230000"
    assert v.row_ids == tuple(ids)
    assert "no first-party data on 5 day(s)" in v.summary


def test_over_delivery() -> None:
    f = Facts()
    f.add("display", *FEB, 12000)
    v = only(check_variances([ip()], f.frame()), RULE_DELIVERY)
    assert v.cause == "over_delivery"
    assert v.figures["difference_pct"] == "20.00"


def test_make_good_item_is_classified_as_make_good() -> None:
    f = Facts()
    f.add("display", *FEB, 15000)
    v = only(check_variances([ip(make_good=True)], f.frame()), RULE_DELIVERY)
    assert v.cause == "make_good"


def test_no_first_party_data_at_all_is_a_tracking_gap_of_every_running_day() -> None:
    v = only(check_variances([ip(item_start=date(2026, 2, 15))], Facts().frame()), RULE_DELIVERY)
    assert v.cause == "tracking_gap"
    assert v.days == tuple(days(date(2026, 2, 15), FEB[1]))  # only the days the item ran
    assert v.figures["expected"] == "280000"  # 900,000 × 14 / 45 running days (Feb 15 – Mar 31)


def test_linear_quantity_item_compares_with_the_distributed_quantity() -> None:
    f = Facts()
    f.add("display", *FEB, 1000, metric="clicks")
    it = ip(billing="linear", rate_type="cpc", booked_quantity=Decimal(90000), expected_quantity=Decimal(35000))
    v = only(check_variances([it], f.frame()), RULE_DELIVERY)
    assert v.figures["expected"] == "35000" and v.figures["delivered"] == "28000"
    assert v.figures["metric"] == "clicks"


def test_linear_amount_item_has_no_delivery_rule() -> None:
    it = ip(billing="linear", unit="amount", rate_type=None, booked_quantity=None, amount=Decimal("3000"))
    assert check_variances([it], Facts().frame()) == []


def test_conversions_are_not_counted_twice() -> None:
    """Approved Conversion rows replace the first-party delivery rows' conversion counts."""
    f = Facts()
    f.add("leads", date(2026, 2, 3), date(2026, 2, 3), 3, metric="conversions")
    cv = f.add("leads", date(2026, 2, 3), date(2026, 2, 3), 1, metric="conversions", table="conversions")
    cv += f.add("leads", date(2026, 2, 4), date(2026, 2, 4), 1, metric="conversions", table="conversions")
    cv += f.add("leads", date(2026, 2, 5), date(2026, 2, 5), 1, metric="conversions", table="conversions")
    it = ip(item_id="leads", rate_type="cpl", unit_price=Decimal("25"), booked_quantity=Decimal(90))
    v = only(check_variances([it], f.frame()), RULE_DELIVERY)
    assert v.figures["delivered"] == "3"  # not 3 + 3
    assert v.figures["expected"] == "28"
    assert v.conversion_ids == tuple(cv)
    assert v.amount_at_stake == Decimal("625.00")


# --------------------------------------------------------------------------- first vs third party


def test_party_discrepancy_uses_first_party_as_base() -> None:
    f = Facts()
    first = f.add("display", *FEB, 10000)
    third = f.add("display", *FEB, 8900, party="third_party")
    v = only(check_variances([ip()], f.frame()), RULE_PARTY)
    assert v.cause == "party_discrepancy"
    assert v.figures["first_party"] == "280000" and v.figures["third_party"] == "249200"
    assert v.figures["difference_pct"] == "11.00"
    assert v.days == tuple(days(*FEB))
    assert v.row_ids == tuple(sorted(first + third))
    assert v.amount_at_stake == Decimal("123.20")


def test_party_within_ten_percent_of_first_party_is_fine() -> None:
    f = Facts()
    f.add("display", *FEB, 10000)
    f.add("display", *FEB, 9000, party="third_party")  # exactly 10 % of the first-party figure
    assert check_variances([ip()], f.frame()) == []


def test_party_gap_on_days_the_third_party_counted_is_a_tracking_gap() -> None:
    gap = (date(2026, 2, 5), date(2026, 2, 6), date(2026, 2, 7))
    f = Facts()
    f.add("display", *FEB, 10000, skip=gap)
    f.add("display", *FEB, 10000, party="third_party")
    v = only(check_variances([ip(booked_quantity=None)], f.frame()), RULE_PARTY)
    assert v.cause == "tracking_gap"
    assert v.days == gap
    assert v.figures["days_with_first_party"] == "25" and v.figures["days_with_third_party"] == "28"


def test_party_rule_applies_to_linear_items_too() -> None:
    f = Facts()
    f.add("search", *FEB, 500, metric="impressions")
    f.add("search", *FEB, 300, party="third_party")
    it = ip(item_id="search", billing="linear", unit="amount", rate_type=None, booked_quantity=None,
            unit_price=None)
    v = only(check_variances([it], f.frame()), RULE_PARTY)
    assert v.cause == "party_discrepancy" and v.amount_at_stake == Decimal("0.00")


# --------------------------------------------------------------------------- period over period


def test_prior_period_drop_is_under_delivery() -> None:
    f = Facts()
    prior_ids = f.add("display", *JAN, 10000)
    cur_ids = f.add("display", *FEB, 7000)
    vs = check_variances([ip(booked_quantity=None)], f.frame())
    v = only(vs, RULE_PRIOR)
    assert v.cause == "under_delivery"
    assert v.figures["current_per_day"] == "7000" and v.figures["prior_per_day"] == "10000"
    assert v.figures["change_pct"] == "-30.00"
    assert v.figures["current_days"] == "28" and v.figures["prior_days"] == "31"
    assert v.figures["prior_period_start"] == "2026-01-01"
    assert v.row_ids == tuple(cur_ids + prior_ids)
    assert v.amount_at_stake == Decimal("336.00")  # 3,000/day × 28 days × 0.004


def test_prior_period_is_compared_per_running_day() -> None:
    """An item starting on Jan 20 delivered 12 days in January; the same daily rate in February is fine."""
    f = Facts()
    f.add("display", date(2026, 1, 20), JAN[1], 10000)
    f.add("display", *FEB, 10000)
    assert check_variances([ip(item_start=date(2026, 1, 20), booked_quantity=None)], f.frame()) == []


def test_prior_period_rise_and_gap_and_make_good() -> None:
    f = Facts()
    f.add("display", *JAN, 10000)
    f.add("display", *FEB, 13000)
    assert only(check_variances([ip(booked_quantity=None)], f.frame()), RULE_PRIOR).cause == "over_delivery"
    assert only(check_variances([ip(booked_quantity=None, make_good=True)], f.frame()), RULE_PRIOR).cause == "make_good"
    g = Facts()
    g.add("display", *JAN, 10000)
    gap = tuple(days(date(2026, 2, 1), date(2026, 2, 7)))
    g.add("display", *FEB, 10000, skip=gap)
    v = only(check_variances([ip(booked_quantity=None)], g.frame()), RULE_PRIOR)
    assert v.cause == "tracking_gap" and v.days == gap


def test_no_prior_data_means_no_prior_comparison() -> None:
    f = Facts()
    f.add("display", *FEB, 10000)
    assert check_variances([ip()], f.frame()) == []


def test_fx_swing_when_quantity_is_steady_and_the_rate_moved() -> None:
    f = Facts()
    f.add("display", *JAN, 10000)
    f.add("display", *FEB, 10000)
    it = ip(currency="USD", le_currency="EUR", amount=Decimal("1120.00"), rate_prior=Decimal("0.95"),
            rate_current=Decimal("0.80"))
    v = only(check_variances([it], f.frame()), RULE_PRIOR)
    assert v.cause == "fx_swing"
    assert v.figures["rate_prior"] == "0.95" and v.figures["rate_current"] == "0.8"
    assert v.figures["amount"] == "1120.00" and v.figures["prior_amount"] == "1120.00"
    assert v.figures["le_amount"] == "896.00"
    assert v.figures["le_amount_at_prior_rate"] == "1064.00"
    assert v.figures["amount_change_pct"] == "0.00"
    assert v.figures["le_change_pct"] == "-15.79"
    assert v.days == (FEB[1], JAN[1])
    assert v.amount_at_stake == Decimal("210.00")  # 1,120 × 0.15 / 0.80


def test_small_rate_move_is_no_fx_swing_and_moved_amounts_are_not_fx() -> None:
    f = Facts()
    f.add("display", *JAN, 10000)
    f.add("display", *FEB, 10000)
    small = ip(currency="USD", le_currency="EUR", amount=Decimal("1120.00"), rate_prior=Decimal("0.95"),
               rate_current=Decimal("0.90"))
    assert check_variances([small], f.frame()) == []
    g = Facts()
    g.add("display", *JAN, 10000)
    g.add("display", *FEB, 6000)
    moved = ip(currency="USD", le_currency="EUR", amount=Decimal("672.00"), rate_prior=Decimal("0.95"),
               rate_current=Decimal("0.80"), booked_quantity=None)
    v = only(check_variances([moved], g.frame()), RULE_PRIOR)
    assert v.cause == "under_delivery"  # the amount itself moved: not explained by the rate


def test_fx_swing_on_a_linear_item_uses_the_contract_amount() -> None:
    it = ip(item_id="search", billing="linear", unit="amount", rate_type=None, booked_quantity=None,
            unit_price=None, currency="USD", le_currency="EUR", amount=Decimal("2800.00"),
            rate_prior=Decimal("0.90"), rate_current=Decimal("1.05"))
    v = only(check_variances([it], Facts().frame()), RULE_PRIOR)
    assert v.cause == "fx_swing"
    assert v.figures["le_change_pct"] == "16.67"


# --------------------------------------------------------------------------- tolerances, periods, grouping


@pytest.mark.parametrize(("levels", "expected"), [
    ({}, (Decimal("0.10"), "default")),
    ({"legal_entity": "0.2"}, (Decimal("0.2"), "legal_entity")),
    ({"legal_entity": "0.2", "advertiser": "0.3"}, (Decimal("0.3"), "advertiser")),
    ({"legal_entity": "0.2", "advertiser": "0.3", "campaign": "0.05"}, (Decimal("0.05"), "campaign")),
    ({"legal_entity": "0.2", "advertiser": "0.3", "campaign": "0.05", "item": "0"}, (Decimal("0"), "item")),
    ({"legal_entity": "0.2", "item": "0.4"}, (Decimal("0.4"), "item")),
])
def test_most_specific_tolerance_wins(levels: dict[str, str], expected: tuple[Decimal, str]) -> None:
    kw = {k: Decimal(levels[k]) if k in levels else None for k in ("item", "campaign", "advertiser", "legal_entity")}
    assert resolve_tolerance(**kw, default=Decimal("0.10")) == expected  # type: ignore[arg-type]


def test_tolerance_source_travels_into_the_evidence() -> None:
    f = Facts()
    f.add("display", *FEB, 8000)  # -20 %
    assert check_variances([ip(tolerance=Decimal("0.25"), tolerance_source="campaign")], f.frame()) == []
    v = only(check_variances([ip(tolerance=Decimal("0.15"), tolerance_source="advertiser")], f.frame()), RULE_DELIVERY)
    assert v.evidence()["tolerance"] == "0.15" and v.evidence()["tolerance_source"] == "advertiser"


def test_prior_periods() -> None:
    assert prior_period(date(2026, 3, 1), date(2026, 3, 20), "monthly") == (date(2026, 2, 1), date(2026, 2, 28))
    assert prior_period(date(2026, 1, 10), date(2026, 1, 31), "monthly") == (date(2025, 12, 1), date(2025, 12, 31))
    assert prior_period(date(2026, 4, 1), date(2026, 6, 30), "quarterly") == (date(2026, 1, 1), date(2026, 3, 31))
    assert prior_period(date(2026, 5, 14), date(2026, 6, 30), "quarterly") == (date(2026, 1, 1), date(2026, 3, 31))
    assert prior_period(date(2026, 2, 9), date(2026, 2, 15), "weekly") == (date(2026, 2, 2), date(2026, 2, 8))


def test_one_item_in_several_periods_checked_at_once() -> None:
    f = Facts()
    f.add("display", *JAN, 10000)
    f.add("display", *FEB, 6000)
    jan = ip(preinvoice_id=1, period_start=JAN[0], period_end=JAN[1], prior_start=date(2025, 12, 1),
             prior_end=date(2025, 12, 31))
    feb = ip(preinvoice_id=2)
    vs = check_variances([jan, feb], f.frame())
    assert [(v.preinvoice_id, v.rule) for v in vs] == [(2, RULE_DELIVERY), (2, RULE_PRIOR)]
    assert vs[0].figures["delivered"] == "168000"


def test_findings_per_preinvoice_with_booked_and_computed_amounts() -> None:
    f = Facts()
    f.add("display", *FEB, 8000)
    f.add("display", *FEB, 6000, party="third_party")
    items = [ip(amount=Decimal("896.00")),
             ip(item_id="search", billing="linear", unit="amount", rate_type=None, booked_quantity=None,
                unit_price=None, amount=Decimal("2000.00"))]
    vs = check_variances(items, f.frame())
    found = findings_by_preinvoice(items, vs, {1: Decimal("2946.00")}, {1: "EUR"})[1]
    assert [v.rule for v in found.variances] == [RULE_DELIVERY, RULE_PARTY]
    assert found.computed_amount == Decimal("2946.00")
    assert found.booked_amount == Decimal("3170.00")  # 280,000 × 0.004 + 2,000 + 50 manual
    assert found.primary.rule == RULE_DELIVERY  # 224.00 at stake vs 224.00: rule order breaks the tie
    assert found.amount_at_stake == Decimal("224.00")  # the item's largest stake, not the sum of its findings
    ev = found.evidence()
    for k in ("rule", "tolerance", "tolerance_source", "figures", "days", "row_ids", "cause", "booked_amount",
              "computed_amount"):
        assert k in ev
    assert ev["booked_amount"] == "3170.00" and ev["computed_amount"] == "2946.00"
    assert [x["rule"] for x in ev["findings"]] == [RULE_DELIVERY, RULE_PARTY]
    assert found.subject_hash() == findings_by_preinvoice(items, vs, {1: Decimal("2946.00")}, {1: "EUR"})[1].subject_hash()
    f.rows[0]["impressions"] = 1
    other = findings_by_preinvoice(items, check_variances(items, f.frame()), {1: Decimal("2946.00")}, {1: "EUR"})[1]
    assert other.subject_hash() != found.subject_hash()


@settings(max_examples=60, deadline=None)
@given(per_day=st.lists(st.integers(0, 20000), min_size=28, max_size=28),
       tol=st.sampled_from(["0", "0.05", "0.1", "0.25"]), booked=st.integers(1, 2_000_000))
def test_vectorised_screen_agrees_with_exact_arithmetic(per_day: list[int], tol: str, booked: int) -> None:
    f = Facts()
    for d, n in zip(days(*FEB), per_day, strict=True):
        f.add("display", d, d, n)
    it = ip(booked_quantity=Decimal(booked), tolerance=Decimal(tol))
    delivered = Decimal(sum(per_day))
    expected = Decimal(booked) * 28 / 90
    fires = abs(delivered - expected) > Decimal(tol) * expected
    vs = [v for v in check_variances([it], f.frame()) if v.rule == RULE_DELIVERY]
    assert bool(vs) == fires
    if vs:
        assert vs[0].figures["delivered"] == str(sum(per_day))
