"""Controls that hold (issue 14): approvals bound to what was approved, one identity on every
surface, maker-checker on manual changes — driven through the real WSGI app and the real CLI."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from bot.cli import app
from storage.models import PreInvoice
from tests import factories as f
from tests.slack.helpers import audit_actions, click, decisions, ephemerals, message_of

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
