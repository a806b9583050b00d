"""Pre-invoice lines, content hashes, checks, invoice totals and numbering."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.checks import CHECKS, CheckInput, run_checks
from billing.delivery import DayFigures
from billing.errors import Invalid
from billing.fx import LockedRate
from billing.invoice import InvoiceLineDraft, build_invoice, credit_lines
from billing.numbering import format_number
from billing.preinvoice import CampaignSpec, ItemSpec, LineDraft, content_hash, draft_campaign, merge_lines
from billing.tax import VatTreatment
from billing.threshold import below_threshold, created_line, skipped_line

D = Decimal


def _campaign(**kw: object) -> CampaignSpec:
    items = (
        ItemSpec(id="search", description="Search", position=0, amount=D("7000.00")),
        ItemSpec(id="display", description="Display", position=1, billing="delivery", rate_type="cpm", rate=D("4.20")),
        ItemSpec(id="leads", description="Test drives", position=2, billing="delivery", rate_type="cpl",
                 rate=D("25.00")),
    )
    base = dict(id="c1", name="Winter", advertiser_id="a1", currency="EUR", payment_interval="monthly",
                start=date(2026, 1, 10), end=date(2026, 3, 20), items=items)
    base.update(kw)
    return CampaignSpec(**base)  # type: ignore[arg-type]


def test_draft_campaign_builds_linear_and_delivery_lines_for_wanted_periods() -> None:
    delivery = {
        "display": [DayFigures(date(2026, 2, 1), impressions=18_000, fact_rows=1),
                    DayFigures(date(2026, 1, 31), impressions=99_000, fact_rows=1)],
        "leads": [DayFigures(date(2026, 2, 3), approved_conversions=3, conversion_rows=4)],
    }
    drafts = draft_campaign(_campaign(), lambda p: p.label == "2026-02", delivery)
    assert len(drafts) == 1
    lines = {x.item_id: x for x in drafts[0].lines}
    assert lines["search"].amount == D("2800.00")
    assert (lines["display"].quantity, lines["display"].amount) == (D(18), D("75.60"))
    assert (lines["leads"].quantity, lines["leads"].amount) == (D(3), D("75.00"))


def test_linear_item_shares_sum_to_the_item_over_all_periods() -> None:
    drafts = draft_campaign(_campaign(items=(ItemSpec(id="x", description="x", amount=D("100.00"), basis="even"),)),
                            lambda p: True, {})
    assert [d.lines[0].amount for d in drafts] == [D("33.33"), D("33.33"), D("33.34")]


def test_merge_keeps_manual_and_edited_lines_and_updates_the_rest() -> None:
    existing = [
        LineDraft("Search", D(1), "lump sum", D(10), D(10), item_id="search", id=1),
        LineDraft("Display (corrected)", D(1), "flat", D(50), D(50), item_id="display", edited=True, id=2),
        LineDraft("Gone item", D(1), "lump sum", D(5), D(5), item_id="gone", id=3),
        LineDraft("Loyalty discount", D(1), "unit", D(-20), D(-20), kind="discount", id=4),
    ]
    computed = [LineDraft("Search", D(1), "lump sum", D(12), D(12), item_id="search"),
                LineDraft("Display", D(18), "CPM", D("4.2"), D("75.60"), item_id="display")]
    merged = merge_lines(existing, computed)
    assert [(x.id, x.description, x.amount) for x in merged] == [
        (1, "Search", D(12)), (2, "Display (corrected)", D(50)), (4, "Loyalty discount", D(-20))]


def test_content_hash_is_canonical_and_changes_with_content() -> None:
    a = [LineDraft("Search", D("1"), "lump sum", D("7000.00"), D("7000.00"), item_id="s")]
    b = [LineDraft("Search", D("1.000000"), "lump sum", D("7000.000000"), D("7E+3"), item_id="s")]
    kw = dict(campaign_id="c", period_start=date(2026, 2, 1), period_end=date(2026, 2, 28), currency="EUR")
    assert content_hash(lines=a, **kw) == content_hash(lines=b, **kw)  # type: ignore[arg-type]
    c = [LineDraft("Search", D("1"), "lump sum", D("7000.01"), D("7000.01"), item_id="s")]
    assert content_hash(lines=a, **kw) != content_hash(lines=c, **kw)  # type: ignore[arg-type]


def _ci(**kw: object) -> CheckInput:
    base = dict(currency="EUR", lines=(LineDraft("x", D(1), "u", D(10), D(10), item_id="i"),), seller_country="DE",
                seller_currency="EUR", seller_vat_id="DE811907980", buyer_country="DE", buyer_vat_id=None)
    base.update(kw)
    return CheckInput(**base)  # type: ignore[arg-type]


def test_checks_return_all_problems_as_values() -> None:
    assert [c.__name__ for c in CHECKS] == ["check_currency", "check_lines", "check_total", "check_delivery_data",
                                            "check_vat_data", "check_exchange_rate", "check_addresses",
                                            "check_purchase_order"]
    assert run_checks(_ci()) == []
    no_data = LineDraft("Display", D(0), "CPM", D(4), D(0), item_id="d",
                        computation={"billing": "delivery", "has_data": False})
    problems = run_checks(_ci(lines=(no_data,), buyer_country="FR", currency="USD", seller_vat_id=None,
                              fx_day=date(2026, 3, 1)))
    assert problems == [
        "total is 0.00 USD: nothing to bill",
        "no delivery data for Display (d) in this period",
        "missing VAT data: the legal entity has no VAT id",
        "missing VAT data: the advertiser has no VAT id (needed for reverse charge to FR)",
        "missing exchange rate USD→EUR for 2026-03-01 (FX rule issue_date: the rate of the issue date, at most "
        "7 days older): no rate published 2026-02-22..2026-03-01",
    ]
    rate = LockedRate("USD", "EUR", D("0.92"), date(2026, 2, 27), "ECB")
    assert run_checks(_ci(currency="USD", fx=rate)) == []
    assert run_checks(_ci(currency="XYZ")) == ["unknown currency 'XYZ'"]
    neg = LineDraft("refund", D(1), "u", D(-5), D(-5), kind="manual")
    assert run_checks(_ci(lines=(neg,))) == ["total is negative (-5.00 EUR)"]
    odd = LineDraft("odd", D(1), "u", D("1.005"), D("1.005"), kind="manual")
    assert "more decimals" in run_checks(_ci(lines=(odd,)))[0]
    # an advertiser marked po_required: the campaign's (or the advertiser's default) PO number must be there
    assert run_checks(_ci(po_required=True, po_number="PO-1")) == []
    assert run_checks(_ci(po_required=True, po_number=" ")) == [
        "missing purchase-order number: the advertiser requires one on every invoice "
        "(set po_number on the campaign or the advertiser)"]


line_amounts = st.lists(st.decimals(min_value=D("-5000"), max_value=D("100000"), places=2, allow_nan=False,
                                    allow_infinity=False), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(amounts=line_amounts, rate=st.sampled_from([D(0), D(19), D(20), D("8.1"), D("25.5")]))
def test_invoice_totals_are_lines_plus_vat_to_the_cent(amounts: list[Decimal], rate: Decimal) -> None:
    lines = [InvoiceLineDraft(description=f"l{i}", quantity=D(1), unit="u", unit_price=a, amount=a)
             for i, a in enumerate(amounts)]
    inv = build_invoice(lines=lines, currency="EUR", vat=VatTreatment(rate, "S", None, "domestic"), fx=None,
                        issue_date=date(2026, 3, 1), payment_terms_days=30)
    assert inv.net == sum(amounts)
    assert inv.gross == inv.net + inv.vat
    assert inv.vat == (inv.net * rate / 100).quantize(D("0.01"), rounding="ROUND_HALF_UP")
    assert abs(inv.vat - inv.net * rate / 100) <= D("0.005")
    cn = build_invoice(lines=credit_lines(lines), currency="EUR", vat=VatTreatment(rate, "S", None, "domestic"),
                       fx=None, issue_date=date(2026, 3, 2), payment_terms_days=0, kind="credit_note")
    assert (cn.net, cn.vat, cn.gross) == (-inv.net, -inv.vat, -inv.gross)


def test_invoice_groups_lines_by_campaign_and_period_and_locks_fx() -> None:
    mk = lambda c, m: InvoiceLineDraft(description=c, quantity=D(1), unit="u", unit_price=D(1), amount=D(1),  # noqa: E731
                                       campaign=c, period_start=date(2026, m, 1), period_end=date(2026, m, 28))
    rate = LockedRate("USD", "EUR", D("0.9248982612"), date(2026, 2, 27), "ECB")
    inv = build_invoice(lines=[mk("B", 2), mk("A", 2), mk("A", 1)], currency="USD",
                        vat=VatTreatment(D(0), "G", "n", "export"), fx=rate, issue_date=date(2026, 3, 1),
                        payment_terms_days=14)
    assert [(x.campaign, x.period_start.month) for x in inv.lines] == [("A", 1), ("A", 2), ("B", 2)]
    assert (inv.service_start, inv.service_end) == (date(2026, 1, 1), date(2026, 2, 28))
    assert inv.fx == {"from": "USD", "to": "EUR", "rate": "0.9248982612", "date": "2026-02-27", "source": "ECB",
                      "net": "2.77", "vat": "0.00", "gross": "2.77"}


def test_numbering_and_log_lines() -> None:
    assert format_number("INV-{year}-{seq:06d}", year=2026, seq=123) == "INV-2026-000123"
    assert format_number("NW-{year}-{seq:05d}", year=2026, seq=1) == "NW-2026-00001"
    for bad in ("INV-{year}", "INV-{seq}-{client}", "INV-{seq"):
        with pytest.raises(Invalid):
            format_number(bad, year=2026, seq=1)
    assert created_line("INV-2026-000123", "Autohaus Nord") == "Document INV-2026-000123 created for Autohaus Nord"
    assert (skipped_line(D("180"), "EUR", "Autohaus Nord", D("250")) ==
            "Skipped items with a total of 180.00 EUR for Autohaus Nord (threshold 250.00 EUR)")
    assert below_threshold(D("249.99"), D("250")) and not below_threshold(D("250"), D("250"))
