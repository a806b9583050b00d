"""Controls that hold (issue 14): approvals bound to what was approved, one identity on every
surface, maker-checker on manual changes — driven through the real WSGI app and the real CLI."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from bot.cli import app
from storage.models import PreInvoice
from tests import factories as f
from tests.slack.helpers import audit_actions, click, decisions, ephemerals, message_of, submit_reason

runner = CliRunner()


def _variance(world: Any, **kw: Any) -> tuple[int, int]:
    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid, **kw)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    return pid, eid


def _cli(*args: str) -> Any:
    r = runner.invoke(app, list(args))
    return r


def _thread_texts(world: Any, eid: int) -> list[str]:
    return [r["text"] for r in message_of(world, eid)["replies"]]


def test_an_edit_between_two_approvals_resets_them_and_two_people_must_approve_the_new_content(world):
    pid, eid = _variance(world, amount="12000.00")
    click(world, f.APPROVER, eid, "approve")  # approval 1 of 2, of the old content
    row = f.exception_row(world.db, eid)
    assert row.state == "pending" and len(row.approvals) == 1
    # a 9,000 EUR line from the CLI, by an operator
    r = _cli("preinvoices", "add-line", str(pid), "--kind", "bonus", "--description", "Year-end bonus",
             "--amount", "9000.00", "--as", f.OPERATOR)
    assert r.exit_code == 0, r.output
    world.wait()
    row = f.exception_row(world.db, eid)
    assert row.state == "pending" and row.approvals == []  # 0 valid approvals after the edit
    [reset] = audit_actions(world, "exception.approvals_reset")
    assert f.APPROVER in reset.payload
    assert any("Approvals reset: the pre-invoice changed after" in t for t in _thread_texts(world, eid))
    # one approval of the new content is not enough
    click(world, f.APPROVER2, eid, "approve")
    row = f.exception_row(world.db, eid)
    assert row.state == "pending" and [a["user"] for a in row.approvals] == [f.APPROVER2]
    # the first approver approves the NEW content: two different people, final
    click(world, f.APPROVER, eid, "approve")
    row = f.exception_row(world.db, eid)
    assert row.state == "approved"
    assert {a["user"] for a in row.approvals} == {f.APPROVER, f.APPROVER2}
    with world.db.read() as s:
        pi = s.get(PreInvoice, pid)
        assert pi is not None and any(ln.description == "Year-end bonus" for ln in pi.lines)
    assert [d.actor_id for d in decisions(world, eid)] == [f.APPROVER, f.APPROVER2, f.APPROVER]


def test_an_approver_may_not_complete_the_same_exception_by_force(world):
    f.add_user(world.db, f.APPROVER, ["finance_manager"])  # an approver who is also a finance manager
    _pid, eid = _variance(world, amount="12000.00")
    click(world, f.APPROVER, eid, "approve")
    click(world, f.APPROVER, eid, "force")
    assert "someone else must complete it" in ephemerals(world, f.APPROVER)[-1]
    assert f.exception_row(world.db, eid).state == "pending"
    assert len(decisions(world, eid)) == 1


# --------------------------------------------------------------------------- one identity


def test_cli_edits_without_an_identity_are_refused_and_read_only_commands_stay_open(world, monkeypatch):
    pid, _eid = _variance(world)
    monkeypatch.delenv("BILLBOT_USER")
    r = _cli("preinvoices", "add-line", str(pid), "--description", "x", "--amount", "10.00")
    assert r.exit_code == 1 and "--as U" in r.output and "BILLBOT_USER" in r.output
    r = _cli("preinvoices", "add-line", str(pid), "--description", "x", "--amount", "10.00", "--as", "U999NOBODY")
    assert r.exit_code == 1 and "no such billbot user" in r.output
    r = _cli("preinvoices", "add-line", str(pid), "--description", "x", "--amount", "10.00", "--as", f.APPROVER)
    assert r.exit_code == 1 and "needs the admin or operator role" in r.output
    with world.db.read() as s:
        pi = s.get(PreInvoice, pid)
        assert pi is not None and len(pi.lines) == 1  # nothing was written
    assert _cli("preinvoices", "show", str(pid), "--json").exit_code == 0  # read-only: open


def test_an_editor_on_the_cli_cannot_approve_in_slack_even_after_someone_else_edits(world):
    f.add_user(world.db, f.APPROVER2, ["operator"])  # an approver with a shell
    pid, eid = _variance(world)
    with world.db.read() as s:
        line_id = s.get(PreInvoice, pid).lines[0].id
    r = _cli("preinvoices", "edit-line", str(pid), str(line_id), "--description", "Search ads (corrected)",
             "--as", f.APPROVER2)
    assert r.exit_code == 0, r.output
    r = _cli("preinvoices", "add-line", str(pid), "--description", "Setup fee", "--amount", "50.00",
             "--as", f.OPERATOR)  # the last editor is now someone else
    assert r.exit_code == 0, r.output
    world.wait()
    [edit] = [a for a in audit_actions(world, "preinvoice.line_edited")]
    assert edit.actor == f.APPROVER2  # the audit log carries the user, not a shell account
    click(world, f.APPROVER2, eid, "approve")
    assert "You edited this pre-invoice" in ephemerals(world, f.APPROVER2)[-1]
    assert f.exception_row(world.db, eid).state == "pending"


def test_cli_decisions_take_the_same_workflow_and_rules_as_a_click(world):
    _pid, eid = _variance(world, amount="12000.00")
    r = _cli("exceptions", "approve", str(eid), "--as", f.OPERATOR)  # no approver role: refused, audited
    assert r.exit_code == 1 and "Approve needs an approver: " in r.output
    assert len(audit_actions(world, "decision.refused")) == 1
    r = _cli("exceptions", "approve", str(eid), "--as", f.APPROVER, "--json")
    assert r.exit_code == 0, r.output
    assert '"approvals": 1' in r.output and '"final": false' in r.output
    world.wait()
    assert any("Approval 1 of 2" in t for t in _thread_texts(world, eid))  # Slack told after commit
    r = _cli("exceptions", "approve", str(eid), "--as", f.APPROVER)  # the same person again
    assert r.exit_code == 1 and "a second, different approver is needed" in r.output
    r = _cli("exceptions", "reject", str(eid), "--as", f.APPROVER2)
    assert r.exit_code == 2 and "reason" in r.output
    r = _cli("exceptions", "approve", str(eid), "--as", f.APPROVER2, "--subject", "0" * 64)
    assert r.exit_code == 1 and "out of date" in r.output
    click(world, f.APPROVER2, eid, "approve")
    assert f.exception_row(world.db, eid).state == "approved"
    assert [d.actor_id for d in decisions(world, eid)] == [f.APPROVER, f.APPROVER2]


# --------------------------------------------------------------------------- maker-checker


def _line(world: Any, pid: int) -> int:
    with world.db.read() as s:
        pi = s.get(PreInvoice, pid)
        assert pi is not None
        return int(pi.lines[0].id)


def _manual_change(world: Any, pid: int) -> Any:
    from sqlalchemy import select

    from storage.models import BillingException

    with world.db.read() as s:
        row = s.execute(select(BillingException).where(BillingException.kind == "manual_change",
                                                       BillingException.preinvoice_id == pid)).scalar_one()
        s.expunge(row)
        return row


def test_editing_a_system_approved_preinvoice_waits_for_a_checker_with_the_diff_in_slack(world):
    pid = f.preinvoice(world.db, state="approved")
    r = _cli("preinvoices", "edit-line", str(pid), str(_line(world, pid)), "--unit-price", "2500",
             "--as", f.OPERATOR)
    assert r.exit_code == 0, r.output
    world.wait()
    pi = _preinvoice(world, pid)
    assert pi.state == "pending" and pi.approved_by is None  # no longer "approved by system"
    exc = _manual_change(world, pid)
    assert exc.state == "pending" and exc.started_by == f.OPERATOR
    assert exc.evidence["net_before"] == "3000.00" and exc.evidence["net_after"] == "2500.00"
    text = str(message_of(world, exc.id)["blocks"])
    assert "3,000.00" in text and "2,500.00" in text and "unit_price: 3000" in text  # the diff, in Slack
    assert {k for k in _buttons(world, exc.id) if k.startswith("decide_")} == {"decide_approve",
                                                                               "decide_reject"}  # never forced
    click(world, f.OPERATOR, exc.id, "approve")  # the maker is no checker
    assert _manual_change(world, pid).state == "pending"
    click(world, f.APPROVER, exc.id, "approve")
    assert _manual_change(world, pid).state == "approved"
    pi = _preinvoice(world, pid)
    assert (pi.state, pi.approved_by) == ("approved", f.APPROVER)


def test_a_bonus_line_or_an_edit_after_a_reject_needs_a_checker_too(world):
    pid = f.preinvoice(world.db, state="approved")
    r = _cli("preinvoices", "add-line", str(pid), "--kind", "bonus", "--description", "Bonus", "--amount", "500",
             "--as", f.OPERATOR)
    assert r.exit_code == 0, r.output
    world.wait()
    exc = _manual_change(world, pid)
    click(world, f.APPROVER, exc.id, "reject")
    submit_reason(world, f.APPROVER, "bonus not agreed")
    pi = _preinvoice(world, pid)
    assert pi.state == "held"
    # editing the rejected pre-invoice no longer approves it by itself
    r = _cli("preinvoices", "edit-line", str(pid), str(_line(world, pid)), "--description", "Search ads",
             "--as", f.OPERATOR)
    assert r.exit_code == 0, r.output
    world.wait()
    assert _preinvoice(world, pid).state == "pending"
    assert _manual_change(world, pid).state == "pending"  # reopened for the new content


def _preinvoice(world: Any, pid: int) -> PreInvoice:
    with world.db.read() as s:
        pi = s.get(PreInvoice, pid)
        assert pi is not None
        s.expunge(pi)
        return pi


def _buttons(world: Any, eid: int) -> dict[str, str]:
    from tests.slack.helpers import buttons

    return buttons(message_of(world, eid)["blocks"])
