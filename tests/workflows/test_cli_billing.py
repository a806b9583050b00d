"""The billing CLI: JSON shapes scripts rely on (DESIGN.md "Interfaces") and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from storage.db import Database
from tests.factories import MANAGER, OPERATOR, add_user, advertiser, campaign, linear, load, scenario

pytestmark = pytest.mark.usefixtures("no_variance")  # variance checks off unless with_variance

runner = CliRunner()


@pytest.fixture(autouse=True)
def _operator(db: Database) -> None:
    """The CLI acts as a known operator (BILLBOT_USER, see tests/conftest.py)."""
    add_user(db, OPERATOR, ["operator"])


def _json(*args: str) -> Any:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_preinvoices_run_invoices_credit_note_and_fx_as_json(db: Database, key: Any, tmp_path: Path) -> None:
    load(db, scenario(advertisers=[advertiser("nord", "Autohaus Nord"),
                                   advertiser("sued", "Autohaus Süd", threshold="5000.00")],
                      campaigns=[campaign("cn", "nord", [linear("a", "1200.00", period="even")]),
                                 campaign("cs", "sued", [linear("b", "2400.00", period="even")])]))
    created = _json("preinvoices", "create", "--period", "2026-02")
    assert len(created["created"]) == 2 and created["approved"] == created["created"]

    pres = _json("preinvoices", "list", "--period", "2026-02")
    assert {k for k in pres[0]} >= {"id", "campaign", "advertiser", "period_start", "period_end", "state",
                                    "currency", "net", "vat", "gross", "lines"}
    nord = next(p for p in pres if p["advertiser"] == "Autohaus Nord")
    assert (nord["period_start"], nord["net"], nord["vat"], nord["gross"]) == ("2026-02-01", "100.00", "19.00",
                                                                               "119.00")
    assert nord["lines"] == [{"id": nord["lines"][0]["id"], "item": "a", "kind": "item",
                              "description": "Booked a", "quantity": "1", "unit": "lump sum",
                              "unit_price": "100.00", "amount": "100.00", "edited": False}]

    dry = _json("run", "--period", "2026-02", "--dry-run")
    assert dry["run"] is None and dry["created"] == ["INV-2026-000001"]
    run = _json("run", "--period", "2026-02")
    assert set(run) >= {"run", "created", "skipped", "held", "log"}
    assert run["created"] == ["INV-2026-000001"]
    assert run["skipped"] == [{"advertiser": "Autohaus Süd", "advertiser_id": "sued", "total": "200.00",
                               "threshold": "5000.00", "currency": "EUR"}]
    assert run["log"] == ["Document INV-2026-000001 created for Autohaus Nord",
                          "Skipped items with a total of 200.00 EUR for Autohaus Süd (threshold 5000.00 EUR)"]

    # a credit note is requested, and issued only when a finance manager other than the requester approves
    req = _json("credit-note", "INV-2026-000001", "--reason", "wrong rate")
    assert (req["state"], req["invoice"], req["amount"], req["requested_by"]) == ("pending", "INV-2026-000001",
                                                                                "-100.00", OPERATOR)
    assert _json("invoices", "list", "--kind", "credit_note") == []
    add_user(db, MANAGER, ["finance_manager"])
    cn = _json("credit-note", "approve", str(req["id"]), "--as", MANAGER)
    assert (cn["number"], cn["kind"], cn["references"], cn["gross"]) == ("CN-2026-000001", "credit_note",
                                                                         "INV-2026-000001", "-119.00")
    invoices = _json("invoices", "list")
    assert [(i["number"], i["kind"], i["references"]) for i in invoices] == [
        ("INV-2026-000001", "invoice", None), ("CN-2026-000001", "credit_note", "INV-2026-000001")]
    assert {k for k in invoices[0]} >= {"number", "kind", "advertiser", "legal_entity", "issue_date", "currency",
                                        "net", "vat", "gross", "references"}
    shown = _json("invoices", "show", "INV-2026-000001")
    assert shown["lines"][0]["period_start"] == "2026-02-01"

    csv = tmp_path / "eurofxref-hist.csv"
    csv.write_text("Date,USD,CHF,\n2026-02-27,1.0812,0.9412,\n", encoding="utf-8")
    assert _json("fx", "import", str(csv))["inserted"] == 2
    assert _json("fx", "import", str(csv))["unchanged"] == 2
    assert _json("fx", "list", "--quote", "USD") == [{"date": "2026-02-27", "base": "EUR", "quote": "USD",
                                                      "rate": "1.0812", "source": "ECB"}]


def test_errors_go_to_stderr_with_exit_codes(db: Database, key: Any) -> None:
    bad = runner.invoke(app, ["run", "--period", "2026-13"])
    assert bad.exit_code == 2 and "month must be in 1..12" in bad.output
    missing = runner.invoke(app, ["invoices", "show", "INV-1"])
    assert missing.exit_code == 2 and "invoice INV-1 not found" in missing.output
    unknown = runner.invoke(app, ["preinvoices", "create", "--period", "2026-02", "--advertiser", "Nobody"])
    assert unknown.exit_code == 2 and "unknown advertiser(s): Nobody" in unknown.output
