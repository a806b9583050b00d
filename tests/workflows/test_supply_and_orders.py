"""What splits a billing run's invoices beyond advertiser × legal entity × currency (issues 15 and 19):

- goods or services per campaign item: outside the EU services are not subject to VAT (``O``) and goods
  are an export (``G``); EN 16931 BR-O-11 forbids ``O`` beside any other category, so one pre-invoice with
  both becomes two invoices, numbered without gaps;
- purchase-order numbers (advertiser default, campaign override): an invoice never mixes them; the number is
  printed on the PDF and is BT-13 in the Factur-X XML; an advertiser marked ``po_required`` gets no invoice
  for a campaign without one (the pre-invoice is held with the problem).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import facturx
import pytest
from lxml import etree
from sqlalchemy import select

from billing.documents import check_document
from billing.documents.facturx import facturx_xml
from billing.errors import Invalid
from bot.documents import pdf
from bot.workflows.billing_run import run_billing
from bot.workflows.documents import render_invoice_pdf
from bot.workflows.evidence import build_evidence_pack, verify_evidence_pack
from bot.workflows.fx import import_ecb_csv
from bot.workflows.integrity import check_rows
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.mapping import document_for_invoice
from storage.models import CampaignItem, Invoice, InvoiceLine, PreInvoice
from storage.scenario import parse_scenario
from tests.factories import advertiser, campaign, linear, load, scenario

from .conftest import NOW

TODAY = date(2026, 3, 1)
NS = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
BT13 = "ram:ApplicableHeaderTradeAgreement/ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID"


def _invoices(db: Database) -> list[Invoice]:
    with db.read() as s:
        rows = list(s.execute(select(Invoice).order_by(Invoice.seq)).scalars())
        for r in rows:
            _ = r.lines  # loaded while the session is open
        return rows


def _xml_of(db: Database, invoice_id: int) -> etree._Element:
    with db.read() as s:
        xml = facturx_xml(document_for_invoice(s, invoice_id))  # raises on an XSD error
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    return etree.fromstring(xml)


def _bill(db: Database, key: Any, data: dict[str, Any]) -> Any:
    load(db, data)
    import_ecb_csv(db, text="Date,CHF,\n2026-02-27,0.9412,\n", actor="t", key=key, now=NOW)
    create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)
    return run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)


# --------------------------------------------------------------------------- goods and services


def test_goods_and_services_to_a_buyer_outside_the_eu_become_two_invoices(db: Database, key: Any,
                                                                         tmp_path: Path) -> None:
    run = _bill(db, key, scenario(
        advertisers=[advertiser("zurich", country="CH", currency="CHF")],
        campaigns=[campaign("c-zurich", "zurich", [
            linear("zurich-ads", "1000.00", description="Display advertising"),
            linear("zurich-kits", "400.00", description="Printed dealer kits", supply="goods"),
        ], start="2026-02-01", end="2026-02-28")]))

    assert run.held == [] and len(run.created) == 2
    invoices = _invoices(db)
    assert [i.seq for i in invoices] == [1, 2]  # gapless, in a fixed order (category G before O)
    by_category = {i.vat_category: i for i in invoices}
    assert set(by_category) == {"G", "O"}
    goods, services = by_category["G"], by_category["O"]
    assert [x.item_id for x in goods.lines] == ["zurich-kits"]
    assert [x.item_id for x in services.lines] == ["zurich-ads"]
    assert (goods.net, goods.vat, services.net, services.vat) == (Decimal("400.00"), 0, Decimal("1000.00"), 0)
    assert goods.vat_note == "Export of goods: VAT exempt in Germany"
    assert services.vat_note == "Export of services: not subject to VAT in Germany"
    with db.read() as s:  # one pre-invoice, billed by both invoices, each line exactly once
        pi = s.execute(select(PreInvoice)).scalar_one()
        assert pi.state == "invoiced" and pi.invoice_id == invoices[0].id
        billed = s.execute(select(InvoiceLine.preinvoice_line_id, InvoiceLine.preinvoice_id)).all()
        assert sorted(lid for lid, _ in billed) == sorted(x.id for x in pi.lines)
        assert {p for _, p in billed} == {pi.id}
        assert check_rows(s) == []  # `audit verify`: the invoices and the pre-invoice are as audited

    for inv in invoices:
        root = _xml_of(db, inv.id)
        cats = {c.text for c in root.iterfind(".//ram:CategoryCode", NS)}
        assert cats == {inv.vat_category}
    pack = build_evidence_pack(db, goods.number, tmp_path / "goods.zip", renderer=pdf, key=key, out_dir=tmp_path)
    assert verify_evidence_pack(pack) == []
    # a second run bills nothing twice
    again = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert again.created == []


def test_goods_and_services_at_home_stay_on_one_invoice(db: Database, key: Any) -> None:
    run = _bill(db, key, scenario(
        advertisers=[advertiser("elbe")],
        campaigns=[campaign("c-elbe", "elbe", [linear("elbe-ads", "1000.00"),
                                               linear("elbe-kits", "400.00", supply="goods")],
                            start="2026-02-01", end="2026-02-28")]))
    assert len(run.created) == 1
    (inv,) = _invoices(db)
    assert inv.vat_category == "S" and inv.net == Decimal("1400.00") and inv.vat == Decimal("266.00")


def test_the_document_check_refuses_o_beside_another_category(db: Database, key: Any) -> None:
    _bill(db, key, scenario(
        advertisers=[advertiser("zurich", country="CH", currency="CHF")],
        campaigns=[campaign("c-zurich", "zurich", [linear("zurich-ads", "1000.00"),
                                                   linear("zurich-more", "500.00")],
                            start="2026-02-01", end="2026-02-28")]))
    (inv,) = _invoices(db)
    with db.read() as s:
        doc = document_for_invoice(s, inv.id)
    assert doc.vat_category == "O" and check_document(doc) == []
    doctored = replace(doc, lines=(doc.lines[0], replace(doc.lines[1], vat_category="G")))
    assert check_document(doctored) == [
        "VAT category O (not subject to VAT) cannot share a document with G (EN 16931 BR-O-11): bill them separately"]


def test_supply_is_goods_or_services_in_the_scenario_and_stored_on_the_item(db: Database) -> None:
    bad = scenario(advertisers=[advertiser("elbe")],
                   campaigns=[campaign("c", "elbe", [linear("i", "10.00", supply="food")])])
    with pytest.raises(Invalid) as e:
        parse_scenario(bad)
    assert any(p.startswith("campaigns[0].items[0].supply: ") for p in e.value.problems)
    load(db, scenario(advertisers=[advertiser("elbe")],
                      campaigns=[campaign("c", "elbe", [linear("i", "10.00", supply="goods"), linear("j", "1.00")])]))
    with db.read() as s:
        rows = s.execute(select(CampaignItem.id, CampaignItem.supply)).all()
    assert {i: sup for i, sup in rows} == {"i": "goods", "j": "services"}


# --------------------------------------------------------------------------- purchase orders


def _po_world(**adv: Any) -> dict[str, Any]:
    a = advertiser("elbe")
    a.update(adv)
    feb = {"start": "2026-02-01", "end": "2026-02-28"}
    c1 = campaign("c-search", "elbe", [linear("search", "700.00")], **feb)
    c2 = campaign("c-display", "elbe", [linear("display", "300.00")], **feb)
    c3 = campaign("c-social", "elbe", [linear("social", "200.00")], **feb)
    c1["po_number"] = "PO-4711"
    c3["po_number"] = "PO-4711"
    return scenario(advertisers=[a], campaigns=[c1, c2, c3])


def test_invoices_never_mix_purchase_orders(db: Database, key: Any, tmp_path: Path) -> None:
    import pdfplumber

    run = _bill(db, key, _po_world(po_number="PO-2026-01"))
    assert run.held == [] and len(run.created) == 2
    invoices = _invoices(db)
    by_po = {i.parties["buyer"]["po_number"]: i for i in invoices}
    assert set(by_po) == {"PO-2026-01", "PO-4711"}  # the advertiser's default, and the campaigns' override
    assert {x.item_id for x in by_po["PO-4711"].lines} == {"search", "social"}
    assert {x.item_id for x in by_po["PO-2026-01"].lines} == {"display"}
    assert by_po["PO-4711"].net == Decimal("900.00") and by_po["PO-2026-01"].net == Decimal("300.00")
    assert [i.seq for i in invoices] == [1, 2]
    with db.read() as s:
        assert check_rows(s) == []

    inv = by_po["PO-4711"]
    root = _xml_of(db, inv.id)
    agreement = root.find(".//ram:ApplicableHeaderTradeAgreement", NS)
    assert agreement is not None
    assert [x.text for x in root.iterfind(".//" + BT13, NS)] == ["PO-4711"]
    # XSD order: BuyerOrderReferencedDocument follows the parties and precedes ContractReferencedDocument
    tags = [etree.QName(x).localname for x in agreement]
    assert tags.index("BuyerOrderReferencedDocument") > tags.index("BuyerTradeParty")

    path = render_invoice_pdf(db, inv.id, renderer=pdf, out_dir=tmp_path, key=key)
    _name, embedded = facturx.get_xml_from_pdf(path.read_bytes(), check_xsd=False)
    assert [x.text for x in etree.fromstring(embedded).iterfind(".//" + BT13, NS)] == ["PO-4711"]
    with pdfplumber.open(path) as doc:
        text = "\n".join(p.extract_text() or "" for p in doc.pages)
    assert "Your order no. PO-4711" in text


def test_without_purchase_orders_nothing_splits_and_no_bt13(db: Database, key: Any) -> None:
    data = _po_world()
    for c in data["campaigns"]:
        c.pop("po_number", None)
    run = _bill(db, key, data)
    assert len(run.created) == 1
    (inv,) = _invoices(db)
    assert "po_number" not in inv.parties["buyer"]
    assert _xml_of(db, inv.id).find(".//ram:BuyerOrderReferencedDocument", NS) is None


def test_po_required_holds_a_campaign_without_one(db: Database, key: Any) -> None:
    run = _bill(db, key, _po_world(po_required=True))  # no default: c-display has no PO number
    assert len(run.created) == 1
    (inv,) = _invoices(db)
    assert inv.parties["buyer"]["po_number"] == "PO-4711"
    assert [h["campaign"] for h in run.held] == ["Campaign c-display"]
    assert "missing purchase-order number: the advertiser requires one on every invoice" in run.held[0]["reason"]
    with db.read() as s:
        held = s.execute(select(PreInvoice).where(PreInvoice.campaign_id == "c-display")).scalar_one()
        assert held.invoice_id is None and held.state == "draft"
        assert held.problems == ["missing purchase-order number: the advertiser requires one on every invoice "
                                 "(set po_number on the campaign or the advertiser)"]


def test_changing_an_items_supply_is_held_like_other_vat_data(db: Database) -> None:
    """Goods or services decides the VAT treatment abroad: changing it on an existing item waits for a
    second person (a change set), like a change of country or VAT id; a new item's applies at once."""
    from storage.loader import load_scenario

    def world(supply: str) -> dict[str, Any]:
        return scenario(advertisers=[advertiser("zurich", country="CH", currency="CHF")],
                        campaigns=[campaign("c", "zurich", [linear("i", "10.00", supply=supply)])])

    load(db, world("services"))
    res = load_scenario(db, world("goods"), actor="U01OPERATOR", hold_money_changes=True)
    assert [(h["kind"], h["id"], h["field"], h["before"], h["after"]) for h in res.held] == [
        ("items", "i", "supply", "services", "goods")]
    with db.read() as s:
        assert s.get(CampaignItem, "i").supply == "services"  # not yet


def test_a_consolidated_partner_invoice_splits_by_each_branchs_purchase_order(db: Database, key: Any) -> None:
    """A consolidated partner's branches share one invoice unless their PO numbers differ: each branch's
    pre-invoices carry its own (its campaign's, else the branch's default)."""
    from tests.workflows.test_partners import bill, partner_world

    data = partner_world("consolidated")
    altona, _harburg, wandsbek = data["advertisers"]
    altona["po_number"] = "PO-ALTONA"
    wandsbek["po_number"] = "PO-WANDSBEK"
    created = bill(db, key, data)
    assert len(created) == 3  # Harburg on its own; the partner's branches on two invoices, one per PO
    by_po = {i.parties["buyer"].get("po_number"): i for i in _invoices(db)}
    assert set(by_po) == {None, "PO-ALTONA", "PO-WANDSBEK"}
    assert by_po["PO-ALTONA"].parties["buyer"]["partner"] == "elbe"
    assert {x.item_id for x in by_po["PO-ALTONA"].lines} == {"x-altona"}
    assert {x.item_id for x in by_po["PO-WANDSBEK"].lines} == {"x-wandsbek"}
    assert by_po[None].advertiser_id == "harburg"
