"""Cash-application exceptions have SLA timers like every other exception: the sweep reminds at half
the SLA and escalates at the SLA — once, across restarts — and leaves settled payments alone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import time_machine
from sqlalchemy import func, select

from bot.slack.sla import sweep
from bot.workflows import payments as wf
from storage.db import Database
from storage.models import AuditLog, Payment
from tests import factories as f

BANK = Path(__file__).resolve().parents[1] / "fixtures" / "bank"
T0 = f.utc(2026, 4, 12, 8, 0)  # SLA_HOURS defaults to 24: reminder at 20:00, due next day 08:00


def _audit(db: Database, action: str) -> int:
    with db.read() as s:
        return s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.action == action)).scalar_one()


def _import(db: Database, key: object) -> wf.ImportResult:
    """camt.053 001.02 against one open invoice: 833.00 for INV-2 + INV-3 (only INV-2, 595.00, exists:
    238.00 over-paid) and 400.00 naming nothing we have (unmatched)."""
    f.base(db)
    f.add_user(db, "UCASH", ["cash_applier"])
    f.invoice(db, number="INV-2026-000002", created_at=f.utc(2026, 3, 1, 9), gross="595.00")
    return wf.import_statement(db, BANK / "camt053_v02.xml", actor="system", key=key, now=T0)


def test_unmatched_payment_past_its_sla_is_reminded_then_escalated_once(db, key, slack, client):
    res = _import(db, key)
    with db.read() as s:
        rows = {p.id: p for p in s.execute(select(Payment).where(Payment.id.in_(res.exceptions))).scalars()}
    assert len(rows) == 2
    by_state = {p.state: p.id for p in rows.values()}
    assert set(by_state) == {"overpaid", "unmatched"}
    unmatched, overpaid = by_state["unmatched"], by_state["overpaid"]
    for p in rows.values():
        assert (p.sla_state, p.remind_at, p.due_at) == ("open", T0 + timedelta(hours=12), T0 + timedelta(hours=24))

    # the over-payment is settled before its reminder: its timers stop
    wf.refund(db, payment_id=overpaid, actor="UFM1", key=key, reason="paid twice", now=T0 + timedelta(hours=2))

    with time_machine.travel(T0 + timedelta(hours=11), tick=False):
        early = sweep(db, client=client, key=key)
    assert (early.payments_reminded, early.payments_escalated) == ([], [])

    with time_machine.travel(T0 + timedelta(hours=12, minutes=1), tick=False):
        half = sweep(db, client=client, key=key)
    assert (half.payments_reminded, half.payments_escalated) == ([unmatched], [])
    reminder = slack.calls_to("chat.postMessage")[-1]
    assert "<@UCASH>" in reminder["text"] and "unmatched payment" in reminder["text"]
    assert "400.00 EUR" in reminder["text"]

    # down across due_at; three sweeps after it: one escalation, to the managers channel and each finance manager
    escalated = []
    for hours in (30, 30, 31):
        with time_machine.travel(T0 + timedelta(hours=hours), tick=False):
            late = sweep(db, client=client, key=key, managers_channel="billing-managers")
        assert late.payments_reminded == []
        escalated.append(late.payments_escalated)
    assert escalated == [[unmatched], [], []]
    assert _audit(db, "payment.reminded") == 1
    assert _audit(db, "payment.escalated") == 1
    posts = slack.calls_to("chat.postMessage")
    escalations = [p for p in posts if "SLA breached" in p["text"]]
    assert [p["channel"] for p in escalations] == ["billing-managers", "DFM1", "DFM2"]
    assert all(f"#{unmatched} " in p["text"] for p in escalations)
    assert not any(f"#{overpaid} " in p["text"] for p in posts)
    with db.read() as s:
        p = s.get(Payment, unmatched)
        assert (p.sla_state, p.escalated_at) == ("escalated", T0 + timedelta(hours=30))
        assert s.get(Payment, overpaid).sla_state == "settled"

    # settling the escalated payment stops its timers too
    f.invoice(db, number="INV-2026-000009", created_at=f.utc(2026, 4, 1, 9), gross="400.00")
    wf.allocate(db, payment_id=unmatched, invoice_number="INV-2026-000009", actor="UCASH", key=key,
                now=T0 + timedelta(hours=32))
    with db.read() as s:
        assert s.get(Payment, unmatched).sla_state == "settled"
    with time_machine.travel(T0 + timedelta(hours=60), tick=False):
        after = sweep(db, client=client, key=key)
    assert (after.payments_reminded, after.payments_escalated) == ([], [])
    assert len(slack.calls_to("chat.postMessage")) == len(posts)
