"""Issue 17 (exception part): the exception message explains itself, a decision shows "Working…" at
once, refusals name who can, Reject/Force open the reason modal directly, a run names the invoice in
the decided exception's thread, the Details modal offers the full evidence, and a decision from the
CLI is the same signed decision and the same message update as a click.

Signed HTTP requests to the real WSGI app, the fake Web API (which validates Block Kit like Slack).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import date
from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner

from storage.models import AuditLog, Invoice, PreInvoice
from tests import factories as f
from tests.slack.helpers import audit_actions, buttons, click, decisions, ephemerals, message_of, submit_reason

runner = CliRunner()


def _variance(world: Any, month: int = 2, **kw: Any) -> tuple[int, int]:
    pid = f.preinvoice(world.db, month=month)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid, **kw)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    return pid, eid


def _labels(blocks: list[dict[str, Any]]) -> dict[str, str]:
    return {e["action_id"]: e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]
            if e["action_id"].startswith("decide_")}  # the choices (the owner row's Assign buttons apart)


def _text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# real evidence as bot.workflows.variance_checks writes it (billing.variance.PreInvoiceFindings.evidence)
OCT_DAYS = [f"2026-02-{d:02d}" for d in range(1, 29)]
CLICKS = {
    "rule": "delivered_vs_booked", "item_id": "elbe-winter-search", "item": "Regional search ads",
    "cause": "under_delivery", "tolerance": "0.1", "tolerance_source": "default",
    "figures": {"metric": "clicks", "delivered": "50", "expected": "62", "booked_quantity": "62",
                "difference": "-12", "difference_pct": "-19.35", "running_days": "28", "item_days": "28",
                "days_with_data": "28", "missing_days": "0"},
    "days": OCT_DAYS, "row_ids": [], "conversion_ids": [], "amount_at_stake": "211.54",
    "summary": "Regional search ads: 50 clicks delivered vs 62 booked for the period (-19.35 %, tolerance 10 %)",
    "preinvoice_id": 0, "currency": "EUR", "booked_amount": "3273.54", "computed_amount": "3062.00",
}


def test_a_variance_message_leads_with_the_finding_and_its_buttons_say_what_they_bill(world):
    _pid, eid = _variance(world, evidence={**CLICKS, "findings": [CLICKS]}, amount="211.54")
    blocks = message_of(world, eid)["blocks"]
    lead = blocks[1]["text"]["text"]
    assert lead.startswith("*50 clicks delivered vs 62 booked, −19 %* (tolerance 10 %)")
    assert "*Days:* 1–28 Feb, all days" in lead
    assert "*Cause:* under-delivery: fewer delivered, every day has data" in lead
    assert "*Rule:* delivered vs booked (Regional search ads)" in lead
    text = _text(blocks)
    assert "*Delivered / booked amount*\\n3,062.00 EUR / 3,273.54 EUR" in text
    assert "*Difference (booked − delivered)*\\n211.54 EUR" in text
    assert "under_delivery" not in text and "delivered_vs_booked" not in text
    assert _labels(blocks) == {"decide_approve": "Bill 3,062.00 € (delivered)",
                               "decide_reject": "Hold for correction", "decide_force": "Bill 3,273.54 € (booked)"}
    assert all(len(t) <= 75 for t in _labels(blocks).values())
    assert "Bill booked needs a finance manager" in text  # said before anyone clicks


def test_a_below_threshold_message_offers_carry_over_write_off_and_invoice_now(world):
    pid = f.preinvoice(world.db, net="180.00", state="approved")
    eid = f.open_exception(world.db, world.key, kind="below_threshold", preinvoice_id=pid, amount="180.00")
    blocks = message_of(world, eid)["blocks"]
    assert blocks[1]["text"]["text"].startswith("*180.00 € to bill vs a threshold of 250.00 €, −28 %*")
    assert _labels(blocks) == {"decide_approve": "Carry over", "decide_reject": "Write off 180.00 €",
                               "decide_force": "Invoice now"}
    text = _text(blocks)
    assert "*Unbilled total*\\n180.00 EUR" in text and "*Billing threshold*\\n250.00 EUR" in text
    assert "Write off and Invoice now need a finance manager" in text


def test_write_off_is_refused_to_an_approver_naming_who_can_and_allowed_to_a_finance_manager(world, monkeypatch):
    from bot.workflows import billing_run

    withdrawn: list[dict[str, Any]] = []
    monkeypatch.setattr(billing_run, "withdraw_items", lambda s, **kw: withdrawn.append(kw))
    pid = f.preinvoice(world.db, net="180.00", state="approved")
    eid = f.open_exception(world.db, world.key, kind="below_threshold", preinvoice_id=pid, amount="180.00")
    click(world, f.APPROVER, eid, "reject")
    assert ephemerals(world, f.APPROVER) == [f":no_entry: Write off needs a finance manager: <@{f.MANAGER}>."]
    assert world.api.calls_to("views.open") == [] and withdrawn == []
    [refusal] = audit_actions(world, "decision.refused")
    assert json.loads(refusal.payload)["code"] == "finance_manager_required"
    click(world, f.MANAGER, eid, "reject")
    [opened] = world.api.calls_to("views.open")
    assert opened["view"]["title"]["text"] == "Write off" and opened["view"]["submit"]["text"] == "Write off"
    submit_reason(world, f.MANAGER, "Campaign cancelled, nothing to bill")
    row = f.exception_row(world.db, eid)
    assert (row.state, row.decided_by) == ("rejected", f.MANAGER)
    assert [kw["preinvoice_ids"] for kw in withdrawn] == [[pid]]
    assert "written off" in _text(message_of(world, eid)["blocks"])


def test_reject_opens_the_reason_modal_directly(world):
    _pid, eid = _variance(world)
    blocks = message_of(world, eid)["blocks"]
    reject = next(e for b in blocks if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "decide_reject")
    assert "confirm" not in reject  # no dialog first: the modal is the confirmation
    click(world, f.APPROVER, eid, "reject")
    [opened] = world.api.calls_to("views.open")
    view = opened["view"]
    assert view["title"]["text"] == "Hold for correction" and view["callback_id"] == "decision_reason"
    assert "2,100 units delivered vs 3,000 booked, −30 %" in _text(view["blocks"])
    before = len(world.api.calls_to("chat.update"))
    submit_reason(world, f.APPROVER, "Tracker gap on Feb 3-4")
    updates = world.api.calls_to("chat.update")[before:]
    assert f"Working… *Hold for correction* by <@{f.APPROVER}>" in _text(updates[0]["blocks"])
    assert "*Rejected* by" in _text(updates[-1]["blocks"]) and "— held for correction" in _text(updates[-1]["blocks"])


def test_refusals_name_who_can_decide_leaving_out_who_may_not(world):
    f.add_user(world.db, "U05FINANCE", ["finance_manager"])
    _pid, eid = _variance(world, started_by="U05FINANCE")
    click(world, f.APPROVER, eid, "force")
    # U05FINANCE started the work, so is not named
    assert ephemerals(world, f.APPROVER) == [f":no_entry: Force needs a finance manager: <@{f.MANAGER}>."]


def test_a_decision_shows_working_at_once_then_the_final_state(world):
    _pid, eid = _variance(world)
    row = f.exception_row(world.db, eid)
    world.api.reset()
    click(world, f.APPROVER, eid, "approve")
    updates = [c for c in world.api.calls_to("chat.update") if c["ts"] == row.message_ts]
    assert len(updates) >= 2
    first, last = updates[0]["blocks"], updates[-1]["blocks"]
    assert buttons(first) == {} and f"Working… *Bill 2,100.00 € (delivered)* by <@{f.APPROVER}>" in _text(first)
    assert "Working…" not in _text(last) and f"*Approved* by <@{f.APPROVER}>" in _text(last)
    assert "— billed as delivered" in _text(last)


def test_a_refused_decision_brings_the_buttons_back(world):
    _pid, eid = _variance(world, started_by=f.APPROVER)
    click(world, f.APPROVER, eid, "approve")
    assert "someone else must decide it" in ephemerals(world, f.APPROVER)[-1]
    assert {a for a in buttons(message_of(world, eid)["blocks"]) if a.startswith("decide_")} == {
        "decide_approve", "decide_reject", "decide_force"}


def test_a_run_names_the_invoice_in_the_decided_exceptions_message_and_thread(world):
    from bot.workflows.billing_run import run_billing

    pid, eid = _variance(world)
    click(world, f.APPROVER, eid, "approve")
    with world.db.read() as s:
        assert s.get(PreInvoice, pid).state == "approved"
    result = run_billing(world.db, period="2026-02", actor=f.OPERATOR, key=world.key, today=date(2026, 3, 2))
    world.wait()
    assert result.invoice_ids, result.log
    with world.db.read() as s:
        pi = s.get(PreInvoice, pid)
        inv = s.get(Invoice, pi.invoice_id) if pi.invoice_id is not None else None
        number = inv.number if inv is not None else None
    assert number
    msg = message_of(world, eid)
    assert f":receipt: Invoiced in *{number}*" in _text(msg["blocks"])
    assert any(number in r["text"] for r in msg["replies"])


def test_the_details_modal_has_a_readable_table_and_downloads_the_full_evidence(world):
    second = {**CLICKS, "rule": "first_vs_third_party", "cause": "party_discrepancy", "amount_at_stake": "40.00",
              "figures": {"metric": "clicks", "first_party": "50", "third_party": "58", "difference": "-8",
                          "difference_pct": "-16", "days_with_first_party": "28", "days_with_third_party": "28"}}
    _pid, eid = _variance(world, evidence={**CLICKS, "findings": [CLICKS, second]}, amount="251.54")
    row = f.exception_row(world.db, eid)
    world.as_user(f.APPROVER).click("exception_details", str(eid), channel=row.channel, message_ts=row.message_ts)
    world.wait()
    view = world.api.wait_for("views.open")[0]["view"]  # the fake validated it like Slack
    text = _text(view["blocks"])
    assert "*Delivered*\\n50 clicks" in text and "*Booked for the period*\\n62 clicks" in text
    assert "*Difference in %*\\n−19 %" in text and "Days: 1–28 Feb, all days" in text
    assert "50 clicks counted by the ad server vs 58 by the third party, −16 %" in text
    assert "*All findings*" in text and text.count("```") % 2 == 0  # the table's fence is closed
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", text.replace("decision_reason", "").replace(
        "exception_evidence_download", "").replace("evidence_actions", "").replace("plain_text", "").replace(
        "action_id", "").replace("block_id", "").replace("date_short_pretty", ""))
    world.as_user(f.APPROVER).click("exception_evidence_download", str(eid))
    world.wait()
    [done] = world.api.wait_for("files.completeUploadExternal")
    assert done.params.get("channel_id") == row.channel and done.params.get("thread_ts") == row.message_ts
    [posted] = world.api.calls_to("upload")
    with zipfile.ZipFile(io.BytesIO(posted.body)) as z:
        assert sorted(z.namelist()) == ["conversions.csv", "delivery_rows.csv", "evidence.json", "findings.csv"]
        assert json.loads(z.read("evidence.json"))["evidence"]["findings"][1]["rule"] == "first_vs_third_party"
        assert z.read("findings.csv").decode().count("\n") == 3


# --------------------------------------------------------------------------- the terminal


def _cli(*args: str) -> Any:
    from bot.cli import app

    return runner.invoke(app, list(args))


def _decided_update(world: Any, eid: int) -> str:
    """The message's final update, with what differs between two exceptions taken out."""
    text = _text(message_of(world, eid)["blocks"])
    text = re.sub(r"<!date\^\d+\^[^>]*>", "<date>", text)
    text = re.sub(r"#\d+", "#<n>", text)  # exception and pre-invoice numbers
    text = re.sub(r'"value": "\d+"', '"value": "<id>"', text)  # the Details button
    return re.sub(r'(decided|facts|evidence):\d+"', r'\1:<id>"', text)


