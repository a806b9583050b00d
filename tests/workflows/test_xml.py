"""Factur-X EN 16931 XML: valid against the official XSD (facturx's own checker) for a domestic, a
reverse-charge, a foreign-currency invoice and a credit note, and saying what the database says.
The XML tests that need no database are in tests/billing/test_documents_xml.py."""

from __future__ import annotations

from decimal import Decimal

import facturx
import pytest
from lxml import etree

from billing.documents.facturx import facturx_xml
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
    # every digit of the price, at least two decimals (receivers recompute BT-131 from it)
    assert _t(root, "//ram:NetPriceProductTradePrice/ram:ChargeAmount") == ["25.00"]
