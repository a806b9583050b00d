"""Deciding exceptions in Slack, end to end: signed HTTP requests to the real WSGI app, a fake Web API.

Every cell of the decision table (DESIGN.md):

| kind            | Approve                    | Reject                 | Force                        |
| variance        | bill the computed amount   | hold the pre-invoice   | bill the booked amount       |
| below_threshold | accept the skip (carry)    | withdraw the items     | invoice now, below threshold |

plus the rules around it: reasons, roles, separation of duties, two approvers, stale messages,
double clicks, Slack retries and signatures.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from billing.signatures import content_hash
from storage.models import PreInvoice
from tests import factories as f
from tests.slack.helpers import (
    audit_actions,
    buttons,
    click,
    decisions,
    ephemerals,
    message_of,
    spy_module,
    submit_reason,
)


def _preinvoice(world: Any, pid: int) -> PreInvoice:
    with world.db.read() as s:
        pi = s.get(PreInvoice, pid)
        assert pi is not None
        s.expunge(pi)
        return pi


def _variance(world: Any, **kw: Any) -> tuple[int, int]:
    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid, **kw)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    return pid, eid


def _below_threshold(world: Any, **kw: Any) -> tuple[int, int]:
    pid = f.preinvoice(world.db, net="180.00", state="approved")
    eid = f.open_exception(world.db, world.key, kind="below_threshold", preinvoice_id=pid, amount="180.00", **kw)
    return pid, eid


def _section_texts(blocks: list[dict[str, Any]]) -> str:
    out = []
    for b in blocks:
        if b.get("text"):
            out.append(b["text"]["text"])
        for fld in b.get("fields") or []:
            out.append(fld["text"])
        for e in b.get("elements") or []:
            if e.get("type") == "mrkdwn":
                out.append(e["text"])
    return "\n".join(out)


# --------------------------------------------------------------------------- the message


def test_exception_message_is_posted_once_with_buttons_sla_and_stored_ts(world):
    _pid, eid = _variance(world)
    row = f.exception_row(world.db, eid)
    msg = message_of(world, eid)
    blocks = msg["blocks"]
    assert row.channel == f.CHANNEL and row.message_ts == msg["ts"]
    assert len(blocks) <= 50
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Variance — Autohaus Elbe KG"}}
    text = _section_texts(blocks)
    # the finding leads, in words and figures: measured vs expected, the percentage, days as ranges, cause
    assert blocks[1]["text"]["text"].startswith("*2,100 units delivered vs 3,000 booked, −30 %* (tolerance 10 %)")
    assert "*Days:* 3–4 Feb (2 of 28 days)" in text and "*Cause:* under-delivery" in text
    # the money, each figure named for what it is
    assert "*Delivered / booked amount*\n2,100.00 EUR / 3,000.00 EUR" in text
    assert "*Difference (booked − delivered)*\n900.00 EUR" in text
    assert "Amount at stake" not in text and "_" not in text.replace("date_short_pretty", "")
    assert f"<!date^{int(row.due_at.timestamp())}^" in text  # each reader sees the SLA in their own zone
    actions = buttons(blocks)
    assert set(actions) == {"decide_approve", "decide_reject", "decide_force",
                            "exception_assign_me", "exception_assign"}  # owners (issue 21)
    assert all(v.startswith(f"{eid}:") and len(v.split(":")[1]) == 64
               for k, v in actions.items() if k.startswith("decide_"))
    decide_block = next(b for b in blocks if b["type"] == "actions")
    labels = {e["action_id"]: e["text"]["text"] for e in decide_block["elements"]}
    assert labels == {"decide_approve": "Bill 2,100.00 € (delivered)", "decide_reject": "Hold for correction",
                      "decide_force": "Bill 3,000.00 € (booked)"}
    # Approve is confirmed in a dialog; Reject and Force open the reason modal, which is their confirmation
    assert {e["action_id"] for e in decide_block["elements"] if "confirm" in e} == {"decide_approve"}
    assert len(world.api.calls_to("chat.postMessage")) == 1


def test_details_button_opens_a_modal_with_the_evidence(world):
    _pid, eid = _variance(world)
    row = f.exception_row(world.db, eid)
    world.as_user(f.APPROVER).click("exception_details", str(eid), channel=row.channel, message_ts=row.message_ts)
    world.wait()
    view = world.api.wait_for("views.open")[0]["view"]
    assert view["type"] == "modal" and view["title"]["text"] == f"Exception #{eid}"
    text = _section_texts(view["blocks"])
    # plain language: labelled figures with units, days as ranges, money with its currency, no codes
    assert "Days: 3–4 Feb (2 of 28 days)" in text and "*Delivered*\n2,100 units" in text
    assert "Tolerance: 10 %" in text and "*Difference (booked − delivered)*\n900.00 EUR" in text
    assert "Cause: under-delivery" in text and "under_delivery" not in text and "```{" not in text
    assert "Download evidence" in json.dumps(view["blocks"])


# --------------------------------------------------------------------------- variance


def test_variance_approve_bills_the_computed_amount_signed_and_updated_in_place(world):
    pid, eid = _variance(world)
    before_hash = buttons(message_of(world, eid)["blocks"])["decide_approve"].split(":")[1]
    r = click(world, f.APPROVER, eid, "approve")
    assert r.status == 200
    row = f.exception_row(world.db, eid)
    assert (row.state, row.decided_by, row.decision) == ("approved", f.APPROVER, "approve")
    assert _preinvoice(world, pid).state == "approved"
    [d] = decisions(world, eid)
    assert (d.actor_id, d.actor_name, d.actor_email) == (f.APPROVER, "Arne Approver", "arne@northwind.example")
    assert d.subject_hash == before_hash
    [entry] = audit_actions(world, "decision.recorded")
    payload = json.loads(entry.payload)
    assert payload["actor"] == {"id": f.APPROVER, "name": "Arne Approver", "email": "arne@northwind.example"}
    assert payload["decision"] == "approve" and payload["subject_sha256"] == before_hash
    assert payload["at"].endswith("+00:00") and entry.signature
    # in place: the buttons are gone, "Approved by @x at t" instead; and a threaded reply
    msg = message_of(world, eid)
    assert buttons(msg["blocks"]) == {}
    assert f"*Approved* by <@{f.APPROVER}> at <!date^" in _section_texts(msg["blocks"])
    [reply] = msg["replies"]
    assert reply["text"].startswith(f":white_check_mark: Approved by <@{f.APPROVER}>")
    assert "computed amount will be billed" in reply["text"]


def test_variance_reject_needs_a_reason_and_holds_the_preinvoice(world):
    pid, eid = _variance(world)
    click(world, f.APPROVER, eid, "reject")
    view = world.api.wait_for("views.open")[0]["view"]
    reason_block = next(b for b in view["blocks"] if b["type"] == "input")
    assert reason_block["block_id"] == "reason" and reason_block.get("optional") is False
    # an empty reason is refused by the server too, and nothing changes
    r = submit_reason(world, f.APPROVER, "  ")
    assert r.json()["response_action"] == "errors" and "reason" in r.json()["errors"]
    assert f.exception_row(world.db, eid).state == "pending"
    submit_reason(world, f.APPROVER, "Tracker gap on Feb 3-4; ops to re-import")
    row = f.exception_row(world.db, eid)
    assert (row.state, row.reason) == ("rejected", "Tracker gap on Feb 3-4; ops to re-import")
    pi = _preinvoice(world, pid)
    assert (pi.state, pi.hold_reason) == ("held", "Tracker gap on Feb 3-4; ops to re-import")
    text = _section_texts(message_of(world, eid)["blocks"])
    assert f"*Rejected* by <@{f.APPROVER}>" in text and "Tracker gap on Feb 3-4" in text


def test_variance_force_by_a_finance_manager_bills_the_booked_amount(world):
    pid, eid = _variance(world)
    click(world, f.MANAGER, eid, "force")
    submit_reason(world, f.MANAGER, "Client confirmed the booked volume in writing")
    row = f.exception_row(world.db, eid)
    assert (row.state, row.decided_by) == ("forced", f.MANAGER)
    pi = _preinvoice(world, pid)
    assert (pi.state, pi.approved_by, pi.edited_by) == ("approved", f.MANAGER, f.MANAGER)
    assert "Bill" not in json.dumps(buttons(message_of(world, eid)["blocks"]))
    assert "overriding the check" in message_of(world, eid)["replies"][0]["text"]


# --------------------------------------------------------------------------- below threshold


def _billing_run_spy(monkeypatch):
    calls: list[tuple[str, dict[str, Any]]] = []

    def withdraw_items(s, **kw):
        calls.append(("withdraw_items", kw))

    def finalize_for_advertiser(s, **kw):
        calls.append(("finalize_for_advertiser", kw))
        return [SimpleNamespace(id=901)]

    spy_module(monkeypatch, "bot.workflows.billing_run", withdraw_items=withdraw_items,
               finalize_for_advertiser=finalize_for_advertiser)
    return calls


def test_below_threshold_approve_accepts_the_skip_and_touches_nothing(world, monkeypatch):
    calls = _billing_run_spy(monkeypatch)
    pid, eid = _below_threshold(world)
    click(world, f.APPROVER, eid, "approve")
    assert f.exception_row(world.db, eid).state == "approved"
    assert calls == []
    assert _preinvoice(world, pid).state == "approved"  # still waiting for the next run
    assert "carry over to the next run" in message_of(world, eid)["replies"][0]["text"]


def test_below_threshold_reject_withdraws_the_items(world, monkeypatch):
    calls = _billing_run_spy(monkeypatch)
    pid, eid = _below_threshold(world)
    # a write-off is money leaving: refused to an approver, naming who can
    click(world, f.APPROVER, eid, "reject")
    assert ephemerals(world, f.APPROVER)[-1] == f":no_entry: Write off needs a finance manager: <@{f.MANAGER}>."
    assert world.api.calls_to("views.open") == [] and calls == []
    click(world, f.MANAGER, eid, "reject")
    submit_reason(world, f.MANAGER, "Campaign cancelled; do not bill")
    assert f.exception_row(world.db, eid).state == "rejected"
    [(name, kw)] = calls
    assert name == "withdraw_items"
    assert kw["advertiser_id"] == f.ADV and kw["preinvoice_ids"] == [pid]
    assert kw["reason"] == "Campaign cancelled; do not bill" and kw["actor"] == f.MANAGER


def test_below_threshold_force_invoices_now_and_hands_the_invoices_to_the_delivery_hook(world, monkeypatch):
    from bot import runtime

    calls = _billing_run_spy(monkeypatch)
    delivered: list[tuple[str | None, str | None, list[int]]] = []

    def deliver(_sc, *, exception_id, invoice_ids, **_):
        exc = f.exception_row(world.db, exception_id)
        delivered.append((exc.channel, exc.message_ts, list(invoice_ids)))

    monkeypatch.setattr(runtime, "REACTIONS", {**runtime.REACTIONS, "exception.invoiced": (deliver,)})
    _pid, eid = _below_threshold(world)
    click(world, f.MANAGER, eid, "force")
    submit_reason(world, f.MANAGER, "Year-end: invoice everything")
    row = f.exception_row(world.db, eid)
    assert row.state == "forced"
    [(name, kw)] = calls
    assert name == "finalize_for_advertiser"
    assert kw["ignore_threshold"] is True and kw["advertiser_id"] == f.ADV and kw["billing_run_id"] == 7
    assert str(kw["period_end"]) == "2026-02-28"
    assert delivered == [(row.channel, row.message_ts, [901])]
    [entry] = audit_actions(world, "decision.recorded")
    assert json.loads(entry.payload)["invoice_ids"] == [901]


# --------------------------------------------------------------------------- who may decide


def test_two_approvers_above_the_amount_must_be_different_people(world):
    _pid, eid = _variance(world, amount="12000.00")
    assert f.exception_row(world.db, eid).approvals_needed == 2
    click(world, f.APPROVER, eid, "approve")
    row = f.exception_row(world.db, eid)
    assert row.state == "pending" and [a["user"] for a in row.approvals] == [f.APPROVER]
    msg = message_of(world, eid)
    assert "1 of 2 approvals" in _section_texts(msg["blocks"])
    assert {k for k in buttons(msg["blocks"]) if k.startswith("decide_")} == {"decide_approve", "decide_reject",
                                                                              "decide_force"}
    assert "Approval 1 of 2" in msg["replies"][0]["text"]
    # the same approver again: told, nothing changes
    click(world, f.APPROVER, eid, "approve")
    assert "a second, different approver is needed" in ephemerals(world, f.APPROVER)[-1]
    assert len(decisions(world, eid)) == 1
    click(world, f.APPROVER2, eid, "approve")
    row = f.exception_row(world.db, eid)
    assert (row.state, row.decided_by) == ("approved", f.APPROVER2)
    assert [d.actor_id for d in decisions(world, eid)] == [f.APPROVER, f.APPROVER2]
    assert "2 of 2 approvals" in _section_texts(message_of(world, eid)["blocks"])


def test_nobody_decides_work_they_started(world):
    _pid, eid = _variance(world, started_by=f.APPROVER)
    click(world, f.APPROVER, eid, "approve")
    assert "You started this work" in ephemerals(world, f.APPROVER)[-1]
    assert f.exception_row(world.db, eid).state == "pending"
    assert decisions(world, eid) == []
    [refusal] = audit_actions(world, "decision.refused")
    assert refusal.actor == f.APPROVER and json.loads(refusal.payload)["code"] == "own_work"


def test_nobody_decides_a_preinvoice_they_edited(world):
    pid, eid = _variance(world)
    with world.db.transaction() as s:
        s.get(PreInvoice, pid).edited_by = f.APPROVER2
    world.api.reset()
    from bot.slack.client import get_client
    from bot.slack.exceptions import show_exception

    # the message now binds to the edited pre-invoice
    show_exception(get_client(), world.db, eid, default_channel=f.CHANNEL)
    click(world, f.APPROVER2, eid, "approve")
    assert "You edited this pre-invoice" in ephemerals(world, f.APPROVER2)[-1]
    assert f.exception_row(world.db, eid).state == "pending"


def test_force_without_the_finance_manager_role_is_refused_before_the_modal(world):
    _pid, eid = _variance(world)
    click(world, f.APPROVER, eid, "force")
    # the refusal names who can decide (the users with the role, from the users table)
    assert ephemerals(world, f.APPROVER) == [f":no_entry: Force needs a finance manager: <@{f.MANAGER}>."]
    assert world.api.calls_to("views.open") == []
    assert f.exception_row(world.db, eid).state == "pending"
    [refusal] = audit_actions(world, "decision.refused")
    assert json.loads(refusal.payload)["decision"] == "force"


def test_a_user_without_a_role_is_refused_and_audited(world):
    _pid, eid = _variance(world)
    click(world, f.NOBODY, eid, "approve")
    assert ephemerals(world, f.NOBODY)[-1] == (f":no_entry: Approve needs an approver: <@{f.APPROVER}>, "
                                               f"<@{f.APPROVER2}>, <@{f.MANAGER}>.")
    assert f.exception_row(world.db, eid).state == "pending"
    assert len(audit_actions(world, "decision.refused")) == 1


# --------------------------------------------------------------------------- stale, double, retry


def test_a_stale_message_is_refused_and_refreshed(world):
    pid, eid = _variance(world)
    old = buttons(message_of(world, eid)["blocks"])["decide_approve"]
    with world.db.transaction() as s:  # the pre-invoice changes after the message was posted
        line = s.get(PreInvoice, pid).lines[0]
        line.amount = line.unit_price = s.get(PreInvoice, pid).net = __import__("decimal").Decimal("2500.00")
    row = f.exception_row(world.db, eid)
    world.api.reset()
    world.as_user(f.APPROVER).click("decide_approve", old, channel=row.channel, message_ts=row.message_ts)
    world.wait()
    assert "out of date" in ephemerals(world, f.APPROVER)[-1]
    assert f.exception_row(world.db, eid).state == "pending" and decisions(world, eid) == []
    updates = world.api.calls_to("chat.update")
    assert "Working…" in json.dumps(updates[0]["blocks"], ensure_ascii=False) and buttons(updates[0]["blocks"]) == {}
    new = buttons(updates[-1]["blocks"])["decide_approve"]
    assert new != old and new.startswith(f"{eid}:")
    click(world, f.APPROVER, eid, "approve")  # on the refreshed message it works
    assert f.exception_row(world.db, eid).state == "approved"


def test_double_click_changes_nothing_and_tells_who_decided(world):
    _pid, eid = _variance(world)
    value = buttons(message_of(world, eid)["blocks"])["decide_approve"]
    row = f.exception_row(world.db, eid)
    user = world.as_user(f.APPROVER)
    for _ in range(2):
        user.click("decide_approve", value, channel=row.channel, message_ts=row.message_ts)
    world.wait()
    assert len(decisions(world, eid)) == 1
    assert len(audit_actions(world, "decision.recorded")) == 1
    [told] = ephemerals(world, f.APPROVER)
    assert told.startswith(f":raised_hand: Already approved by <@{f.APPROVER}> at ")
    assert "UTC" not in told and told.rstrip(".").endswith(("CET", "CEST"))  # BILLBOT_TIMEZONE, Europe/Berlin
    # someone else clicking Reject afterwards is told too
    world.as_user(f.APPROVER2).click("decide_reject", value, channel=row.channel, message_ts=row.message_ts)
    world.wait()
    assert ephemerals(world, f.APPROVER2)[-1].startswith(f":raised_hand: Already approved by <@{f.APPROVER}>")
    assert world.api.calls_to("views.open") == []


def test_slack_retries_are_acked_and_ignored(world):
    _pid, eid = _variance(world)
    value = buttons(message_of(world, eid)["blocks"])["decide_approve"]
    row = f.exception_row(world.db, eid)
    world.api.reset()
    r = world.as_user(f.APPROVER).click("decide_approve", value, channel=row.channel, message_ts=row.message_ts,
                                        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    world.wait()
    assert r.status == 200 and r.headers.get("x-slack-no-retry") == "1"
    assert f.exception_row(world.db, eid).state == "pending"
    assert [c.method for c in world.api.calls if c.method != "auth.test"] == []


def test_bad_or_old_signatures_get_401_and_change_nothing(world):
    _pid, eid = _variance(world)
    value = buttons(message_of(world, eid)["blocks"])["decide_approve"]
    row = f.exception_row(world.db, eid)
    world.api.reset()
    user = world.as_user(f.APPROVER)
    bad = user.click("decide_approve", value, channel=row.channel, message_ts=row.message_ts, secret="not-the-secret")
    old = user.click("decide_approve", value, channel=row.channel, message_ts=row.message_ts,
                     ts=int(time.time()) - 5 * 60 - 1)
    cmd = user.command("run 2026-02", secret="not-the-secret")
    world.wait()
    assert (bad.status, old.status, cmd.status) == (401, 401, 401)
    assert f.exception_row(world.db, eid).state == "pending"
    assert decisions(world, eid) == [] and [c.method for c in world.api.calls if c.method != "auth.test"] == []


def test_decision_from_the_app_home_republishes_it(world):
    _pid, eid = _variance(world)
    value = buttons(message_of(world, eid)["blocks"])["decide_approve"]
    world.as_user(f.APPROVER).click("decide_approve", value, from_home=True)
    world.wait()
    assert f.exception_row(world.db, eid).state == "approved"
    home = world.api.calls_to("views.publish")[-1]
    assert home["user_id"] == f.APPROVER and "Nothing waits for you" in _section_texts(home["view"]["blocks"])


def test_subject_hash_is_the_sha256_of_what_was_decided_on(world):
    from bot.workflows.decisions import subject_document

    _pid, eid = _variance(world)
    with world.db.read() as s:
        from storage.models import BillingException

        doc = subject_document(s.get(BillingException, eid))
    assert doc["preinvoice"]["lines"][0]["amount"] == "3000"
    click(world, f.APPROVER, eid, "approve")
    assert decisions(world, eid)[0].subject_hash == content_hash(doc)


def test_a_refusal_in_the_app_home_arrives_as_a_dm(world):
    _pid, eid = _variance(world)
    value = buttons(message_of(world, eid)["blocks"])["decide_approve"]
    world.as_user(f.NOBODY).click("decide_approve", value, from_home=True)
    world.wait()
    dms = [c for c in world.api.calls_to("chat.postMessage") if c["channel"] == f.NOBODY]
    assert [c["text"] for c in dms] == [f":no_entry: Approve needs an approver: <@{f.APPROVER}>, "
                                        f"<@{f.APPROVER2}>, <@{f.MANAGER}>."]
    assert f.exception_row(world.db, eid).state == "pending"


def test_closed_and_reopened_exceptions_update_the_same_message(world):
    from datetime import UTC, datetime

    from bot.workflows.exceptions import close_exception

    _pid, eid = _variance(world)
    ts = f.exception_row(world.db, eid).message_ts
    with world.db.transaction() as s:
        close_exception(s, eid, reason="variance gone after re-import", actor="system", signing_key=world.key,
                        now=datetime.now(UTC))
    msg = message_of(world, eid)
    assert msg["ts"] == ts and buttons(msg["blocks"]) == {}
    assert "Closed: the check no longer fires." in _section_texts(msg["blocks"])
    ev = {"booked_amount": "3000.00", "computed_amount": "2050.00", "rule": "delivered_vs_booked",
          "tolerance": "0.10", "figures": {"booked": 3000, "delivered": 2050}, "cause": "under_delivery"}
    f.open_exception(world.db, world.key, preinvoice_id=_pid, amount="950.00", evidence=ev)  # the same key reopens it
    msg = message_of(world, eid)
    assert msg["ts"] == ts and "950.00 EUR" in _section_texts(msg["blocks"]) and buttons(msg["blocks"])
    assert len(world.api.calls_to("chat.postMessage")) == 1
