"""Issue 20 done-when, in Slack over signed HTTP: a dispute opened by ``/billing dispute``, the evidence
summary (and pack) in its thread, a credit proposed from the third-party figure, refused for the
proposer's own approval, approved by another finance manager, the credit note numbered in its series,
the dispute resolved with its outcome; dunning skips the invoice while the dispute is open."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.workflows.billing_run import run_billing
from bot.workflows.disputes import comments
from bot.workflows.dunning import held_invoices, run_dunning
from bot.workflows.evidence import verify_evidence_pack
from bot.workflows.invoices import get_invoice
from bot.workflows.payments import invoice_payments
from bot.workflows.preinvoices import create_preinvoices
from storage.loader import load_scenario
from storage.models import CreditNoteRequest, Dispute, Invoice
from tests import factories as f

MANAGER2 = "U08FINANCE"
TODAY = date(2026, 3, 1)


def _invoice(world: Any) -> Any:
    rows = []
    for i in range(10):
        day = (date(2026, 2, 1) + timedelta(days=i)).isoformat()
        rows += [{"item": "search", "date": day, "source": "first_party", "clicks": 30},
                 {"item": "search", "date": day, "source": "third_party", "clicks": 28}]
    load_scenario(world.db, f.scenario(
        advertisers=[f.advertiser("nord", "Autohaus Nord")],
        campaigns=[f.campaign("cn", "nord", [f.delivery("search", "cpc", "0.60", description="Search clicks")],
                              start="2026-02-01", end="2026-02-28")],
        delivery_rows=rows), actor="test")
    create_preinvoices(world.db, period="2026-02", advertisers=["nord"], actor=f.OPERATOR, key=world.key, now=f.NOW)
    run = run_billing(world.db, period="2026-02", advertisers=["nord"], actor=f.OPERATOR, key=world.key,
                      today=TODAY)
    assert run.created == ["INV-2026-000001"], run
    return get_invoice(world.db, "INV-2026-000001")


def _dispute(world: Any) -> Dispute:
    with world.db.read() as s:
        d = s.execute(select(Dispute)).scalar_one()
        s.expunge(d)
        return d


def _button(world: Any, d: Dispute, action_id: str) -> str:
    msg = world.api.message(d.channel, d.message_ts)
    return next(e["value"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == action_id)


def _click(world: Any, user: str, action_id: str) -> None:
    d = _dispute(world)
    world.as_user(user).click(action_id, _button(world, d, action_id), channel=d.channel, message_ts=d.message_ts)
    world.wait()


def _thread(world: Any, d: Dispute) -> list[str]:
    return [str(c.get("text")) for c in world.api.calls_to("chat.postMessage") if c.get("thread_ts") == d.message_ts]


def test_a_dispute_from_slash_command_to_an_approved_partial_credit(world: Any) -> None:
    f.add_user(world.db, MANAGER2, ["finance_manager"], cached=True)
    inv = _invoice(world)
    line = inv.lines[0]
    assert (line.quantity, line.amount) == (Decimal(300), Decimal("180.00"))
    due = inv.due_date + timedelta(days=20)
    assert [x.invoice for x in run_dunning(world.db, today=due, actor="t", key=None, dry_run=True)] == [inv.number]

    r = world.as_user(f.OPERATOR).command(
        f"dispute {inv.number} invalid_traffic lines={line.id} ref=PO-4711 contact=anna@nord.example "
        "20 clicks came from bots")
    assert r.status == 200
    world.wait()
    d = _dispute(world)
    assert (d.state, d.category, d.lines, d.amount, d.client_reference, d.client_contact, d.owner) == (
        "open", "invalid_traffic", [line.id], Decimal("180.00"), "PO-4711", "anna@nord.example", f.OPERATOR)
    assert d.reason == "20 clicks came from bots" and d.due_at is not None and d.channel == f.CHANNEL
    said = world.api.calls_to("response_url")[-1]["text"]
    assert f"Dispute #{d.id} opened on {inv.number}" in said
    # dunning skips the disputed invoice while the dispute is open; its payment state says so
    assert held_invoices(world.db, today=due) == {inv.id: "dispute"}
    assert invoice_payments(world.db, today=due)[inv.id].payment_state == "disputed"
    assert run_dunning(world.db, today=due, actor="t", key=None, dry_run=True) == []

    summary = next(t for t in _thread(world, d) if "Evidence for dispute" in t)
    assert f"Line {line.id} — Search clicks (2026-02-01–2026-02-28): billed 300 clicks, 180.00 EUR." in summary
    assert "First party: 300 clicks; third party: 280 clicks for those days. Difference 6.7 %." in summary
    assert "Rule: CPC: first-party clicks × 0.60 per click. Tolerance: 10 % (default)." in summary
    assert "approved by the system (every check passed)" in summary
    assert "The third-party figure supports a credit of 20 clicks." in summary
    # the evidence pack was built, recorded on the dispute and uploaded into the thread; it verifies
    assert d.evidence_path and verify_evidence_pack(Path(d.evidence_path)) == []
    assert any(c.get("thread_ts") == d.message_ts for c in world.api.calls_to("files.completeUploadExternal"))

    # replies in the thread are kept with the dispute (people's, once; billbot's own posts are not)
    reply = {"type": "message", "channel": d.channel, "user": f.OPERATOR, "text": "Client sent their bot report",
             "ts": "1767000000.000100", "thread_ts": d.message_ts}
    world.as_user(f.OPERATOR).event(reply)
    world.as_user(f.OPERATOR).event(reply)  # Slack's retry of the same message
    world.as_user(f.OPERATOR).event({**reply, "ts": "1767000000.000200", "bot_id": "B0BILLBOT", "text": "bot"})
    world.wait()
    assert [(c.user, c.text) for c in comments(world.db, d.id)] == [(f.OPERATOR, "Client sent their bot report")]

    # "Propose credit": a partial credit of the 20 clicks the third party did not count
    _click(world, f.MANAGER, "dispute_propose_credit")
    d = _dispute(world)
    with world.db.read() as s:
        req = s.get(CreditNoteRequest, d.credit_request_id)
        assert req is not None
        assert (d.state, req.state, req.amount, req.dispute_id, req.requested_by) == (
            "proposed", "pending", Decimal("-12.00"), d.id, f.MANAGER)
        assert req.partial == [{"line": line.id, "quantity": "20", "amount": None}]
    assert held_invoices(world.db, today=due) == {inv.id: "dispute"}  # still held while the proposal waits

    # the proposer's own approval is refused; another finance manager's issues the credit note
    _click(world, f.MANAGER, "dispute_credit_approve")
    refused = [c["text"] for c in world.api.calls_to("chat.postEphemeral") if c["user"] == f.MANAGER]
    assert refused and "you requested credit note" in refused[-1]
    with world.db.read() as s:
        assert s.execute(select(Invoice).where(Invoice.kind == "credit_note")).first() is None
    _click(world, MANAGER2, "dispute_credit_approve")
    cn = get_invoice(world.db, "CN-2026-000001")
    assert (cn.references, cn.net, cn.vat, cn.gross) == (inv.number, Decimal("-12.00"), Decimal("-2.28"),
                                                         Decimal("-14.28"))
    assert [(x.credited_line_id, x.quantity, x.amount) for x in cn.lines] == [(line.id, Decimal(-20),
                                                                              Decimal("-12.00"))]
    d = _dispute(world)
    assert (d.state, d.credited, d.days_open, d.resolved_by) == ("credited", Decimal("12.00"), 0, MANAGER2)
    assert d.resolution == "credited by CN-2026-000001"
    updated = world.api.calls_to("chat.update")[-1]
    assert "Resolved — credited 12.00 EUR" in str(updated["blocks"])
    assert any("resolved by <@U08FINANCE>: credited 12.00 EUR after 0 day(s)" in t for t in _thread(world, d))
    # resolved: the invoice is dunned again
    assert held_invoices(world.db, today=due) == {}
    assert invoice_payments(world.db, today=due)[inv.id].payment_state == "overdue"


def test_reject_and_withdrawn_by_client_from_the_dispute_message(world: Any) -> None:
    inv = _invoice(world)
    world.as_user(f.OPERATOR).command(f"dispute {inv.number} rate agreed 0.50 per click")
    world.wait()
    d = _dispute(world)
    assert (d.category, d.reason) == ("other", "rate agreed 0.50 per click")
    _click(world, f.OPERATOR, "dispute_reject")  # rejecting needs a finance manager
    said = [c["text"] for c in world.api.calls_to("chat.postEphemeral") if c["user"] == f.OPERATOR]
    assert said and "needs the finance_manager role" in said[-1]
    _click(world, f.MANAGER, "dispute_reject")
    opened = [c for c in world.api.calls_to("views.open") if c["view"].get("callback_id") == "dispute_reason"]
    assert opened
    world.as_user(f.MANAGER).submit_view(opened[-1]["view"], {"reason": {"reason_input": "the IO says 0.60"}})
    world.wait()
    d = _dispute(world)
    assert (d.state, d.resolution, d.resolved_by, d.credited) == ("rejected", "the IO says 0.60", f.MANAGER,
                                                                  Decimal("0"))
    assert any("Reason for the client: the IO says 0.60" in t for t in _thread(world, d))

    world.as_user(f.OPERATOR).command(f"dispute {inv.number} duplicate_billing billed twice")
    world.wait()
    with world.db.read() as s:
        second = s.execute(select(Dispute).where(Dispute.state == "open")).scalar_one()
        channel, ts = second.channel, second.message_ts
    world.as_user(f.MANAGER).click("dispute_withdrawn", str(second.id), channel=channel, message_ts=ts)
    world.wait()
    with world.db.read() as s:
        row = s.get(Dispute, second.id)
        assert row is not None and (row.state, row.resolution) == ("withdrawn", "withdrawn by the client")


def test_dispute_from_the_overflow_menu_of_an_invoice_message(world: Any) -> None:
    inv = _invoice(world)
    world.as_user(f.APPROVER).command(f"invoice {inv.number}")
    world.wait()
    answer = world.api.calls_to("response_url")[-1]
    overflow = answer["blocks"][0]["accessory"]
    assert overflow["type"] == "overflow" and overflow["options"][0]["value"] == f"dispute:{inv.number}"
    world.as_user(f.APPROVER).click("invoice_overflow", f"dispute:{inv.number}", channel="CBILLING",
                                    message_ts="1.0")
    world.wait()
    modal = [c for c in world.api.calls_to("views.open") if c["view"].get("callback_id") == "dispute_open"][-1]
    world.as_user(f.APPROVER).submit_view(modal["view"], {"category": {"category_select": "make_good_not_applied"},
                                                          "reason": {"reason_input": "make-good week missing"}})
    world.wait()
    d = _dispute(world)
    assert (d.state, d.category, d.reason, d.opened_by, d.invoice_number) == (
        "open", "make_good_not_applied", "make-good week missing", f.APPROVER, inv.number)
    assert world.api.message(d.channel, d.message_ts)["blocks"][0]["text"]["text"].startswith(f"*Dispute #{d.id}*")
