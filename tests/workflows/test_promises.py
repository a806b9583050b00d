"""Promises to pay from the CLI: record, list, fulfil / break / cancel — audited, role-checked, each
resolved once; an open promise holds dunning until its date, a resolved one releases it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import time_machine
from sqlalchemy import func, select
from typer.testing import CliRunner

from billing.payments import creditor_reference
from bot.cli import app
from bot.workflows import payments as wf
from storage.db import Database
from storage.models import AuditLog, InvoiceHold
from tests.factories import OPERATOR, add_user, base, invoice, utc

runner = CliRunner()
BANK = Path(__file__).resolve().parents[1] / "fixtures" / "bank"
CASHIER = "UCASH"


def _cli(*args: str, ok: bool = True) -> Any:
    r = runner.invoke(app, list(args))
    if ok:
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout) if "--json" in args else r.stdout
    assert r.exit_code != 0, r.output
    return r.stderr


def _audits(db: Database, action: str) -> int:
    with db.read() as s:
        return int(s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.action == action)).scalar_one())


def _letters_on(day: date) -> list[str]:
    with time_machine.travel(utc(day.year, day.month, day.day, 7), tick=False):
        return [x["invoice"] for x in _cli("dunning", "run", "--dry-run", "--json")]


def test_promise_lifecycle_from_the_cli(db: Database, key: Any, tmp_path: Path) -> None:
    base(db)
    add_user(db, CASHIER, ["cash_applier"])
    add_user(db, OPERATOR, ["operator"])
    for n in ("INV-2026-000001", "INV-2026-000002", "INV-2026-000003"):  # due 2026-03-31
        invoice(db, number=n, created_at=utc(2026, 3, 1, 9), gross="1000.00", advertiser="adv-2")

    with time_machine.travel(utc(2026, 4, 5, 9), tick=False):
        one = _cli("receivables", "promise", "add", "INV-2026-000001", "--until", "2026-04-30",
                   "--reason", "Mr Süd on the phone: pays on the 30th", "--as", CASHIER, "--json")
        assert (one["invoice"], one["until"], one["state"], one["open_amount"], one["lapsed"]) == (
            "INV-2026-000001", "2026-04-30", "open", "1000.00", False)
        two = _cli("receivables", "promise", "add", "INV-2026-000002", "--until", "2026-04-20", "--reason", "mail",
                   "--as", CASHIER, "--json")
        three = _cli("receivables", "promise", "add", "INV-2026-000003", "--until", "2026-04-20", "--reason", "mail",
                     "--as", CASHIER, "--json")
        # bad input and unknown people are refused, naming what is wrong
        assert "in the past" in _cli("receivables", "promise", "add", "INV-2026-000003", "--until", "2026-04-01",
                                     "--reason", "x", "--as", CASHIER, ok=False)
        assert "--until: not a date" in _cli("receivables", "promise", "add", "INV-2026-000003", "--until", "soon",
                                             "--reason", "x", "--as", CASHIER, ok=False)
        assert "role" in _cli("receivables", "promise", "add", "INV-2026-000003", "--until", "2026-04-20",
                              "--reason", "x", "--as", OPERATOR, ok=False)

    # held: due + 8 and no letter for any of the three
    assert _letters_on(date(2026, 4, 8)) == []

    with time_machine.travel(utc(2026, 4, 9, 9), tick=False):
        # not paid yet: "fulfil" is refused with what is open
        err = _cli("receivables", "promise", "fulfil", str(one["id"]), "--reason", "paid?", "--as", CASHIER, ok=False)
        assert "still has 1000.00 EUR open" in err
        # broken: the hold is released at once, and a second resolution is refused
        broken = _cli("receivables", "promise", "break", str(one["id"]), "--reason", "no payment, no answer",
                      "--as", CASHIER, "--json")
        assert broken["state"] == "broken"
        assert "already broken" in _cli("receivables", "promise", "cancel", str(one["id"]), "--reason", "x",
                                        "--as", CASHIER, ok=False)
        assert "role" in _cli("receivables", "promise", "cancel", str(two["id"]), "--reason", "x", "--as", OPERATOR,
                              ok=False)
        cancelled = _cli("receivables", "promise", "cancel", str(two["id"]), "--reason", "recorded on the wrong invoice",
                         "--as", CASHIER, "--json")
        assert cancelled["state"] == "cancelled"
    assert _letters_on(date(2026, 4, 9)) == ["INV-2026-000001", "INV-2026-000002"]  # INV-3 still promised

    # INV-3 is paid (by reference, 1000.00): its promise is fulfilled
    (tmp_path / "paid.xml").write_text((BANK / "camt053_v08.xml").read_text().replace("1190.00", "1000.00")
                                       .replace("RF94INV2026000001", creditor_reference("INV-2026-000003")))
    wf.import_statement(db, tmp_path / "paid.xml", actor="system", key=key)
    with time_machine.travel(utc(2026, 4, 12, 9), tick=False):
        kept = _cli("receivables", "promise", "fulfil", str(three["id"]), "--reason", "paid on 04-10", "--as", CASHIER,
                    "--json")
        assert (kept["state"], kept["open_amount"]) == ("fulfilled", "0.00")
        listed = _cli("receivables", "promise", "list", "--json")
        assert [(p["invoice"], p["state"]) for p in listed] == [
            ("INV-2026-000003", "fulfilled"), ("INV-2026-000002", "cancelled"), ("INV-2026-000001", "broken")]
        assert _cli("receivables", "promise", "list", "--state", "open", "--json") == []
        assert "state: must be one of" in _cli("receivables", "promise", "list", "--state", "kept", ok=False)

    assert (_audits(db, "invoice.promise"), _audits(db, "promise.broken"), _audits(db, "promise.cancelled"),
            _audits(db, "promise.fulfilled")) == (3, 1, 1, 1)
    with db.read() as s:
        assert sorted(s.execute(select(InvoiceHold.state)).scalars()) == ["broken", "cancelled", "fulfilled"]


def test_an_open_promise_past_its_date_is_listed_as_lapsed(db: Database, key: Any) -> None:
    base(db)
    add_user(db, CASHIER, ["cash_applier"])
    invoice(db, number="INV-2026-000001", created_at=utc(2026, 3, 1, 9), gross="500.00", advertiser="adv-1")
    with time_machine.travel(utc(2026, 4, 1, 9), tick=False):
        _cli("receivables", "promise", "add", "INV-2026-000001", "--until", "2026-04-10", "--reason", "call",
             "--as", CASHIER)
    with time_machine.travel(utc(2026, 4, 11, 9), tick=False):
        [p] = _cli("receivables", "promise", "list", "--json")
    assert (p["state"], p["lapsed"]) == ("open", True)