def _signed_record(world: Any, eid: int) -> dict[str, Any]:
    with world.db.read() as s:
        rows = list(s.execute(select(AuditLog).where(AuditLog.action == "decision.recorded",
                                                     AuditLog.subject_id == str(eid))).scalars())
    [entry] = rows
    assert entry.signature and entry.record_hash
    payload = json.loads(entry.payload)
    [d] = decisions(world, eid)
    assert payload["subject_sha256"] == d.subject_hash and payload["decision_id"] == d.id  # bound to what was seen
    return {k: v for k, v in payload.items()
            if k not in ("decision_id", "exception_id", "at", "preinvoice_id", "subject_sha256")}


def test_a_finance_manager_decides_from_the_cli_exactly_as_a_click_does(world):
    _p1, by_click = _variance(world)
    _p2, by_cli = _variance(world, month=3, name="y")
    click(world, f.MANAGER, by_click, "force")
    submit_reason(world, f.MANAGER, "Client confirmed the booked volume")
    r = _cli("exceptions", "force", str(by_cli), "--reason", "Client confirmed the booked volume", "--as", f.MANAGER)
    assert r.exit_code == 0, r.output
    world.wait()
    # the same signed decision
    [d1], [d2] = decisions(world, by_click), decisions(world, by_cli)
    assert (d1.decision, d1.actor_id, d1.actor_name, d1.reason) == (d2.decision, d2.actor_id, d2.actor_name, d2.reason)
    assert _signed_record(world, by_click) == _signed_record(world, by_cli)
    # the same Slack message update (and thread reply)
    assert _decided_update(world, by_click) == _decided_update(world, by_cli)
    assert f"*Forced* by <@{f.MANAGER}>" in _decided_update(world, by_cli)
    replies = message_of(world, by_cli)["replies"]
    assert replies and "overriding the check" in replies[0]["text"]


