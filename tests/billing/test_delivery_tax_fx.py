"""Delivery amounts, VAT treatment and exchange rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.delivery import DayFigures, Delivered, delivery_line, sum_days
from billing.errors import Invalid
from billing.fx import Rate, convert, find_rate, parse_ecb_csv
from billing.tax import REVERSE_CHARGE_NOTE, VatProblem, VatTreatment, vat_amount, vat_treatment

D = Decimal


@pytest.mark.parametrize(("rate_type", "rate", "delivered", "quantity", "amount"), [
    ("cpm", "4.20", Delivered(impressions=123_456, fact_rows=3), "123.456", "518.52"),  # 518.5152 half-up
    ("cpc", "0.35", Delivered(clicks=1_001, fact_rows=3), "1001", "350.35"),
    ("cpl", "25.00", Delivered(approved_conversions=7, conversion_rows=9), "7", "175.00"),
    ("cpa", "12.50", Delivered(approved_conversions=0, conversion_rows=2), "0", "0.00"),
    ("flat", "300.00", Delivered(), "1", "300.00"),
])
def test_delivery_amounts(rate_type: str, rate: str, delivered: Delivered, quantity: str, amount: str) -> None:
    line = delivery_line(rate_type=rate_type, rate=D(rate), delivered=delivered, currency="EUR")
    assert (line.quantity, line.amount) == (D(quantity), D(amount))
    assert line.computation["has_data"] is True


def test_no_delivery_data_is_flagged_not_billed_as_zero_silently() -> None:
    line = delivery_line(rate_type="cpm", rate=D("4"), delivered=Delivered(), currency="EUR")
    assert line.amount == 0 and line.computation["has_data"] is False


def test_sum_days_only_counts_the_period() -> None:
    days = [DayFigures(date(2026, 2, d), impressions=1000 * d, clicks=d, fact_rows=1) for d in range(1, 11)]
    got = sum_days(days, date(2026, 2, 3), date(2026, 2, 4))
    assert (got.impressions, got.clicks, got.fact_rows) == (7000, 7, 2)


def test_unknown_rate_type() -> None:
    with pytest.raises(Invalid):
        delivery_line(rate_type="cpv", rate=D(1), delivered=Delivered(), currency="EUR")


def test_vat_domestic_reverse_charge_export_and_problems() -> None:
    assert vat_treatment(seller_country="DE", buyer_country="DE", buyer_vat_id=None) == VatTreatment(
        D(19), "S", None, "domestic")
    rc = vat_treatment(seller_country="DE", buyer_country="FR", buyer_vat_id="FR40303265045")
    assert isinstance(rc, VatTreatment) and (rc.rate, rc.category, rc.note) == (D(0), "AE", REVERSE_CHARGE_NOTE)
    ex = vat_treatment(seller_country="DE", buyer_country="CH", buyer_vat_id=None)
    assert isinstance(ex, VatTreatment) and (ex.rate, ex.category) == (D(0), "O")  # services: not subject to VAT
    goods = vat_treatment(seller_country="DE", buyer_country="CH", buyer_vat_id=None, supply="goods")
    assert isinstance(goods, VatTreatment) and (goods.category, goods.kind) == ("G", "export")
    assert ex.note == "Export of services: not subject to VAT in Germany"
    gb = vat_treatment(seller_country="DE", buyer_country="GB", buyer_vat_id="GB123")
    assert isinstance(gb, VatTreatment) and gb.kind == "export"
    assert isinstance(vat_treatment(seller_country="DE", buyer_country="FR", buyer_vat_id=None), VatProblem)
    bad = vat_treatment(seller_country="DE", buyer_country="FR", buyer_vat_id="FR00000000000")
    assert isinstance(bad, VatProblem) and "invalid VAT id" in bad.message
    wrong_country = vat_treatment(seller_country="DE", buyer_country="AT", buyer_vat_id="FR40303265045")
    assert isinstance(wrong_country, VatProblem)
    assert isinstance(vat_treatment(seller_country="US", buyer_country="US", buyer_vat_id=None), VatProblem)
    for c, r in {"FR": 20, "AT": 20, "NL": 21, "IT": 22, "ES": 21, "BE": 21, "PL": 23, "GB": 20}.items():
        t = vat_treatment(seller_country=c, buyer_country=c, buyer_vat_id=None)
        assert isinstance(t, VatTreatment) and t.rate == r


def test_vat_is_half_up_on_the_net() -> None:
    assert vat_amount(D("0.50"), D(19), "EUR") == D("0.10")  # 0.095 → 0.10
    assert vat_amount(D("-0.50"), D(19), "EUR") == D("-0.10")
    assert vat_amount(D("1000"), D("0"), "EUR") == D("0.00")


ECB_HIST = """Date,USD,JPY,BGN,CHF,PLN,
2026-02-27,1.0812,162.50,N/A,0.9412,4.2810,
2026-02-26,1.0790,161.90,N/A,0.9400,4.2755,
"""

ECB_DAILY = """Date, USD, JPY, CHF,
27 February 2026, 1.0812, 162.50, 0.9412,
"""


def test_parse_ecb_files() -> None:
    rates = parse_ecb_csv(ECB_HIST)
    assert len(rates) == 8 and all(r.base == "EUR" and r.source == "ECB" for r in rates)
    assert Rate(date(2026, 2, 27), "EUR", "USD", D("1.0812")) in rates
    daily = parse_ecb_csv(ECB_DAILY)
    assert {r.quote for r in daily} == {"USD", "JPY", "CHF"} and daily[0].day == date(2026, 2, 27)


def test_parse_ecb_reports_every_bad_cell() -> None:
    with pytest.raises(Invalid) as e:
        parse_ecb_csv("Date,USD,QQQ\n2026-02-27,abc,1\nnot a date,1,1\n2026-02-26,-1,1\n")
    msgs = e.value.problems
    assert any("QQQ" in m for m in msgs) and any("line 2" in m for m in msgs)
    assert any("line 3" in m for m in msgs) and any("line 4" in m for m in msgs)
    with pytest.raises(Invalid):
        parse_ecb_csv("Day,USD\n")


def test_find_rate_direct_inverse_cross_and_stale() -> None:
    rates = parse_ecb_csv(ECB_HIST)
    usd = find_rate(rates, "EUR", "USD", on=date(2026, 3, 1))
    assert usd is not None and (usd.rate, usd.day, usd.source) == (D("1.0812000000"), date(2026, 2, 27), "ECB")
    inv = find_rate(rates, "CHF", "EUR", on=date(2026, 2, 26))
    assert inv is not None and inv.day == date(2026, 2, 26) and inv.rate == (1 / D("0.9400")).quantize(D("1E-10"))
    cross = find_rate(rates, "PLN", "CHF", on=date(2026, 2, 28))
    assert cross is not None and cross.rate == (D("0.9412") / D("4.2810")).quantize(D("1E-10"))
    assert find_rate(rates, "USD", "EUR", on=date(2026, 3, 20)) is None  # older than a week: never a guess
    assert find_rate(rates, "USD", "EUR", on=date(2026, 2, 1)) is None
    assert find_rate(rates, "GBP", "EUR", on=date(2026, 2, 27)) is None
    assert convert(D("100.00"), usd) == D("108.12")
