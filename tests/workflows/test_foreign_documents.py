"""Invoices and credit notes in the seller's currency and in others (PLN, CHF): each gets its PDF, its
Factur-X XML and its evidence pack. The XML states the invoice currency (BT-5) and, when the rate was
locked, the seller's VAT accounting currency (BT-6) with the VAT total in it (BT-111)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import facturx
import pytest
from lxml import etree
from sqlalchemy import select

from billing.fx import fx_json, locked_rate
from bot.documents import pdf
from bot.workflows.billing_run import run_billing
from bot.workflows.documents import render_invoice_pdf
from bot.workflows.evidence import build_evidence_pack, verify_evidence_pack
from bot.workflows.fx import import_ecb_csv
from bot.workflows.invoices import credit_note, list_invoices
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.models import Invoice
from tests.factories import advertiser, campaign, linear, load, scenario

from .conftest import NOW

TODAY = date(2026, 3, 1)
RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
NS = {"rsm": RSM, "ram": RAM}


@pytest.fixture
def billed(db: Database, key: Any) -> dict[str, str]:
    """One EUR (domestic), one PLN (reverse charge) and one CHF (export) invoice, each with a credit note."""
    load(db, scenario(
        advertisers=[advertiser("elbe"), advertiser("krakow", country="PL", currency="PLN", vat_id="PL5260250995"),
                     advertiser("zurich", country="CH", currency="CHF")],
        campaigns=[campaign(f"c-{a}", a, [linear(f"x-{a}", "1200.00")], start="2026-02-01", end="2026-02-28")
                   for a in ("elbe", "krakow", "zurich")]))
    import_ecb_csv(db, text="Date,PLN,CHF,\n2026-02-27,4.2975,0.9412,\n", actor="t", key=key, now=NOW)
    create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)
    run = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert len(run.created) == 3
    numbers = {v.advertiser_id: v.number for v in list_invoices(db)}
    for adv in ("elbe", "krakow", "zurich"):
        cn = credit_note(db, number=numbers[adv], line_ids=None, reason="campaign cancelled", actor="cli:op",
                         key=key, today=TODAY)
        numbers[f"{adv}-cn"] = cn.number
    return numbers


def _xml(path: Path) -> etree._Element:
    _name, xml = facturx.get_xml_from_pdf(path.read_bytes(), check_xsd=False)
    return etree.fromstring(xml)


@pytest.mark.parametrize(("adv", "currency"), [("elbe", "EUR"), ("krakow", "PLN"), ("zurich", "CHF"),
                                               ("elbe-cn", "EUR"), ("krakow-cn", "PLN"), ("zurich-cn", "CHF")])
def test_pdf_xml_and_evidence_for_every_currency(db: Database, key: Any, billed: dict[str, str], tmp_path: Path,
                                                 adv: str, currency: str) -> None:
    number = billed[adv]
    with db.read() as s:
        inv = s.execute(select(Invoice).where(Invoice.number == number)).scalar_one()
        invoice_id, stored_fx, vat = inv.id, inv.fx, inv.vat
    path = render_invoice_pdf(db, invoice_id, renderer=pdf, out_dir=tmp_path / "pdf", key=key)
    root = _xml(path)
    assert facturx.xml_check_xsd(etree.tostring(root), flavor="factur-x", level="en16931")
    settlement = root.find(".//ram:ApplicableHeaderTradeSettlement", NS)
    assert settlement is not None
    assert settlement.findtext("ram:InvoiceCurrencyCode", namespaces=NS) == currency
    totals = {t.get("currencyID"): Decimal(t.text or "") for t in
              settlement.iterfind("ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:TaxTotalAmount", NS)}
    if currency == "EUR":
        assert stored_fx is None and settlement.findtext("ram:TaxCurrencyCode", namespaces=NS) is None
        assert set(totals) == {"EUR"}
    else:
        locked = locked_rate(stored_fx)
        assert locked is not None and (locked.from_, locked.to) == (currency, "EUR")
        assert settlement.findtext("ram:TaxCurrencyCode", namespaces=NS) == "EUR"
        assert set(totals) == {currency, "EUR"}
        assert totals["EUR"] == abs(Decimal(fx_json(stored_fx)["vat"]))  # type: ignore[index]
    assert totals[currency] == abs(vat)
    pack = build_evidence_pack(db, number, tmp_path / f"{number}.zip", renderer=pdf, key=key,
                               out_dir=tmp_path / "pdf")
    assert verify_evidence_pack(pack) == []
    with zipfile.ZipFile(io.BytesIO(pack.read_bytes())) as z:
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["fx"] == fx_json(stored_fx)
    if currency != "EUR":
        assert (manifest["fx"]["from"], manifest["fx"]["to"]) == (currency, "EUR")


def test_services_outside_the_eu_are_not_subject_to_vat_and_the_pdf_states_rounding_not_approvals(
        db: Database, key: Any, billed: dict[str, str], tmp_path: Path) -> None:
    """A CHF export of services is UNCL5305 `O` (VATEX-EU-O) with its note, no VAT identifiers in the XML
    (EN 16931 BR-O-2); the customer's PDF states the rounding rule and carries no internal approval line."""
    import pdfplumber

    with db.read() as s:
        inv = s.execute(select(Invoice).where(Invoice.number == billed["zurich"])).scalar_one()
        invoice_id = inv.id
        assert inv.vat_category == "O" and inv.vat_note == "Export of services: not subject to VAT in Germany"
    path = render_invoice_pdf(db, invoice_id, renderer=pdf, out_dir=tmp_path, key=key)
    root = _xml(path)
    group = root.find(".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", NS)
    assert group is not None
    assert group.findtext("ram:CategoryCode", namespaces=NS) == "O"
    assert group.findtext("ram:ExemptionReasonCode", namespaces=NS) == "VATEX-EU-O"
    assert root.findall(".//ram:SpecifiedTaxRegistration", NS) == []
    with pdfplumber.open(path) as doc:
        text = "\n".join(p.extract_text() or "" for p in doc.pages)
    assert "Rounding: each line to the currency's minor unit; VAT on the net total; half up." in text
    assert "Released by" not in text and "approved (system)" not in text and "Freigegeben" not in text