def test_the_pre_invoices_editor_is_refused_on_the_cli_as_in_slack(world):
    pid, eid = _variance(world)
    with world.db.transaction() as s:
        s.get(PreInvoice, pid).edited_by = f.MANAGER
    r = _cli("exceptions", "approve", str(eid), "--as", f.MANAGER)
    assert r.exit_code != 0
    assert "You edited this pre-invoice, so someone else must decide it" in r.output
    assert f"@{f.APPROVER}, @{f.APPROVER2}." in r.output and "<@" not in r.output  # who can, as terminal text
    assert f.exception_row(world.db, eid).state == "pending" and decisions(world, eid) == []
    [refusal] = audit_actions(world, "decision.refused")
    assert json.loads(refusal.payload)["code"] == "own_work"


# --------------------------------------------------------------------------- held for correction


def _dms(world: Any, user: str) -> list[str]:
    return [c["text"] for c in world.api.calls_to("chat.postMessage") if c["channel"] == "D" + user[1:]]


def test_a_held_item_has_an_owner_who_is_told_and_reminded_once_per_the_sla(world):
    from datetime import UTC, datetime, timedelta

    from bot.slack.client import get_client
    from bot.slack.sla import sweep
    from storage.settings import get_settings

    _pid, eid = _variance(world)  # started by the operator: the owner, as no account owner is set
    click(world, f.APPROVER, eid, "reject")
    submit_reason(world, f.APPROVER, "Tracker gap on Feb 3-4; ops to re-import")
    [told] = _dms(world, f.OPERATOR)
    assert "3,000.00 EUR for Autohaus Elbe KG is held for correction" in told
    assert f"by <@{f.APPROVER}>" in told and "Tracker gap on Feb 3-4" in told and "I will remind you" in told
    row = f.exception_row(world.db, eid)
    half = timedelta(hours=get_settings().sla_hours / 2)
    assert row.reminded_at is None and abs(row.remind_at - (row.decided_at + half)) < timedelta(seconds=1)
    # before the reminder time nothing; after it one reminder, once, whatever the number of sweeps
    client = get_client()
    assert sweep(world.db, client=client, key=world.key, now=row.decided_at + half / 2).held_reminded == []
    later = datetime.now(UTC) + half + timedelta(minutes=1)
    assert sweep(world.db, client=client, key=world.key, now=later).held_reminded == [eid]
    assert sweep(world.db, client=client, key=world.key, now=later + timedelta(hours=1)).held_reminded == []
    told, reminded = _dms(world, f.OPERATOR)
    assert reminded.startswith(":hourglass_flowing_sand: Still held for correction: 3,000.00 EUR for Autohaus Elbe KG")
    [entry] = audit_actions(world, "exception.held_reminded")
    assert entry.subject_id == str(eid)


