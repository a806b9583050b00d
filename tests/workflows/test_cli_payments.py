"""`billbot payments import/list`, `invoices list` payment fields and `receivables aging` as JSON."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
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
         "dso": "225.0", "reporting": {"currency": "EUR", "current": "100.00", "d1_30": "200.00",
                                       "d31_60": "300.00", "d61_90": "0.00", "d90_plus": "0.00", "total": "600.00"}},
        {"advertiser": "Bäckerei Süd", "advertiser_id": "adv-2", "currency": "EUR", "current": "0.00",
         "d1_30": "0.00", "d31_60": "0.00", "d61_90": "400.00", "d90_plus": "500.00", "total": "900.00",
         "dso": "225.0", "reporting": {"currency": "EUR", "current": "0.00", "d1_30": "0.00", "d31_60": "0.00",
                                       "d61_90": "400.00", "d90_plus": "500.00", "total": "900.00"}},
        {"advertiser": "All advertisers in EUR", "advertiser_id": None, "currency": "EUR", "current": "100.00",
         "d1_30": "200.00", "d31_60": "300.00", "d61_90": "400.00", "d90_plus": "500.00", "total": "1500.00",
         "dso": None, "reporting": {"currency": "EUR", "current": "100.00", "d1_30": "200.00", "d31_60": "300.00",
                                    "d61_90": "400.00", "d90_plus": "500.00", "total": "1500.00"},
         "unconverted": []}]
    # DSO = 1500.00 open ÷ 600.00 invoiced 2026-04-12..07-10 (INV-1..3; INV-4 and INV-5 are older) × 90 = 225.0
    help_text = runner.invoke(app, ["receivables", "aging", "--help"]).stdout
    assert "DSO = open receivables" in help_text


def _foreign_invoice(db: Database, number: str, currency: str, gross: str, issued: date,
                     fx: dict[str, str] | None = None) -> None:
    from storage.models import Invoice

    g = Decimal(gross)
    with db.transaction() as s:
        s.add(Invoice(number=number, kind="invoice", legal_entity_id="le-de", advertiser_id="adv-2",
                      series="X-{seq}", year=issued.year, seq=abs(hash(number)) % 100000, issue_date=issued,
                      due_date=issued + timedelta(days=30), currency=currency, net=g, vat=Decimal("0"), gross=g,
                      vat_rate=Decimal("0"), vat_category="AE", content_hash="0" * 64, fx=fx,
                      created_at=utc(issued.year, issued.month, issued.day, 9)))


def _aging_with_pln(db: Database) -> None:
    """EUR 100.00 current; PLN 1,000.00 with the rate locked at issue (1 PLN = 0.2325581395 EUR), 31–60 days;
    PLN 430.00 without a locked rate, 1–30 days; USD 50.00 and no USD rate anywhere."""
    from storage.models import ExchangeRate

    base(db)
    invoice(db, number="INV-1", created_at=utc(2026, 6, 10, 9), gross="100.00")  # due 07-10: current
    _foreign_invoice(db, "PLN-1", "PLN", "1000.00", date(2026, 4, 20),
                     {"from": "PLN", "to": "EUR", "rate": "0.2325581395", "date": "2026-04-17", "source": "ECB"})
    _foreign_invoice(db, "PLN-2", "PLN", "430.00", date(2026, 5, 20))
    _foreign_invoice(db, "USD-1", "USD", "50.00", date(2026, 6, 1))
    with db.transaction() as s:  # the latest rate before the day, and an older one that must not be used
        s.add(ExchangeRate(day=date(2026, 7, 8), base="EUR", quote="PLN", rate=Decimal("4.30"), source="ECB"))
        s.add(ExchangeRate(day=date(2026, 7, 1), base="EUR", quote="PLN", rate=Decimal("4.00"), source="ECB"))


def test_receivables_aging_totals_in_the_reporting_currency(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    _aging_with_pln(db)
    rows = _json("receivables", "aging", "--as-of", "2026-07-10")
    by = {(r["advertiser_id"], r["currency"]): r for r in rows}
    # per currency as before; each row also in EUR (the legal entity's currency: no REPORTING_CURRENCY set)
    assert by[("adv-2", "PLN")]["d1_30"] == "430.00" and by[("adv-2", "PLN")]["d31_60"] == "1000.00"
    # PLN-1 at its locked rate: 1000 × 0.2325581395 = 232.56; PLN-2 at the latest rate (4.30, 07-08): 100.00
    assert by[("adv-2", "PLN")]["reporting"] == {"currency": "EUR", "current": "0.00", "d1_30": "100.00",
                                                 "d31_60": "232.56", "d61_90": "0.00", "d90_plus": "0.00",
                                                 "total": "332.56"}
    assert by[("adv-1", "EUR")]["reporting"]["total"] == "100.00"
    assert by[("adv-2", "USD")]["reporting"] is None  # no USD rate: not converted, and said so
    total = rows[-1]
    assert total["advertiser_id"] is None and total["currency"] == "EUR"
    assert (total["current"], total["d1_30"], total["d31_60"], total["total"]) == ("100.00", "100.00", "232.56",
                                                                                   "432.56")
    assert total["unconverted"] == ["USD"]

    # REPORTING_CURRENCY=PLN: EUR at the latest rate (100 × 4.30), PLN as it is
    from storage.settings import get_settings

    monkeypatch.setenv("REPORTING_CURRENCY", "pln")
    get_settings.cache_clear()
    total = _json("receivables", "aging", "--as-of", "2026-07-10")[-1]
    assert (total["currency"], total["current"], total["d1_30"], total["d31_60"], total["total"]) == (
        "PLN", "430.00", "430.00", "1000.00", "1860.00")


def test_digest_aging_section_has_the_reporting_currency_total(db: Database) -> None:
    from bot.blocks.digest import receivables_block
    from bot.workflows.digest import collect

    _aging_with_pln(db)
    with db.read() as s:
        data = collect(s, now=utc(2026, 7, 10, 8))
    assert data.aging_reporting is not None and data.aging_reporting.total == Decimal("432.56")
    text = receivables_block(data).text.text
    assert "*PLN* current: 0.00 PLN" in text
    assert "*All in EUR* (without USD: no rate)" in text and "total 432.56 EUR" in text
