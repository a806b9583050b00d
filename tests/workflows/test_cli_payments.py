"""`billbot payments import/list`, `invoices list` payment fields and `receivables aging` as JSON."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import time_machine
from typer.testing import CliRunner

from bot.cli import app
from storage.db import Database
from tests.factories import OPERATOR, add_user, base, invoice, utc

runner = CliRunner()
BANK = Path(__file__).resolve().parents[1] / "fixtures" / "bank"


@pytest.fixture(autouse=True)
def _operator(db: Database) -> None:
    """The CLI acts as a known operator (BILLBOT_USER, see tests/conftest.py)."""
    add_user(db, OPERATOR, ["operator"])


def _json(*args: str) -> Any:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_payments_import_list_and_invoice_fields(db: Database, key: Any) -> None:
    base(db)
    invoice(db, number="INV-2026-000004", created_at=utc(2026, 3, 1, 9), gross="1000.00", advertiser="adv-2")
    with time_machine.travel(utc(2026, 4, 6, 9), tick=False):
        imported = _json("payments", "import", str(BANK / "camt053_v02.xml"))
        assert [(r["inserted"], r["quarantined"], r["outcomes"]) for r in imported] == [
            (2, 1, {"partial": 1, "unmatched": 1})]
        listed = _json("payments", "list")
        assert set(listed[0]) >= {"id", "booking_date", "value_date", "amount", "currency", "payer_name",
                                  "payer_iban", "remittance", "state", "allocations"}
        part = next(p for p in listed if p["amount"] == "400.00")
        assert (part["booking_date"], part["value_date"], part["state"], part["allocations"]) == (
            "2026-04-05", "2026-04-06", "partial", [{"invoice": "INV-2026-000004", "amount": "400.00",
                                                     "method": "reference"}])
        inv = _json("invoices", "list")[0]
        assert (inv["due_date"], inv["paid"], inv["open_amount"], inv["payment_state"], inv["payment_reference"]) == (
            "2026-03-31", "400.00", "600.00", "overdue", "RF13INV2026000004")
        again = _json("payments", "import", str(BANK / "camt053_v02.xml"))
        assert again[0]["inserted"] == 0 and again[0]["unchanged"] == 2


def test_bad_file_is_refused_with_exit_2(db: Database, tmp_path: Path) -> None:
    bad = tmp_path / "x.xml"
    bad.write_text('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                   '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03">&e;</Document>')
    r = runner.invoke(app, ["payments", "import", str(bad)])
    assert r.exit_code == 2 and "not a camt.053 or camt.054 document" in r.stderr


def test_receivables_aging_buckets_and_dso(db: Database) -> None:
    base(db)
    # due dates: issue + 30 days
    for n, issued, gross, adv in (("INV-1", date(2026, 6, 10), "100.00", "adv-1"),  # due 07-10: current
                                  ("INV-2", date(2026, 5, 20), "200.00", "adv-1"),  # due 06-19: 21 days → 1–30
                                  ("INV-3", date(2026, 4, 20), "300.00", "adv-1"),  # due 05-20: 51 → 31–60
                                  ("INV-4", date(2026, 3, 20), "400.00", "adv-2"),  # due 04-19: 82 → 61–90
                                  ("INV-5", date(2026, 2, 1), "500.00", "adv-2")):  # due 03-03: 129 → >90
        invoice(db, number=n, created_at=utc(issued.year, issued.month, issued.day, 9), gross=gross, advertiser=adv)
    rows = _json("receivables", "aging", "--as-of", "2026-07-10")
    assert rows == [
        {"advertiser": "Autohaus Nord", "advertiser_id": "adv-1", "currency": "EUR", "current": "100.00",
         "d1_30": "200.00", "d31_60": "300.00", "d61_90": "0.00", "d90_plus": "0.00", "total": "600.00",
         "dso": "225.0"},
        {"advertiser": "Bäckerei Süd", "advertiser_id": "adv-2", "currency": "EUR", "current": "0.00",
         "d1_30": "0.00", "d31_60": "0.00", "d61_90": "400.00", "d90_plus": "500.00", "total": "900.00",
         "dso": "225.0"}]
    # DSO = 1500.00 open ÷ 600.00 invoiced 2026-04-12..07-10 (INV-1..3; INV-4 and INV-5 are older) × 90 = 225.0
    help_text = runner.invoke(app, ["receivables", "aging", "--help"]).stdout
    assert "DSO = open receivables" in help_text