def test_the_advertisers_account_owner_owns_held_items(world):
    from storage.models import Advertiser

    f.add_user(world.db, "U06OWNER", ["operator"])
    with world.db.transaction() as s:
        s.get(Advertiser, f.ADV).account_owner = "U06OWNER"
    _pid, eid = _variance(world)
    click(world, f.APPROVER, eid, "reject")
    submit_reason(world, f.APPROVER, "Wrong rate on the order")
    assert len(_dms(world, "U06OWNER")) == 1 and _dms(world, f.OPERATOR) == []


def test_an_exception_assigned_to_someone_is_held_on_their_desk(world):
    """The held item's owner is the exception's owner (issue 21): whoever it was assigned to is told."""
    from bot.workflows.owners import assign

    f.add_user(world.db, "U06OWNER", ["operator"])
    _pid, eid = _variance(world)
    assign(world.db, exception_id=eid, owner="U06OWNER", actor=f.OPERATOR, key=world.key)
    click(world, f.APPROVER, eid, "reject")
    submit_reason(world, f.APPROVER, "Wrong rate on the order")
    assert len(_dms(world, "U06OWNER")) == 1 and _dms(world, f.OPERATOR) == []


def test_the_digest_section_lists_held_items_with_amounts_and_owners_within_slacks_limits(world):
    from dataclasses import replace
    from datetime import UTC, datetime
    from decimal import Decimal

    from bot.blocks.held import HELD_SHOWN, held_section
    from bot.sandbox.blockkit import validate_blocks
    from bot.workflows.held import held_items

    _pid, eid = _variance(world)
    click(world, f.APPROVER, eid, "reject")
    submit_reason(world, f.APPROVER, "Wrong rate on the order")
    with world.db.read() as s:
        [it] = held_items(s)
    assert (it.exception_id, it.amount, it.currency, it.owner) == (eid, Decimal("3000.00"), "EUR", f.OPERATOR)
    [block] = [b.to_dict() for b in held_section([it])]
    assert block["text"]["text"].startswith("*Held for correction* — 1 item, 3,000.00 EUR\n• #")
    assert f"owner <@{f.OPERATOR}>" in block["text"]["text"]
    # at scale: the top items, whole lines, "and N more", totals over all of them
    many = [replace(it, exception_id=i, advertiser="A very long advertiser name " * 3, amount=Decimal(i),
                    held_at=datetime.now(UTC)) for i in range(1, 140)]
    blocks = [b.to_dict() for b in held_section(many[:HELD_SHOWN], total_count=139,
                                                totals={"EUR": Decimal(9730), "USD": Decimal(12)})]
    assert validate_blocks(blocks) == []
    assert "139 items, 9,730.00 EUR, 12.00 USD" in blocks[0]["text"]["text"]
    assert blocks[-1]["elements"][0]["text"].startswith(f"… and {139 - HELD_SHOWN} more held")
