"""Cash-application exceptions in Slack: what matching cannot settle is posted with "Allocate to…",
"Write off difference" and "Refund"; signed clicks go through the real WSGI app; roles and separation
of duties are checked; every decision is audited and updates the message in place."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.workflows import payments as wf
from storage.models import AuditLog, Invoice, Payment
from tests import factories as f
from tests.slack.conftest import World
from tests.slack.helpers import ephemerals

BANK = Path(__file__).resolve().parents[1] / "fixtures" / "bank"
CASHIER = "U06CASHIER"


def _invoices(world: World) -> None:
    with world.db.transaction() as s:
        for seq, gross in ((1, "300.00"), (2, "595.00"), (3, "300.00"), (5, "1000.00")):
            g = Decimal(gross)
            net = (g / Decimal("1.19")).quantize(Decimal("0.01"))
            s.add(Invoice(number=f"INV-2026-{seq:06d}", kind="invoice", legal_entity_id=f.LE, advertiser_id=f.ADV,
                          series="INV-{year}-{seq:06d}", year=2026, seq=seq, issue_date=date(2026, 3, 1),
                          due_date=date(2026, 3, 31), currency="EUR", net=net, vat=g - net, gross=g,
                          vat_rate=Decimal("19"), vat_category="S", content_hash="0" * 64,
                          created_at=datetime(2026, 3, 1, 9, tzinfo=UTC)))
    f.add_user(world.db, CASHIER, ["cash_applier"])


def _message_for(world: World, payment_id: int) -> tuple[str, str, dict[str, Any]]:
    for (channel, ts), msg in list(world.api.messages.items()):
        if any(b.get("block_id") == f"payment:{payment_id}" for b in msg.get("blocks") or []):
            return channel, ts, msg
    raise AssertionError(f"no message for payment {payment_id}")


def _elements(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]}


def _choose(world: World, user: str, payment_id: int, action_id: str, value: str | None = None) -> None:
    channel, ts, msg = _message_for(world, payment_id)
    el = _elements(msg)[action_id]
    if el["type"] == "static_select":
        opt = next(o for o in el["options"] if value is None or o["value"].endswith(value))
        action = {"type": "static_select", "action_id": action_id, "block_id": f"cash:{payment_id}",
                  "selected_option": opt, "action_ts": f"{time.time():.6f}"}
    else:
        action = {"type": "button", "action_id": action_id, "block_id": f"cash:{payment_id}", "value": el["value"],
                  "action_ts": f"{time.time():.6f}"}
    u = world.as_user(user)
    payload = {"type": "block_actions", "api_app_id": "A0BILLBOT", "token": "legacy",
               "team": {"id": u.team_id, "domain": "billbot"},
               "user": {"id": user, "username": user.lower(), "team_id": u.team_id},
               "trigger_id": "t", "response_url": u.response_url, "actions": [action],
               "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
               "channel": {"id": channel, "name": "billing-exceptions"}, "message": {"ts": ts, "type": "message"}}
    assert u.interactive(payload).status == 200
    world.wait()


def test_unmatched_and_partial_payments_are_settled_in_slack(world: World) -> None:
    _invoices(world)
    res = wf.import_statement(world.db, BANK / "camt053_v02.xml", actor="system", key=world.key)
    # 833.00 names INV-2 (595.00) and INV-3 (300.00): 62.00 stay open on INV-3; 400.00 names no invoice we have
    assert res.outcomes == {"partial": 1, "unmatched": 1} and len(res.exceptions) == 2
    partial_id, unmatched_id = sorted(res.exceptions)
    world.api.wait_for("chat.postMessage", 2)

    channel, ts, msg = _message_for(world, unmatched_id)
    assert msg["blocks"][0]["text"]["text"] == "Unmatched payment 400.00 EUR"
    # where the message is, for the SLA reminder's thread; its timers run until someone decides
    with world.db.read() as s:
        row = s.get(Payment, unmatched_id)
        assert (row.channel, row.message_ts, row.sla_state) == (channel, ts, "open")
    options = [o["value"] for o in _elements(msg)["payment_allocate"]["options"]]
    assert len(options) == 3 and options[0] == f"{unmatched_id}:INV-2026-000001"  # closest open amount first

    # nobody without the role allocates
    _choose(world, f.NOBODY, unmatched_id, "payment_allocate", "INV-2026-000005")
    assert any("cash_applier or finance_manager" in t for t in ephemerals(world, f.NOBODY))
    # a finance manager allocates the 400.00 to INV-5 (1,000.00): 600.00 stay open there …
    _choose(world, f.MANAGER, unmatched_id, "payment_allocate", "INV-2026-000005")
    _, _, msg = _message_for(world, unmatched_id)
    assert f"<@{f.MANAGER}> allocated 400.00 EUR to INV-2026-000005." in json.dumps(msg["blocks"])
    # … and may not write off the difference of their own allocation
    _choose(world, f.MANAGER, unmatched_id, "payment_write_off")
    assert any("someone else" in t for t in ephemerals(world, f.MANAGER))

    # the under-payment: a cash applier may not write off, a finance manager may
    assert "payment_write_off" in _elements(_message_for(world, partial_id)[2])
    _choose(world, CASHIER, partial_id, "payment_write_off")
    assert any("finance_manager" in t for t in ephemerals(world, CASHIER))
    _choose(world, f.MANAGER, partial_id, "payment_write_off")
    _, _, msg = _message_for(world, partial_id)
    assert f"<@{f.MANAGER}> wrote off 62.00 EUR on INV-2026-000003." in json.dumps(msg["blocks"])
    assert not any(b["type"] == "actions" for b in msg["blocks"])  # nothing left to decide
    with world.db.read() as s:  # its SLA timers stop; the 400.00 left 600.00 open on INV-5: still running
        assert (s.get(Payment, partial_id).sla_state, s.get(Payment, unmatched_id).sla_state) == ("settled", "open")

    states = {n: (v.payment_state, str(v.open_amount)) for n, v in _by_number(world).items()}
    assert states["INV-2026-000003"] == ("paid", "0.00") and states["INV-2026-000005"] == ("overdue", "600.00")
    with world.db.read() as s:
        signed = list(s.execute(select(AuditLog.action, AuditLog.actor, AuditLog.signature).where(
            AuditLog.actor.in_((f.MANAGER, CASHIER, f.NOBODY))).order_by(AuditLog.id)))
    assert [(a, u) for a, u, _sig in signed] == [("payment.allocated", f.MANAGER), ("invoice.written_off", f.MANAGER)]
    assert all(sig for _a, _u, sig in signed)


def _by_number(world: World) -> dict[str, wf.InvoicePayment]:
    figures = wf.invoice_payments(world.db, today=date(2026, 4, 15))
    with world.db.read() as s:
        numbers = dict(s.execute(select(Invoice.id, Invoice.number)).all())
    return {numbers[i]: v for i, v in figures.items()}


def test_finance_managers_app_home_shows_receivables_aging(world: World) -> None:
    from bot.slack.home import build_home

    _invoices(world)  # due 2026-03-31, nothing paid
    home = build_home(world.db, f.MANAGER).to_dict()
    section = next(b for b in home["blocks"] if b.get("block_id") == "receivables")
    assert section["text"]["text"].startswith("*Receivables by days past due*\n*EUR* ")
    assert "2,195.00 EUR" in section["text"]["text"]  # 300 + 595 + 300 + 1,000, in one bucket
    approver_home = build_home(world.db, f.APPROVER).to_dict()
    assert not any(b.get("block_id") == "receivables" for b in approver_home["blocks"])
