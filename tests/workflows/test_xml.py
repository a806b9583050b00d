"""Factur-X EN 16931 XML: valid against the official XSD (facturx's own checker) for a domestic, a
reverse-charge, a foreign-currency invoice and a credit note, and saying what the database says."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import facturx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from billing.documents import DocumentLine, check_document, sample_document, vat_breakdown
from billing.documents.facturx import facturx_xml, split_address, xsd_problems
from storage.mapping import document_for_invoice
from storage.models import Invoice

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
}


def _xml_for(db, invoice_id: int) -> tuple[etree._Element, bytes, Invoice]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        doc = document_for_invoice(s, invoice_id)
        inv = s.get(Invoice, invoice_id)
    xml = facturx_xml(doc)
    return etree.fromstring(xml), xml, inv


def _t(root: etree._Element, path: str) -> list[str]:
    return [e.text for e in root.xpath(path, namespaces=NS)]


@pytest.mark.parametrize("which", ["domestic", "reverse", "foreign", "credit"])
def test_xml_is_valid_against_the_official_xsd(db, world, which: str) -> None:
    _root, xml, _inv = _xml_for(db, getattr(world, which))
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    assert facturx.get_level(etree.fromstring(xml), "factur-x") == "en16931"


@pytest.mark.parametrize("which", ["domestic", "reverse", "foreign"])
def test_xml_totals_equal_the_database(db, world, which: str) -> None:
    root, _xml, inv = _xml_for(db, getattr(world, which))
    summ = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    assert _t(root, summ + "ram:TaxBasisTotalAmount") == [f"{inv.net:.2f}"]
    assert _t(root, summ + f"ram:TaxTotalAmount[@currencyID='{inv.currency}']") == [f"{inv.vat:.2f}"]
    assert _t(root, summ + "ram:GrandTotalAmount") == [f"{inv.gross:.2f}"]
    assert _t(root, summ + "ram:DuePayableAmount") == [f"{inv.gross:.2f}"]
    line_sum = sum(Decimal(x) for x in _t(root, "//ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount"))
    assert line_sum == inv.net
    assert _t(root, "//rsm:ExchangedDocument/ram:ID") == [inv.number]
    assert _t(root, "//rsm:ExchangedDocument/ram:TypeCode") == ["380"]
    assert _t(root, "//ram:InvoiceCurrencyCode") == [inv.currency]


def test_domestic_invoice_carries_standard_vat(db, world) -> None:
    root, _xml, inv = _xml_for(db, world.domestic)
    assert _t(root, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode") == ["S"]
    assert _t(root, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:RateApplicablePercent") == ["19.00"]
    assert _t(root, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CalculatedAmount") == ["551.00"]
    assert _t(root, "//ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == ["DE811907980"]
    assert _t(root, "//ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == ["DE89370400440532013000"]
    assert _t(root, "//ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/*") == ["20260315"]
    assert _t(root, "//ram:ApplicableHeaderTradeSettlement/ram:BillingSpecifiedPeriod/ram:StartDateTime/*") == ["20260201"]


def test_reverse_charge_invoice_names_the_exemption_and_both_vat_ids(db, world) -> None:
    root, _xml, _inv = _xml_for(db, world.reverse)
    tax = "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/"
    assert _t(root, tax + "ram:CategoryCode") == ["AE"]
    assert _t(root, tax + "ram:ExemptionReasonCode") == ["VATEX-EU-AE"]
    assert "Reverse charge" in _t(root, tax + "ram:ExemptionReason")[0]
    assert _t(root, tax + "ram:CalculatedAmount") == ["0.00"]
    assert _t(root, "//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == ["FR40303265045"]
    # CPM: price per 1,000 impressions → basis quantity 1000, 485,000 × 4.20 / 1000 = 2,037.00
    assert _t(root, "//ram:NetPriceProductTradePrice/ram:BasisQuantity") == ["1000"]
    assert _t(root, "//ram:SpecifiedLineTradeDelivery/ram:BilledQuantity") == ["485000"]


def test_foreign_currency_invoice_states_the_vat_accounting_currency(db, world) -> None:
    root, _xml, _inv = _xml_for(db, world.foreign)
    assert _t(root, "//ram:InvoiceCurrencyCode") == ["USD"]
    assert _t(root, "//ram:TaxCurrencyCode") == ["EUR"]
    assert _t(root, "//ram:TaxTotalAmount[@currencyID='EUR']") == ["0.00"]
    assert _t(root, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:ExemptionReasonCode") == [
        "VATEX-EU-G"]
    notes = " ".join(_t(root, "//rsm:ExchangedDocument/ram:IncludedNote/ram:Content"))
    assert "1 EUR = 1.0812 USD" in notes and "ECB" in notes
    assert _t(root, "//ram:BuyerTradeParty//ram:CountryID") == ["US"]
    assert _t(root, "//ram:BuyerTradeParty//ram:CountrySubDivisionName") == ["TX"]


def test_credit_note_is_381_and_references_the_invoice(db, world) -> None:
    root, _xml, inv = _xml_for(db, world.credit)
    assert _t(root, "//rsm:ExchangedDocument/ram:TypeCode") == ["381"]
    assert _t(root, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == [world.numbers["domestic"]]
    assert _t(root, "//ram:InvoiceReferencedDocument/ram:FormattedIssueDateTime/*") == ["20260301"]
    # EN 16931 credit notes carry positive amounts; the database stores the credit as negative
    assert inv.gross == Decimal("-119.00")
    assert _t(root, "//ram:GrandTotalAmount") == ["119.00"]
    assert _t(root, "//ram:SpecifiedLineTradeDelivery/ram:BilledQuantity") == ["4"]
    assert _t(root, "//ram:NetPriceProductTradePrice/ram:ChargeAmount") == ["25.0000"]


def test_an_invalid_document_is_refused_by_the_xsd_check() -> None:
    xml = facturx_xml(sample_document()).replace(b"<ram:TypeCode>380</ram:TypeCode>",
                                                 b"<ram:TypeCode>380</ram:TypeCode><ram:Bogus/>", 1)
    assert xsd_problems(xml)
    assert xsd_problems(b"<not-xml")


def test_check_document_names_what_is_wrong() -> None:
    doc = sample_document()
    assert check_document(doc) == []
    bad = replace(doc, net=Decimal("999.99"), kind="credit_note")
    problems = check_document(bad)
    assert any("lines add up to 1000.00" in p for p in problems)
    assert any("must reference" in p for p in problems)
    rc = replace(doc, vat_category="AE", vat=Decimal("190.00"), buyer=replace(doc.buyer, vat_id=None))
    problems = check_document(rc)
    assert any("must carry 0 VAT" in p for p in problems)
    assert any("buyer's VAT id" in p for p in problems)


def test_split_address_finds_postcode_and_city() -> None:
    assert split_address(("12 Quai Perrache", "69002 Lyon", "France"), "fr") == {
        "country_code": "FR", "addr_l1": "12 Quai Perrache", "postcode": "69002", "city": "Lyon"}
    assert split_address(("500 Congress Ave", "Austin", "TX 78701", "United States"), "US") == {
        "country_code": "US", "postcode": "78701", "country_subdivision": "TX", "city": "Austin",
        "addr_l1": "500 Congress Ave"}
    assert split_address((), "DE") == {"country_code": "DE"}


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**6), amounts), min_size=1, max_size=6),
       st.sampled_from([("S", Decimal(19)), ("S", Decimal(7)), ("AE", Decimal(0)), ("G", Decimal(0))]))
def test_any_consistent_invoice_gives_valid_xml_that_adds_up(lines, vat) -> None:
    category, rate = vat
    base = sample_document()
    doc_lines = tuple(
        DocumentLine(i, f"Item {i}", Decimal(q), "unit", amount / q, amount, vat_category=category, vat_rate=rate,
                     period_start=date(2026, 2, 1), period_end=date(2026, 2, 28))
        for i, (q, amount) in enumerate(lines, start=1)
    )
    net = sum((li.amount for li in doc_lines), Decimal(0))
    tax = (net * rate / 100).quantize(Decimal("0.01"))
    doc = replace(base, lines=doc_lines, net=net, vat=tax, gross=net + tax, vat_rate=rate, vat_category=category)
    assert check_document(doc) == []
    assert sum((g.amount for g in vat_breakdown(doc)), Decimal(0)) == tax
    root = etree.fromstring(facturx_xml(doc))
    assert Decimal(_t(root, "//ram:GrandTotalAmount")[0]) == net + tax
    line_total = sum(Decimal(x) for x in _t(root, "//ram:SpecifiedTradeSettlementLineMonetarySummation/"
                                                   "ram:LineTotalAmount"))
    assert line_total == net


def test_module_examples_hold() -> None:
    import doctest

    from billing.documents import facturx, model, view

    results = [doctest.testmod(m) for m in (model, view, facturx)]
    attempted, failed = sum(r.attempted for r in results), sum(r.failed for r in results)
    assert attempted > 5 and failed == 0
