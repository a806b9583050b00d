"""Factur-X EN 16931 XML from the pure document model (no database): the XSD check refuses invalid XML,
``check_document`` names what is wrong, addresses are split, any consistent invoice gives valid XML that
adds up, and the module examples hold. (Split from tests/workflows/test_xml.py, which keeps the tests
that read invoices from the database.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from billing.documents import DocumentLine, check_document, sample_document, vat_breakdown
from billing.documents.facturx import facturx_xml, split_address, xsd_problems

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
}


def _t(root: etree._Element, path: str) -> list[str]:
    return [e.text for e in root.xpath(path, namespaces=NS)]


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
    tax = (net * rate / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)  # as billing.invoice rounds VAT
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


def test_bt83_carries_the_iso11649_creditor_reference() -> None:
    """Issue 18: the remittance information (BT-83) is the invoice's RF creditor reference."""
    from stdnum import iso11649

    from billing.payments import creditor_reference

    doc = sample_document()
    xml = facturx_xml(doc).decode()
    ref = creditor_reference(doc.number)
    assert iso11649.is_valid(ref) and f"<ram:PaymentReference>{ref}</ram:PaymentReference>" in xml


def test_the_printed_invoice_names_the_payment_reference_in_groups_of_four() -> None:
    from billing.documents.view import view

    doc = sample_document()
    meta = dict(view(doc)["meta"])
    ref = meta.get("Payment reference") or meta.get("Verwendungszweck")
    assert ref is not None and ref.startswith("RF") and ref.replace(" ", "")[4:] in doc.number.replace("-", "")


def test_eur_invoices_carry_a_girocode_with_amount_iban_and_reference() -> None:
    import segno

    from billing.documents.view import view
    from billing.payments import creditor_reference, epc_qr_payload

    doc = sample_document()
    expected = epc_qr_payload(name=doc.seller.name, iban=doc.seller.iban or "", amount=doc.gross,
                              reference=creditor_reference(doc.number))
    assert expected.splitlines()[6:] == ["DE89370400440532013000", "EUR1190.00", "", creditor_reference(doc.number)]
    uri = view(doc)["epc_qr"]
    assert uri == segno.make(expected, error="m", micro=False, encoding="utf-8").png_data_uri(scale=1, border=2)
    assert view(replace(doc, currency="USD"))["epc_qr"] is None  # a GiroCode is for EUR transfers only
