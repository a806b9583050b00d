"""Partners (issue 19, item 6): branches of a partner invoiced per branch (today) or with one consolidated
invoice per partner (a line block per branch, addressed to the partner at its head office), the partner's
monthly statement PDF either way, and the demo's 546 partners."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import facturx
import pdfplumber
import pytest
from lxml import etree
from typer.testing import CliRunner

from billing.documents.facturx import facturx_xml
from billing.errors import Invalid
from bot.cli import app
from bot.documents.statements import render_statement
from bot.workflows import billing_run
from bot.workflows.billing_run import chunk_length, partner_order, run_billing
from bot.workflows.integrity import check_rows
from bot.workflows.partners import list_partners, partner_statement
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.demo import build_demo, master_data
from storage.loader import load_scenario
from storage.mapping import document_for_invoice
from storage.models import Invoice, PreInvoice
from tests.factories import OPERATOR, add_user, advertiser, campaign, entity, linear, load, scenario

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
RUN_DAY = date(2026, 11, 2)
NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}


def partner_world(invoicing: str, *, head_office: str | None = None) -> dict[str, Any]:
    """Partner ``elbe`` with two branches (1,000.00 and 250.50 a month) and one advertiser of its own
    (400.00 a month) between them by id."""
    data = scenario(
        entities=[entity()],
        advertisers=[{**advertiser("elbe-altona", "Autohaus Elbe – Altona", vat_id="DE136695976"), "partner": "elbe"},
                     advertiser("harburg", "Autohaus Harburg"),
                     {**advertiser("elbe-wandsbek", "Autohaus Elbe – Wandsbek"), "partner": "elbe"}],
        campaigns=[campaign("c-altona", "elbe-altona", [linear("x-altona", "12000.00", period="even")]),
                   campaign("c-harburg", "harburg", [linear("x-harburg", "4800.00", period="even")]),
                   campaign("c-wandsbek", "elbe-wandsbek", [linear("x-wandsbek", "3006.00", period="even")])])
    data["partners"] = [{"id": "elbe", "name": "Autohaus Elbe GmbH", "invoicing": invoicing,
                         **({"head_office": head_office} if head_office else {})}]
    return data


def bill(db: Database, key: Any, data: dict[str, Any]) -> list[str]:
    add_user(db, OPERATOR, ["operator"])
    load(db, data)
    create_preinvoices(db, period="2026-10", actor="t", key=key, now=NOW)
    return run_billing(db, period="2026-10", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW).created


def invoices(db: Database) -> dict[str, Invoice]:
    with db.read() as s:
        rows = list(s.query(Invoice).all())
        for r in rows:
            _ = r.lines
        return {r.advertiser_id: r for r in rows}


def test_a_consolidated_partner_gets_one_invoice_with_a_line_block_per_branch(db: Database, key: Any) -> None:
    created = bill(db, key, partner_world("consolidated"))
    assert created == ["INV-2026-000001", "INV-2026-000002"]  # gapless: the partner's, then Harburg's
    got = invoices(db)
    assert set(got) == {"elbe-altona", "harburg"}  # the partner's invoice is addressed to its head office
    inv = got["elbe-altona"]
    assert inv.number == "INV-2026-000001"
    assert inv.net == Decimal("1250.50") and inv.vat == Decimal("237.60") and inv.gross == Decimal("1488.10")
    assert inv.parties["buyer"]["name"] == "Autohaus Elbe GmbH" and inv.parties["buyer"]["partner"] == "elbe"
    assert inv.parties["buyer"]["vat_id"] == "DE136695976"  # the head office's legal data
    blocks = {li.campaign: li.amount for li in inv.lines}
    assert blocks == {"Autohaus Elbe – Altona – Campaign c-altona": Decimal("1000.00"),
                      "Autohaus Elbe – Wandsbek – Campaign c-wandsbek": Decimal("250.50")}
    assert got["harburg"].net == Decimal("400.00") and len(got["harburg"].lines) == 1
    with db.read() as s:  # the partner's invoice is covered by the audit log like any other
        assert check_rows(s) == []
        assert {p.invoice_id for p in s.query(PreInvoice).all()} == {inv.id, got["harburg"].id}

    with db.read() as s:
        xml = facturx_xml(document_for_invoice(s, inv.id))
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    root = etree.fromstring(xml)
    assert root.xpath("//ram:BuyerTradeParty/ram:Name/text()", namespaces=NS) == ["Autohaus Elbe GmbH"]
    names = root.xpath("//ram:SpecifiedTradeProduct/ram:Description/text()", namespaces=NS)
    assert sorted(names) == ["Autohaus Elbe – Altona – Campaign c-altona",
                             "Autohaus Elbe – Wandsbek – Campaign c-wandsbek"]
    summ = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    assert root.xpath(summ + "ram:GrandTotalAmount/text()", namespaces=NS) == ["1488.10"]
    lines = root.xpath("//ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount/text()",
                       namespaces=NS)
    assert sum(Decimal(x) for x in lines) == Decimal("1250.50")


def test_the_head_office_can_be_named_and_a_partner_invoice_survives_small_chunks(
        db: Database, key: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billing_run, "CHUNK_SIZE", 1)  # the partner's two branches still settle together
    add_user(db, OPERATOR, ["operator"])
    load(db, partner_world("consolidated", head_office="elbe-wandsbek"))
    create_preinvoices(db, period="2026-10", actor="t", key=key, now=NOW)
    dry = run_billing(db, period="2026-10", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW, dry_run=True)
    created = run_billing(db, period="2026-10", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW).created
    assert created == dry.created == ["INV-2026-000001", "INV-2026-000002"]
    assert dry.log == ["Document INV-2026-000001 created for Autohaus Elbe GmbH",  # the job log names the partner
                       "Document INV-2026-000002 created for Autohaus Harburg"]
    got = invoices(db)
    assert set(got) == {"elbe-wandsbek", "harburg"}
    assert got["elbe-wandsbek"].net == Decimal("1250.50") and len(got["elbe-wandsbek"].lines) == 2


def test_per_branch_is_todays_behaviour(db: Database, key: Any) -> None:
    assert len(bill(db, key, partner_world("per_branch"))) == 3
    got = invoices(db)
    assert {a: i.net for a, i in got.items()} == {"elbe-altona": Decimal("1000.00"), "harburg": Decimal("400.00"),
                                                   "elbe-wandsbek": Decimal("250.50")}
    assert got["elbe-altona"].parties["buyer"]["name"] == "Autohaus Elbe – Altona"
    assert list_partners(db) == [{"id": "elbe", "name": "Autohaus Elbe GmbH", "invoicing": "per_branch",
                                  "head_office": None, "branches": 2}]


def pdf_text(data: bytes) -> str:
    with pdfplumber.open(io.BytesIO(data)) as p:
        return "\n".join(page.extract_text() or "" for page in p.pages)


def test_the_statement_lists_both_branches_invoices_with_totals(db: Database, key: Any, tmp_path: Path) -> None:
    bill(db, key, partner_world("per_branch"))
    got = invoices(db)
    st = partner_statement(db, "elbe", period="2026-10")
    assert [r.number for r in st.rows] == sorted([got["elbe-altona"].number, got["elbe-wandsbek"].number])
    assert st.totals == {"EUR": (Decimal("1250.50"), Decimal("237.60"), Decimal("1488.10"))}
    text = pdf_text(render_statement(st))
    assert "Partner statement 2026-10 — Autohaus Elbe GmbH" in text
    for branch in ("elbe-altona", "elbe-wandsbek"):
        assert got[branch].number in text
    assert "Autohaus Elbe – Altona" in text and "Autohaus Elbe – Wandsbek" in text
    assert "Autohaus Harburg" not in text and got["harburg"].number not in text  # not a branch
    assert "1,000.00 EUR" in text and "250.50 EUR" in text
    assert "Total EUR" in text and "1,250.50 EUR" in text and "237.60 EUR" in text and "1,488.10 EUR" in text

    out = tmp_path / "elbe-2026-10.pdf"  # the CLI writes the same statement (read-only: no --as needed)
    r = CliRunner().invoke(app, ["partners", "statement", "elbe", "--period", "2026-10", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["totals"] == {"EUR": {"net": "1250.50", "vat": "237.60", "gross": "1488.10"}}
    assert got["elbe-wandsbek"].number in pdf_text(out.read_bytes())
    bad = CliRunner().invoke(app, ["partners", "statement", "nope", "--period", "2026-10", "-o",
                                   str(tmp_path / "x.pdf")])
    assert bad.exit_code != 0 and "partner 'nope' not found" in bad.output


def test_a_consolidated_statement_names_both_branches_on_one_invoice(db: Database, key: Any) -> None:
    bill(db, key, partner_world("consolidated"))
    st = partner_statement(db, "elbe", period="2026-10")
    assert [(r.number, r.branches) for r in st.rows] == [
        ("INV-2026-000001", ("Autohaus Elbe – Altona", "Autohaus Elbe – Wandsbek"))]
    text = pdf_text(render_statement(st))
    assert "INV-2026-000001" in text and "Autohaus Elbe – Wandsbek" in text and "1,488.10 EUR" in text
    assert partner_statement(db, "elbe", period="2026-09").rows == ()


def test_bad_partner_references_are_named(db: Database) -> None:
    data = partner_world("consolidated", head_office="harburg")
    data["advertisers"][2]["partner"] = "alster"
    with pytest.raises(Invalid) as e:
        load_scenario(db, data)
    assert "advertisers[2].partner: unknown partner 'alster'" in e.value.problems
    assert any(p.startswith("partners[0].head_office: advertiser 'harburg' is not a branch of partner 'elbe'")
               for p in e.value.problems)
    data = partner_world("monthly")
    with pytest.raises(Invalid, match=r"partners\[0\]\.invoicing"):
        load_scenario(db, data)


def test_partner_order_keeps_a_consolidated_partners_branches_in_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    assert partner_order(["a", "b", "c", "d"], {"a": "P", "c": "P"}) == ["a", "c", "b", "d"]
    assert partner_order(["a", "b", "c"], {}) == ["a", "b", "c"]
    monkeypatch.setattr(billing_run, "CHUNK_SIZE", 2)
    todo = ["a", "c", "e", "b", "d"]
    partner_of = {"a": "P", "c": "P", "e": "P"}
    assert chunk_length(todo, 0, partner_of) == 3  # never splits P's three branches
    assert chunk_length(todo, 3, partner_of) == 2


def test_the_1124_branch_demo_has_546_partners(db: Database) -> None:
    demo = build_demo(size=1124, seed=1)
    partners = {p["id"] for p in demo["partners"]}
    assert len(partners) == 546
    assert {a["partner"] for a in demo["advertisers"]} == partners  # every partner has a branch
    first = [a["name"] for a in demo["advertisers"] if a["partner"] == "partner-001"]
    assert first and all(n.startswith("Autohaus Nord 001 ") for n in first)  # as the branch names say
    small = build_demo(size=30, seed=1)  # loading the partners (a small size: cheap)
    load_scenario(db, master_data(small))
    rows = list_partners(db)
    assert len(rows) == len(small["partners"]) == 15
    assert sum(r["branches"] for r in rows) == 30


def test_the_repos_example_file_has_a_partner(db: Database) -> None:
    from storage.models import Advertiser

    load_scenario(db, Path(__file__).resolve().parents[1] / "data" / "example.yaml")
    assert list_partners(db) == [{"id": "elbe-group", "name": "Elbe Autogruppe GmbH", "invoicing": "per_branch",
                                  "head_office": "autohaus-elbe", "branches": 1}]
    with db.read() as s:
        elbe, lyon = s.get(Advertiser, "autohaus-elbe"), s.get(Advertiser, "garage-lyon")
        assert elbe is not None and lyon is not None
        assert (elbe.partner_id, lyon.partner_id) == ("elbe-group", None)
