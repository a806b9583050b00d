"""Line arithmetic as an EN 16931 receiver recomputes it: BT-131 = BT-129 × BT-146 / BT-149 (rounded to
the minor unit), and totals that add up (BR-CO-10…17). A document that fails is refused before it is
numbered (``build_invoice``) and before it is rendered (``check_document``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from lxml import etree

from billing.documents import check_document, sample_document
from billing.documents.facturx import facturx_xml
from billing.documents.model import document_quantity, line_amount
from billing.errors import Invalid
from billing.invoice import InvoiceLineDraft, build_invoice
from billing.tax import VatTreatment

RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
D = Decimal


def _cpm_document():  # type: ignore[no-untyped-def]
    doc = sample_document("en")
    qty, unit, base = document_quantity(D("883.44"), "1,000 impressions", D("4.05"), D("3577.93"), "EUR")
    cpm = replace(doc.lines[0], description="Display", quantity=qty, unit=unit, unit_price=D("4.05"),
                  amount=D("3577.93"), price_base=base)
    net = D("3577.93") + doc.lines[1].amount
    vat = (net * 19 / 100).quantize(D("0.01"))
    return replace(doc, lines=(cpm, doc.lines[1]), net=net, vat=vat, gross=net + vat)


def test_cpm_lines_show_impressions_against_a_price_base_of_1000() -> None:
    doc = _cpm_document()
    assert check_document(doc) == []
    root = etree.fromstring(facturx_xml(doc))
    line = root.find(f".//{{{RAM}}}IncludedSupplyChainTradeLineItem")
    assert line is not None
    qty = D(line.findtext(f".//{{{RAM}}}BilledQuantity") or "")
    price = line.find(f".//{{{RAM}}}NetPriceProductTradePrice")
    assert price is not None
    base = D(price.findtext(f"{{{RAM}}}BasisQuantity") or "1")
    unit_price = D(price.findtext(f"{{{RAM}}}ChargeAmount") or "")
    amount = D(line.findtext(f".//{{{RAM}}}LineTotalAmount") or "")
    assert (qty, unit_price, base, amount) == (D(883440), D("4.05"), D(1000), D("3577.93"))
    assert abs(qty * unit_price / base - amount) <= D("0.01")


def test_a_doctored_line_or_total_is_refused() -> None:
    doc = _cpm_document()
    doctored = replace(doc, lines=(replace(doc.lines[0], price_base=D(1)), doc.lines[1]))
    assert any(p.startswith("line 1: 883440.00 × 4.05 / 1 = ") for p in check_document(doctored))
    off = replace(doc, gross=doc.gross + D("0.01"))
    assert any("is not the gross" in p for p in check_document(off))
    wrong_vat = replace(doc, vat=doc.vat + D("0.01"), gross=doc.gross + D("0.01"))
    assert any("VAT S" in p for p in check_document(wrong_vat))


def test_build_invoice_refuses_a_line_that_does_not_recompute_before_numbering() -> None:
    good = InvoiceLineDraft("Display", D("883.44"), "1,000 impressions", D("4.05"), D("3577.93"))
    bad = InvoiceLineDraft("Display", D("883.44"), "1,000 impressions", D("4.05"), D("3.58"))
    vat = VatTreatment(rate=D(19), category="S", note=None, kind="domestic")


    assert build_invoice(lines=[good], currency="EUR", vat=vat, fx=None, issue_date=date(2026, 3, 1),
                         payment_terms_days=14).net == D("3577.93")
    with pytest.raises(Invalid) as e:
        build_invoice(lines=[good, bad], currency="EUR", vat=vat, fx=None, issue_date=date(2026, 3, 1),
                      payment_terms_days=14)
    assert e.value.code == "line_arithmetic" and "= 3577.93, not 3.58" in e.value.message


def test_line_amount_rounds_half_up_to_the_minor_unit() -> None:
    assert line_amount(D(1), D("0.005"), D(1)) == D("0.01")
    assert line_amount(D(1000), D("2.345"), D(1000)) == D("2.35")
