"""Review controls (issue 21): checklists against rubber-stamping, approver routing by scope and
amount, reminders with backoff and a per-rule timeout outcome.

The rules come in through the scenario format (``checklists:``, ``routing:``), loaded by the real
loader; clicks are signed HTTP requests to the real app, Slack is the fake Web API.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from billing.errors import Invalid
from bot.slack.sla import sweep
from bot.workflows.decisions import Refused, decide, subject_hash_of
from bot.workflows.integrity import check_rows
from storage.loader import load_scenario
from storage.models import AuditLog, BillingException, PreInvoice
from tests import factories as f
from tests.slack.helpers import audit_actions, buttons, click, decisions, ephemerals, message_of

ITEMS = ["Checked the third-party report for the same days", "Make-good agreed with the client?"]
LEADS = "S0LEADS"


def _load(db: Any, **sections: Any) -> None:
    load_scenario(db, sections)


def _variance(world: Any, *, amount: str = "900.00", name: str = "x") -> tuple[int, int]:
    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid, amount=amount, name=name)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    return pid, eid


def _checkboxes(*numbers: int) -> dict[str, Any]:
    return {"type": "checkboxes", "selected_options": [
        {"value": str(n), "text": {"type": "plain_text", "text": ITEMS[n - 1]}} for n in numbers]}


def _modal(world: Any) -> dict[str, Any]:
    opened = [c for c in world.api.calls_to("views.open") if c["view"].get("callback_id") == "decision_reason"]
    assert opened, "no decision modal was opened"
    view: dict[str, Any] = opened[-1]["view"]
    return view


# --------------------------------------------------------------------------- 1. checklists


def test_scenario_checklist_turns_approve_into_a_modal_refused_until_every_item_is_ticked(world):
    _load(world.db, checklists=[{"kind": "variance", "items": ITEMS},
                                {"kind": "variance", "cause": "other_cause", "items": ["Not for this one"]}])
    pid, eid = _variance(world)
    approve = next(e for b in message_of(world, eid)["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == "decide_approve")
    assert "confirm" not in approve  # the modal is the confirmation

    click(world, f.APPROVER, eid, "approve")
    view = _modal(world)
    [box] = [b for b in view["blocks"] if b.get("block_id") == "checklist"]
    assert [o["text"]["text"] for o in box["element"]["options"]] == ITEMS  # the cause's own list is not shown
    assert not [b for b in view["blocks"] if b.get("block_id") == "reason"]  # Approve needs no reason

    # one of two ticked: the modal stays open, naming the missing item; nothing is decided
    r = world.as_user(f.APPROVER).submit_view(view, {"checklist": {"checklist_input": _checkboxes(1)}})
    world.wait()
    body = r.json()
    assert body["response_action"] == "errors"
    assert "Make-good agreed with the client?" in body["errors"]["checklist"]
    assert ITEMS[0] not in body["errors"]["checklist"]
    assert f.exception_row(world.db, eid).state == "pending" and decisions(world, eid) == []

    # all ticked: approved, and the signed record lists the ticked items
    r = world.as_user(f.APPROVER).submit_view(view, {"checklist": {"checklist_input": _checkboxes(1, 2)}})
    world.wait()
    assert r.status == 200
    row = f.exception_row(world.db, eid)
    assert (row.state, row.decided_by) == ("approved", f.APPROVER)
    with world.db.read() as s:
        assert s.get(PreInvoice, pid).state == "approved"
    [entry] = audit_actions(world, "decision.recorded")
    payload = json.loads(entry.payload)
    assert payload["checklist"] == [{"item": ITEMS[0], "checked": True}, {"item": ITEMS[1], "checked": True}]
    assert entry.signature
    [reply] = message_of(world, eid)["replies"]
    assert "Checklist:" in reply["text"] and all(it in reply["text"] for it in ITEMS)


def test_force_modal_shows_the_checklist_with_the_reason_and_the_workflow_checks_again(world):
    _load(world.db, checklists=[{"kind": "variance", "items": ITEMS}])
    _pid, eid = _variance(world)
    click(world, f.MANAGER, eid, "force")
    view = _modal(world)
    assert {b.get("block_id") for b in view["blocks"]} >= {"checklist", "reason"}
    r = world.as_user(f.MANAGER).submit_view(view, {"reason": {"reason_input": "client confirmed the booking"}})
    world.wait()
    assert r.json()["response_action"] == "errors" and ITEMS[0] in r.json()["errors"]["checklist"]

    # the CLI / any caller of the workflow: the same rule, named items
    with world.db.read() as s:
        digest = subject_hash_of(s.get(BillingException, eid))
    with pytest.raises(Invalid) as err:
        decide(world.db, exception_id=eid, decision="force", actor=f.MANAGER, subject_hash=digest,
               reason="client confirmed", signing_key=world.key, checked=["1"])
    assert err.value.code == "checklist_incomplete" and ITEMS[1] in err.value.message
    out = decide(world.db, exception_id=eid, decision="force", actor=f.MANAGER, subject_hash=digest,
                 reason="client confirmed", signing_key=world.key, checked=[ITEMS[0], "2"])
    assert out.final
    payload = json.loads(audit_actions(world, "decision.recorded")[-1].payload)
    assert [c["item"] for c in payload["checklist"]] == ITEMS


def test_without_checklists_approve_stays_one_click(world):
    _pid, eid = _variance(world)
    assert f.exception_row(world.db, eid).review is None
    click(world, f.APPROVER, eid, "approve")
    assert f.exception_row(world.db, eid).state == "approved"
    assert not [c for c in world.api.calls_to("views.open") if c["view"].get("callback_id") == "decision_reason"]
    assert "checklist" not in json.loads(audit_actions(world, "decision.recorded")[0].payload)


def test_cli_approve_ticks_the_checklist_with_check(world):
    from typer.testing import CliRunner

    import bot.cli.exceptions_cmds  # noqa: F401  (registers the commands)
    from bot.cli.groups import app

    _load(world.db, checklists=[{"kind": "variance", "items": ITEMS}])
    _pid, eid = _variance(world)
    runner = CliRunner()
    shown = json.loads(runner.invoke(app, ["exceptions", "show", str(eid), "--json"]).stdout)
    assert shown["review"]["checklist"]["approve"] == ITEMS
    r = runner.invoke(app, ["exceptions", "approve", str(eid), "--as", f.APPROVER, "--check", "1"])
    assert r.exit_code == 2 and "Make-good agreed with the client?" in r.output
    assert f.exception_row(world.db, eid).state == "pending"
    r = runner.invoke(app, ["exceptions", "approve", str(eid), "--as", f.APPROVER, "--check", "1",
                            "--check", ITEMS[1]])
    assert r.exit_code == 0, r.output
    assert f.exception_row(world.db, eid).state == "approved"


# --------------------------------------------------------------------------- 4. routing


ROUTE_X = {"id": "elbe-large", "advertiser": f.ADV, "min_amount": "5000.00", "approvals": 2,
           "approvers": {"group": LEADS, "name": "finance-leads", "users": [f.APPROVER, f.APPROVER2]}}


def test_routing_rule_sends_large_exceptions_of_an_advertiser_to_a_group_with_two_approvals(world):
    _load(world.db, routing=[ROUTE_X])
    pid, eid = _variance(world, amount="6000.00")
    row = f.exception_row(world.db, eid)
    assert row.approvals_needed == 2 and row.review["rule"] == "elbe-large"
    msg = message_of(world, eid)
    assert f"<!subteam^{LEADS}>" in json.dumps(msg["blocks"])  # the message mentions the group

    # a finance manager outside the group is refused, told who may decide; audited as a refusal
    click(world, f.MANAGER, eid, "approve")
    [told] = ephemerals(world, f.MANAGER)
    assert f"<!subteam^{LEADS}>" in told and "finance-leads" in told and "elbe-large" in told
    assert f.exception_row(world.db, eid).approvals == []
    [refusal] = audit_actions(world, "decision.refused")
    assert json.loads(refusal.payload)["code"] == "not_in_approver_group"

    # two members finalize
    click(world, f.APPROVER, eid, "approve")
    assert f.exception_row(world.db, eid).state == "pending"
    click(world, f.APPROVER2, eid, "approve")
    row = f.exception_row(world.db, eid)
    assert row.state == "approved" and [a["user"] for a in row.approvals] == [f.APPROVER, f.APPROVER2]
    with world.db.read() as s:
        assert s.get(PreInvoice, pid).state == "approved"
    final = json.loads(audit_actions(world, "decision.recorded")[-1].payload)
    assert final["rule"] == "elbe-large" and final["approver_group"]["group"] == LEADS


def test_below_the_rule_amount_the_default_rule_applies(world, monkeypatch):
    monkeypatch.setenv("TWO_APPROVER_AMOUNT", "10000.00")
    _load(world.db, routing=[ROUTE_X])
    _pid, eid = _variance(world, amount="4999.99")
    row = f.exception_row(world.db, eid)
    assert row.review is None and row.approvals_needed == 1
    click(world, f.MANAGER, eid, "approve")  # anyone with the approver role (finance_manager included)
    assert f.exception_row(world.db, eid).state == "approved"


def test_a_slack_user_group_without_listed_users_is_asked_from_slack(db, key):
    f.seed(db)
    _load(db, routing=[{"id": "leads", "approvers": {"group": LEADS}}])
    pid = f.preinvoice(db)
    eid = f.open_exception(db, key, preinvoice_id=pid)
    with db.read() as s:
        digest = subject_hash_of(s.get(BillingException, eid))
    asked: list[str] = []

    def members(group: str) -> list[str]:
        asked.append(group)
        return [f.APPROVER2]

    with pytest.raises(Refused) as err:
        decide(db, exception_id=eid, decision="approve", actor=f.APPROVER, subject_hash=digest, signing_key=key,
               group_lookup=members)
    assert f"<!subteam^{LEADS}>" in err.value.message and asked == [LEADS]
    with pytest.raises(Refused, match="could not be looked up"):  # no way to ask Slack: nobody is let through
        decide(db, exception_id=eid, decision="approve", actor=f.APPROVER2, subject_hash=digest, signing_key=key)
    assert decide(db, exception_id=eid, decision="approve", actor=f.APPROVER2, subject_hash=digest,
                  signing_key=key, group_lookup=members).final


def test_a_slack_user_group_is_looked_up_with_usergroups_users_list_on_a_click(world):
    _load(world.db, routing=[{"id": "leads", "approvers": {"group": LEADS, "name": "finance-leads"}}])
    world.api.usergroups[LEADS] = [f.APPROVER]  # the sandbox's Web API answers usergroups.users.list
    _pid, eid = _variance(world)
    click(world, f.APPROVER2, eid, "approve")
    assert f"Only <!subteam^{LEADS}> (@finance-leads) may decide this" in ephemerals(world, f.APPROVER2)[-1]
    world.api.fail["usergroups.users.list"] = "ratelimited"  # Slack cannot confirm: nobody is let through
    click(world, f.APPROVER, eid, "approve")
    assert "could not be looked up" in ephemerals(world, f.APPROVER)[-1]
    assert f.exception_row(world.db, eid).state == "pending"
    del world.api.fail["usergroups.users.list"]
    click(world, f.APPROVER, eid, "approve")
    assert f.exception_row(world.db, eid).state == "approved"
    assert [c.params["usergroup"] for c in world.api.calls_to("usergroups.users.list")] == [LEADS] * 3


def test_the_home_queue_lists_a_routed_exception_for_its_group_only(db, key):
    from bot.workflows.decisions import queue_for
    from storage.models import User

    f.seed(db)
    _load(db, routing=[{**ROUTE_X, "approvers": {"users": [f.APPROVER]}},
                       {"id": "slack-group", "max_amount": "100.00", "approvers": {"group": LEADS}}])
    routed = f.open_exception(db, key, preinvoice_id=f.preinvoice(db), amount="6000.00", name="big")
    grouped = f.open_exception(db, key, preinvoice_id=f.preinvoice(db, month=3), amount="50.00", name="small")
    with db.read() as s:
        def queue(uid: str) -> list[int]:
            return [e.id for e in queue_for(s, s.get(User, uid))]

        assert queue(f.APPROVER) == [routed, grouped]
        assert queue(f.APPROVER2) == [grouped]  # outside the listed users; a Slack group is checked at the click
        assert queue(f.MANAGER) == [routed, grouped]  # Force stays the finance managers' override


def test_routing_rules_are_validated_with_their_path(db):
    f.seed(db)
    with pytest.raises(Invalid) as err:
        _load(db, routing=[{"id": "r1", "advertiser": "nope", "approvers": {}},
                           {"id": "r2", "sla": {"on_timeout": "auto_approve", "reminders": ["1.5"]}}])
    text = "\n".join(err.value.problems)
    assert "routing[0].approvers" in text and "routing[1].sla" in text


# --------------------------------------------------------------------------- 5. reminders and timeout


T0 = f.utc(2026, 3, 2, 9, 0)


def _reminders(db: Any) -> list[dict[str, Any]]:
    with db.read() as s:
        return [json.loads(a.payload) for a in s.execute(
            select(AuditLog).where(AuditLog.action == "exception.reminded").order_by(AuditLog.id)).scalars()]


def test_reminders_with_backoff_then_every_n_hours_to_the_managers(db, key, slack, client):
    f.seed(db)
    _load(db, routing=[{"id": "std", "approvers": {"users": [f.APPROVER, f.APPROVER2]},
                        "sla": {"hours": "8", "reminders": ["0.5", "0.75", "1"], "repeat_hours": "4"}}])
    with time_machine.travel(T0, tick=False):
        eid = f.open_exception(db, key, preinvoice_id=f.preinvoice(db), started_by=f.OPERATOR)
    row = f.exception_row(db, eid)
    assert (row.remind_at, row.due_at) == (T0 + timedelta(hours=4), T0 + timedelta(hours=8))

    fired: list[tuple[int, list[int], list[int]]] = []
    for minutes in range(0, 16 * 60 + 1, 30):  # a sweep every half hour for 16 hours
        with time_machine.travel(T0 + timedelta(minutes=minutes), tick=False):
            res = sweep(db, client=client, key=key, managers_channel="billing-managers")
        if res.reminded or res.escalated:
            fired.append((minutes // 60, res.reminded, res.escalated))
    # 50 %, 75 %, 100 % of 8 h (with the escalation at 100 %), then every 4 h after expiry
    assert fired == [(4, [eid], []), (6, [eid], []), (8, [eid], [eid]), (12, [eid], []), (16, [eid], [])]
    plan = _reminders(db)
    assert [p["to"] for p in plan] == ["approvers", "approvers", "approvers", "managers", "managers"]
    assert all(p["rule"] == "std" for p in plan)
    # (the exception's message was never posted here, so the reminders go to the exceptions channel)
    threads = [c["text"] for c in slack.calls_to("chat.postMessage") if "waits for a decision" in c["text"]
               or "waiting for a decision" in c["text"]]
    assert len(threads) == 5
    assert f"<@{f.APPROVER}>" in threads[0] and f"<@{f.MANAGER}>" not in threads[0]
    assert f"<@{f.MANAGER}>" in threads[3] and "expired" in threads[3]


def test_auto_approve_timeout_for_small_variances_audited_as_the_system_with_the_rule(db, key, slack, client):
    f.seed(db)
    _load(db, routing=[
        {"id": "small-auto", "max_amount": "100.00",
         "sla": {"hours": "24", "reminders": ["0.5"], "on_timeout": "auto_approve", "auto_approve_below": "100.00"}},
        {"id": "rest", "sla": {"hours": "24", "on_timeout": "auto_approve", "auto_approve_below": "100.00"}},
    ])
    with time_machine.travel(T0, tick=False):
        small_pi = f.preinvoice(db)
        small = f.open_exception(db, key, preinvoice_id=small_pi, amount="80.00", name="small")
        big = f.open_exception(db, key, preinvoice_id=f.preinvoice(db, month=3), amount="900.00", name="big")

    with time_machine.travel(T0 + timedelta(hours=12, minutes=1), tick=False):
        res = sweep(db, client=client, key=key)
    assert sorted(res.reminded) == sorted([small, big]) and res.auto_approved == []

    with time_machine.travel(T0 + timedelta(hours=24, minutes=1), tick=False):
        res = sweep(db, client=client, key=key, managers_channel="billing-managers")
    assert res.auto_approved == [small]  # under the small amount: the system approves
    assert res.escalated == [big]  # above it, the same outcome escalates as usual
    row = f.exception_row(db, small)
    assert (row.state, row.decided_by, row.decision) == ("approved", "system", "approve")
    assert "small-auto" in row.reason
    with db.read() as s:
        assert s.get(PreInvoice, small_pi).state == "approved"
        [entry] = s.execute(select(AuditLog).where(AuditLog.action == "decision.recorded")).scalars()
    payload = json.loads(entry.payload)
    assert entry.actor == "system" and entry.signature
    assert (payload["outcome"], payload["rule"], payload["exception_id"]) == ("auto_approve", "small-auto", small)

    # later sweeps: nothing more for either
    with time_machine.travel(T0 + timedelta(hours=30), tick=False):
        res = sweep(db, client=client, key=key)
    assert (res.auto_approved, res.escalated) == ([], [])
    with db.read() as s:  # `audit verify`'s row check: the system's decision row matches its signed record
        problems = check_rows(s)  # (the factory's pre-invoices were written outside the workflows)
    assert [p for p in problems if "decision" in p] == []
    assert [p for p in problems if p.startswith(f"pre-invoice {small_pi}:")] == []


def test_exception_message_button_values_unchanged_by_routing(world):
    """The button still carries ``<id>:<subject sha256>`` — routing adds no field to the subject."""
    _load(world.db, routing=[ROUTE_X])
    _pid, eid = _variance(world, amount="6000.00")
    with world.db.read() as s:
        digest = subject_hash_of(s.get(BillingException, eid))
    assert buttons(message_of(world, eid)["blocks"])["decide_approve"] == f"{eid}:{digest}"
