"""Dunning: the clock moves past due + 7, + 21 and + 35 days; each open invoice gets exactly one letter
per level, a paid or disputed one none, a promised one none until the promise passes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import time_machine
from pypdf import PdfReader
from typer.testing import CliRunner

from billing.errors import NotAllowed
from bot.cli import app
from bot.workflows import dunning as dn
from bot.workflows import payments as wf
from storage.db import Database
from storage.models import LegalEntity
from tests.factories import OPERATOR, add_user, base, invoice, utc

runner = CliRunner()
BANK = Path(__file__).resolve().parents[1] / "fixtures" / "bank"


def _run(*args: str) -> list[dict[str, Any]]:
    r = runner.invoke(app, ["dunning", "run", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_one_letter_per_level_none_for_paid_or_disputed(db: Database, key: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLBOT_VAR_DIR", str(tmp_path / "var"))
    from bot import context
    context.reset()
    base(db)
    add_user(db, "UCASH", ["cash_applier"])
    add_user(db, OPERATOR, ["operator"])  # `dunning run` acts as a known operator (BILLBOT_USER)
    with db.transaction() as s:  # the legal entity's own rules: a fee from the first notice, interest at the last
        s.get(LegalEntity, "le-de").dunning = [
            {"level": 1, "name": "reminder", "days": 7},
            {"level": 2, "name": "first_notice", "days": 21, "fee": "5.00"},
            {"level": 3, "name": "final_notice", "days": 35, "fee": "10.00", "interest_rate": "12.27"}]
    # all issued 2026-03-01, due 2026-03-31
    for n, adv in (("INV-2026-000001", "adv-1"), ("INV-2026-000004", "adv-2"), ("INV-2026-000007", "adv-1"),
                   ("INV-2026-000008", "adv-2")):
        invoice(db, number=n, created_at=utc(2026, 3, 1, 9), gross="1000.00", advertiser=adv)
    # INV-1 is paid in full by reference
    (tmp_path / "paid.xml").write_text((BANK / "camt053_v08.xml").read_text().replace("1190.00", "1000.00"))
    wf.import_statement(db, tmp_path / "paid.xml", actor="system", key=key)
    dn.hold_invoice(db, number="INV-2026-000007", kind="dispute", reason="campaign under-delivered", actor="UCASH",
                    key=key)
    dn.hold_invoice(db, number="INV-2026-000008", kind="promise", until=date(2026, 4, 25), reason="pays on the 25th",
                    actor="UCASH", key=key)
    with pytest.raises(NotAllowed):
        dn.hold_invoice(db, number="INV-2026-000008", kind="dispute", reason="x", actor="UNKNOWN", key=key)

    def at(day: date) -> list[tuple[str, int, str]]:
        with time_machine.travel(utc(day.year, day.month, day.day, 7), tick=False):
            return [(x["invoice"], x["level"], x["total"]) for x in _run()]

    assert at(date(2026, 4, 6)) == []  # due + 6
    assert at(date(2026, 4, 7)) == [("INV-2026-000004", 1, "1000.00")]  # due + 7
    assert at(date(2026, 4, 8)) == []  # nothing twice
    assert at(date(2026, 4, 21)) == [("INV-2026-000004", 2, "1005.00")]  # due + 21, INV-8 still promised
    assert at(date(2026, 4, 26)) == [("INV-2026-000008", 2, "1005.00")]  # the promise passed: straight to level 2
    # due + 35: 1000.00 × 12.27 % × 35 / 365 = 11.77 interest
    assert at(date(2026, 5, 5)) == [("INV-2026-000004", 3, "1021.77"), ("INV-2026-000008", 3, "1021.77")]
    assert at(date(2026, 6, 30)) == []

    states = {v.reference: v.payment_state for v in wf.invoice_payments(db, today=date(2026, 6, 30)).values()}
    assert sorted(states.values()) == ["disputed", "overdue", "overdue", "paid"]
    pdf = tmp_path / "var" / "dunning" / "INV-2026-000004-L3.pdf"
    text = PdfReader(str(pdf)).pages[0].extract_text()
    assert "Final notice" in text and "INV-2026-000004" in text and "1,021.77 EUR" in text
    assert "RF" in text  # the payment reference the customer quotes


def test_dry_run_writes_nothing(db: Database, key: Any) -> None:
    base(db)
    invoice(db, number="INV-2026-000004", created_at=utc(2026, 3, 1, 9), gross="100.00", advertiser="adv-2")
    with time_machine.travel(utc(2026, 4, 8, 7), tick=False):
        assert [(x["invoice"], x["level"], x["id"]) for x in _run("--dry-run")] == [("INV-2026-000004", 1, None)]
        assert [x["level"] for x in _run("--dry-run")] == [1]
