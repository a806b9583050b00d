"""Issue 14: a credit note is requested, and numbered and issued only when a ``finance_manager`` other
than the requester approves it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from storage.db import Database
from storage.models import AuditLog, CreditNoteRequest, Invoice
from tests.factories import APPROVER, MANAGER, OPERATOR, add_user, advertiser, campaign, linear, load, scenario

pytestmark = pytest.mark.usefixtures("no_variance")

runner = CliRunner()
MANAGER2 = "U08FINANCE"


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def invoiced(db: Database, key: Any) -> None:
    add_user(db, OPERATOR, ["operator"])
    add_user(db, MANAGER, ["finance_manager"])
    add_user(db, MANAGER2, ["finance_manager"])
    add_user(db, APPROVER, ["approver"])
    load(db, scenario(advertisers=[advertiser("nord", "Autohaus Nord")],
                      campaigns=[campaign("cn", "nord", [linear("a", "1200.00", period="even"),
                                                         linear("b", "600.00", period="even")])]))
    assert _run("preinvoices", "create", "--period", "2026-02").exit_code == 0
    assert _run("run", "--period", "2026-02").exit_code == 0


def _credit_notes(db: Database) -> list[str]:
    with db.read() as s:
        return list(s.execute(select(Invoice.number).where(Invoice.kind == "credit_note")).scalars())


def test_the_requesters_own_approval_is_refused_another_finance_managers_issues_it(db: Database,
                                                                                  invoiced: None) -> None:
    r = _run("credit-note", "INV-2026-000001", "--reason", "wrong rate", "--as", MANAGER, "--json")
    assert r.exit_code == 0, r.output
    req = json.loads(r.stdout)
    assert (req["state"], req["amount"], req["requested_by"], req["credit_note"]) == ("pending", "-150.00",
                                                                                     MANAGER, None)
    assert _credit_notes(db) == []  # nothing numbered yet
    twice = _run("credit-note", "INV-2026-000001", "--reason", "again", "--as", OPERATOR)
    assert twice.exit_code == 1 and f"request #{req['id']} for INV-2026-000001 is still waiting" in twice.output

    own = _run("credit-note", "approve", str(req["id"]), "--as", MANAGER)
    assert own.exit_code == 1 and "you requested credit note" in own.output
    approver = _run("credit-note", "approve", str(req["id"]), "--as", APPROVER)
    assert approver.exit_code == 1 and "needs the finance_manager role" in approver.output
    assert _credit_notes(db) == []

    ok = _run("credit-note", "approve", str(req["id"]), "--as", MANAGER2, "--json")
    assert ok.exit_code == 0, ok.output
    cn = json.loads(ok.stdout)
    assert (cn["number"], cn["references"], cn["net"]) == ("CN-2026-000001", "INV-2026-000001", "-150.00")
    assert _credit_notes(db) == ["CN-2026-000001"]
    listed = json.loads(_run("credit-note", "list", "--json").stdout)
    assert [(x["id"], x["state"], x["decided_by"], x["credit_note"]) for x in listed] == [
        (req["id"], "approved", MANAGER2, "CN-2026-000001")]
    with db.read() as s:
        cn_row = s.execute(select(Invoice).where(Invoice.number == "CN-2026-000001")).scalar_one()
        assert [a.get("credit_note_by") or a.get("approved_by") for a in cn_row.approvals] == [MANAGER, MANAGER2]
        actions = list(s.execute(select(AuditLog.action).where(
            AuditLog.subject_type == "credit_note_request").order_by(AuditLog.id)).scalars())
    assert actions == ["credit_note.requested", "credit_note.approved"]
    again = _run("credit-note", "approve", str(req["id"]), "--as", MANAGER2)
    assert again.exit_code == 1 and "already approved" in again.output
    assert _run("audit", "verify").exit_code == 0


def test_a_rejected_request_issues_nothing_and_some_lines_can_be_requested(db: Database, invoiced: None) -> None:
    with db.read() as s:
        line = s.execute(select(Invoice).where(Invoice.number == "INV-2026-000001")).scalar_one().lines[1]
        line_id, amount = line.id, line.amount
    r = _run("credit-note", "INV-2026-000001", "--reason", "one line", "--line", str(line_id), "--json")
    assert r.exit_code == 0, r.output  # requested by the operator (BILLBOT_USER)
    req = json.loads(r.stdout)
    assert req["lines"] == [line_id] and req["amount"] == f"{-amount:.2f}"
    no_reason = _run("credit-note", "reject", str(req["id"]), "--reason", " ", "--as", MANAGER)
    assert no_reason.exit_code == 2 and "needs a reason" in no_reason.output
    assert _run("credit-note", "reject", str(req["id"]), "--reason", "not agreed", "--as", MANAGER).exit_code == 0
    assert _credit_notes(db) == []
    with db.read() as s:
        row = s.get(CreditNoteRequest, req["id"])
        assert row is not None and (row.state, row.decided_by, row.decision_reason) == ("rejected", MANAGER,
                                                                                        "not agreed")
    bad = _run("credit-note", "INV-2026-000001", "--reason", "x", "--line", "999999")
    assert bad.exit_code == 2 and "line 999999 is not on invoice INV-2026-000001" in bad.output
