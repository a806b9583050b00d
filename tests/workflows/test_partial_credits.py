"""Issue 20: partial credit notes — a quantity or an amount of a line, VAT by the original's treatment, FX
at the original's locked rate, never more than is left per line; Factur-X 381 referencing the invoice."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import facturx
import pytest
from lxml import etree
from sqlalchemy import select
from typer.testing import CliRunner

from billing.credits import CreditAsk
from billing.documents.facturx import facturx_xml
from billing.errors import Invalid
from billing.fx import convert, locked_rate
from bot.cli import app
from bot.workflows.billing_run import run_billing
from bot.workflows.credit_notes import decide_credit_note, request_credit_note
from bot.workflows.invoices import get_invoice
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.mapping import document_for_invoice
from storage.models import Invoice
from tests.factories import MANAGER, OPERATOR, add_user, advertiser, campaign, delivery, linear, load, scenario
from tests.workflows.conftest import NOW

pytestmark = pytest.mark.usefixtures("no_variance")

runner = CliRunner()
MANAGER2 = "U08FINANCE"
D = Decimal
TODAY = date(2026, 3, 1)
NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def clicks(item: str, first: int, third: int | None, days: int = 10) -> list[dict[str, Any]]:
    """``first`` (and ``third``) clicks a day over the first ``days`` days of February 2026."""
    rows = []
    for i in range(days):
        day = (date(2026, 2, 1) + timedelta(days=i)).isoformat()
        rows.append({"item": item, "date": day, "source": "first_party", "clicks": first})
        if third is not None:
            rows.append({"item": item, "date": day, "source": "third_party", "clicks": third})
    return rows


def search_and_display(db: Database) -> None:
    """INV-2026-000001: 300 search clicks at 0.60 = 180.00 and a booked 100.00 line, 19 % VAT."""
    add_user(db, OPERATOR, ["operator"])
    add_user(db, MANAGER, ["finance_manager"])
    add_user(db, MANAGER2, ["finance_manager"])
    load(db, scenario(advertisers=[advertiser("nord", "Autohaus Nord")],
                      campaigns=[campaign("cn", "nord", [delivery("search", "cpc", "0.60"),
                                                         linear("a", "1200.00", period="even")])],
                      delivery_rows=clicks("search", 30, 28)))
    assert _run("preinvoices", "create", "--period", "2026-02").exit_code == 0
    r = _run("run", "--period", "2026-02")
    assert r.exit_code == 0, r.output


def lines_of(db: Database, number: str) -> dict[str, Any]:
    inv = get_invoice(db, number)
    return {x.item: x for x in inv.lines}


def test_a_partial_credit_by_quantity_and_by_amount_with_exact_vat(db: Database) -> None:
    search_and_display(db)
    inv = get_invoice(db, "INV-2026-000001")
    lines = lines_of(db, inv.number)
    search, booked = lines["search"], lines["a"]
    assert (search.quantity, search.unit_price, search.amount, booked.amount) == (D(300), D("0.60"), D("180.00"),
                                                                                   D("100.00"))
    r = _run("credit-note", inv.number, "--line", str(search.id), "--quantity", "20", "--line", str(booked.id),
             "--amount", "33.33", "--reason", "20 invalid clicks; make-good", "--json")
    assert r.exit_code == 0, r.output
    req = json.loads(r.stdout)
    assert req["amount"] == "-45.33" and req["partial"] == [
        {"line": search.id, "quantity": "20", "amount": None}, {"line": booked.id, "quantity": None, "amount": "33.33"}]
    own = _run("credit-note", "approve", str(req["id"]), "--as", OPERATOR)
    assert own.exit_code == 1
    ok = _run("credit-note", "approve", str(req["id"]), "--as", MANAGER2, "--json")
    assert ok.exit_code == 0, ok.output
    cn = json.loads(ok.stdout)
    # 12.00 (20 × 0.60) + 33.33 = 45.33; VAT 19 % of it once, half-up: 8.6127 → 8.61
    assert (cn["number"], cn["references"], cn["net"], cn["vat"], cn["gross"]) == (
        "CN-2026-000001", inv.number, "-45.33", "-8.61", "-53.94")
    view = get_invoice(db, "CN-2026-000001")
    by_line = {x.credited_line_id: x for x in view.lines}
    assert (by_line[search.id].quantity, by_line[search.id].unit, by_line[search.id].unit_price,
            by_line[search.id].amount) == (D(-20), "clicks", D("0.60"), D("-12.00"))
    assert (by_line[booked.id].quantity, by_line[booked.id].unit_price, by_line[booked.id].amount) == (
        D(-1), D("33.33"), D("-33.33"))
    assert view.vat_rate == inv.vat_rate and view.vat_category == inv.vat_category == "S"

    # a second partial credit takes from what is left, never more
    over_q = _run("credit-note", inv.number, "--line", str(search.id), "--quantity", "281", "--reason", "x")
    assert over_q.exit_code == 2
    assert (f"line {search.id} of {inv.number} (Delivered search): 281 clicks asked, only 280 clicks left to credit"
            in over_q.output)
    over_a = _run("credit-note", inv.number, "--line", str(booked.id), "--amount", "66.68", "--reason", "x")
    assert over_a.exit_code == 2 and "66.68 EUR asked, only 66.67 EUR left to credit" in over_a.output
    rest = _run("credit-note", inv.number, "--line", str(booked.id), "--reason", "the rest", "--json")
    assert rest.exit_code == 0, rest.output
    assert json.loads(rest.stdout)["amount"] == "-66.67"  # a whole-line credit credits what is left


def test_over_crediting_is_refused_in_the_workflow_naming_the_line(db: Database, key: Any) -> None:
    search_and_display(db)
    search = lines_of(db, "INV-2026-000001")["search"]
    with pytest.raises(Invalid) as e:
        request_credit_note(db, number="INV-2026-000001", line_ids=None, reason="too much", actor=OPERATOR, key=key,
                            asks=[CreditAsk(search.id, amount=D("180.01"))])
    assert e.value.code == "over_credit"
    assert e.value.problems == [f"line {search.id} of INV-2026-000001 (Delivered search): 180.01 EUR asked, only "
                                "180.00 EUR left to credit"]
    req = request_credit_note(db, number="INV-2026-000001", line_ids=None, reason="all of it", actor=OPERATOR,
                              key=key, asks=[CreditAsk(search.id, quantity=D(300))])
    decide_credit_note(db, request_id=req.id, decision="approve", actor=MANAGER, key=key, today=TODAY)
    with pytest.raises(Invalid) as again:
        request_credit_note(db, number="INV-2026-000001", line_ids=None, reason="more", actor=OPERATOR, key=key,
                            asks=[CreditAsk(search.id, quantity=D(1))])
    assert "is already credited" in again.value.problems[0]


def test_the_credit_notes_xml_passes_the_xsd_and_references_the_invoice(db: Database) -> None:
    search_and_display(db)
    lines = lines_of(db, "INV-2026-000001")
    r = _run("credit-note", "INV-2026-000001", f"--line={lines['search'].id}", "--quantity=20",
             "--line", str(lines["a"].id), "--amount", "33.33", "--reason", "invalid", "--json")
    assert r.exit_code == 0, r.output
    assert _run("credit-note", "approve", str(json.loads(r.stdout)["id"]), "--as", MANAGER).exit_code == 0
    with db.read() as s:
        cn_id = s.execute(select(Invoice.id).where(Invoice.number == "CN-2026-000001")).scalar_one()
        xml = facturx_xml(document_for_invoice(s, cn_id))
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    root = etree.fromstring(xml)
    assert root.xpath("//ram:TypeCode/text()", namespaces=NS)[0] == "381"
    assert root.xpath("//ram:InvoiceReferencedDocument/ram:IssuerAssignedID/text()", namespaces=NS) == [
        "INV-2026-000001"]
    # EN 16931: a credit note states positive amounts — 20 clicks (12.00) and one lump sum of 33.33
    assert root.xpath("//ram:BilledQuantity/text()", namespaces=NS) == ["20", "1"]
    assert root.xpath("//ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount/text()",
                      namespaces=NS) == ["12.00", "33.33"]
    assert root.xpath("//ram:GrandTotalAmount/text()", namespaces=NS) == ["53.94"]


def test_a_partial_credit_in_a_foreign_currency_uses_the_invoices_locked_rate(db: Database, key: Any) -> None:
    add_user(db, OPERATOR, ["operator"])
    add_user(db, MANAGER, ["finance_manager"])
    load(db, scenario(advertisers=[advertiser("zurich", "Zurich AG", country="CH", currency="CHF")],
                      campaigns=[campaign("cz", "zurich", [linear("z", "1200.00")], start="2026-02-01",
                                          end="2026-02-28")],
                      rates=[{"date": "2026-02-27", "base": "EUR", "quote": "CHF", "rate": "0.9412"},
                             {"date": "2026-03-10", "base": "EUR", "quote": "CHF", "rate": "0.9000"}]))
    create_preinvoices(db, period="2026-02", actor=OPERATOR, key=key, now=NOW)
    assert run_billing(db, period="2026-02", actor=OPERATOR, key=key, today=TODAY).created == ["INV-2026-000001"]
    inv = get_invoice(db, "INV-2026-000001")
    assert inv.fx is not None and inv.fx["rate"] == "1.0624734382"
    line = inv.lines[0]
    req = request_credit_note(db, number=inv.number, line_ids=None, reason="rate", actor=OPERATOR, key=key,
                              asks=[CreditAsk(line.id, amount=D("100.00"))])
    decide_credit_note(db, request_id=req.id, decision="approve", actor=MANAGER, key=key, today=date(2026, 3, 12))
    cn = get_invoice(db, "CN-2026-000001")
    assert (cn.currency, cn.net, cn.vat, cn.vat_category) == ("CHF", D("-100.00"), D("0.00"), inv.vat_category)
    assert cn.fx is not None
    locked = locked_rate(inv.fx)
    assert locked is not None
    # the rate of the invoice (27 Feb), not the newer one of 10 March: -100.00 CHF × 1.0624734382 = -106.25 EUR
    assert (cn.fx["rate"], cn.fx["date"], cn.fx["net"]) == ("1.0624734382", "2026-02-27",
                                                          str(convert(D("-100.00"), locked)))
    assert cn.fx["net"] == "-106.25"


def test_the_credit_notes_pdf_shows_the_credited_quantities(db: Database, key: Any, tmp_path: Any) -> None:
    import io

    import pdfplumber

    from bot.documents import pdf
    from bot.workflows.documents import render_invoice_pdf

    search_and_display(db)
    search = lines_of(db, "INV-2026-000001")["search"]
    req = request_credit_note(db, number="INV-2026-000001", line_ids=None, reason="20 invalid clicks",
                              actor=OPERATOR, key=key, asks=[CreditAsk(search.id, quantity=D(20))])
    decide_credit_note(db, request_id=req.id, decision="approve", actor=MANAGER, key=key, today=TODAY)
    with db.read() as s:
        cn_id = s.execute(select(Invoice.id).where(Invoice.number == "CN-2026-000001")).scalar_one()
    path = render_invoice_pdf(db, cn_id, renderer=pdf, out_dir=tmp_path, key=key)
    with pdfplumber.open(io.BytesIO(path.read_bytes())) as p:
        text = "\n".join(page.extract_text() or "" for page in p.pages).replace("\xa0", " ")
    row = next(line for line in text.splitlines() if "Delivered search" in line)
    assert "20" in row and "0.60" in row and "12.00" in row and "180.00" not in row
    assert "INV-2026-000001" in text and "20 invalid clicks" in text
    assert facturx.get_facturx_xml_from_pdf(path.read_bytes(), check_xsd=True)[1]


def test_quantity_and_amount_options_pair_with_the_line_before_them() -> None:
    from bot.cli.billing_cmds import pair_line_options, parse_line_asks

    args = ["request", "INV-1", "--line", "3", "--quantity", "20", "--line=4", "--amount=12.00", "--line", "5",
            "--reason", "x"]
    paired = pair_line_options(args)
    assert paired == ["request", "INV-1", "--line", "3:quantity=20", "--line=4:amount=12.00", "--line", "5",
                      "--reason", "x"]
    ids, asks = parse_line_asks(["3:quantity=20", "4:amount=12.00", "5"])
    assert ids is None and asks == [CreditAsk(3, quantity=D(20)), CreditAsk(4, amount=D("12.00")), CreditAsk(5)]
    assert parse_line_asks(["3", "4"]) == ([3, 4], None)
    # an option before any --line stays as it is: the command refuses it, saying where it belongs
    assert pair_line_options(["--quantity", "2", "--line", "3"]) == ["--quantity", "2", "--line", "3"]
    with pytest.raises(Invalid) as e:
        parse_line_asks(["x:quantity=2", "3:quantity=two"])
    assert e.value.problems == ["--line x:quantity=2: give the invoice line id (a number)",
                                "--quantity 'two' (line 3): not a number"]
    r = _run("credit-note", "INV-1", "--quantity", "2", "--line", "3", "--reason", "x", "--as", OPERATOR)
    assert r.exit_code == 2 and "each follow the --line they are for" in r.output
