"""One behaviour, two fakes: the decision flows written once, run against the sandbox workspace and against
the Slack tests' fake Web API (tests/fakes/slack_api.py). Both drive billbot's real ``/slack/events`` with
signed requests — the sandbox through its own forwarder (what the page uses), the fake through
tests/harness.py — and read back what a Slack user would see.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select

from storage.db import Database
from storage.models import BillingException, Decision, Invoice
from tests.sandbox.scenario import APPROVER, FINANCE, OPERATOR, PERIOD


def block_text(msg: dict[str, Any]) -> str:
    """Everything a reader sees in a message: its blocks' texts (or its fallback text)."""
    parts: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            if isinstance(o.get("text"), str):
                parts.append(o["text"])
            for k, v in o.items():
                if k not in ("confirm",) and isinstance(v, (dict, list)):
                    walk(v)
        elif isinstance(o, list):
            for x in o:
                walk(x)

    walk(msg.get("blocks") or [])
    return "\n".join(parts) if parts else str(msg.get("text") or "")


def buttons(msg: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """action_id → (block_id, value) of the buttons on a message."""
    out = {}
    for b in msg.get("blocks") or []:
        for e in b.get("elements", []) if b.get("type") == "actions" else []:
            if e.get("type") == "button":
                out[e["action_id"]] = (b.get("block_id", ""), e.get("value", ""))
    return out


def reason_input(view: dict[str, Any]) -> tuple[str, str]:
    """(block_id, action_id) of the modal's text input."""
    for b in view.get("blocks", []):
        if b.get("type") == "input" and b.get("element", {}).get("type") == "plain_text_input":
            return b["block_id"], b["element"]["action_id"]
    raise AssertionError("the modal has no text input")


class Surface(Protocol):
    name: str
    db: Database

    def command(self, user: str, text: str) -> None: ...
    def channel_messages(self) -> list[dict[str, Any]]: ...
    def message(self, channel: str, ts: str) -> dict[str, Any]: ...
    def thread(self, channel: str, ts: str) -> list[str]: ...
    def click(self, user: str, channel: str, ts: str, action_id: str) -> None: ...
    def modal(self, user: str) -> dict[str, Any] | None: ...
    def submit(self, user: str, view: dict[str, Any], values: dict[str, dict[str, str]]) -> None: ...
    def ephemerals(self, user: str) -> list[str]: ...
    def wait(self) -> None: ...


def exception_row(db: Database, kind: str) -> BillingException:
    with db.read() as s:
        row = s.execute(select(BillingException).where(BillingException.kind == kind)).scalar_one()
        s.expunge(row)
        return row


def exception_message(surface: Surface, kind: str) -> tuple[BillingException, dict[str, Any]]:
    row = exception_row(surface.db, kind)
    assert row.channel and row.message_ts, f"the {kind} exception has no Slack message"
    return row, surface.message(row.channel, row.message_ts)


def invoices(db: Database) -> dict[str, str]:
    """advertiser id → invoice number"""
    with db.read() as s:
        return {i.advertiser_id: i.number for i in s.execute(select(Invoice).order_by(Invoice.id)).scalars()}


def prepare(db: Database) -> None:
    """The scenario loaded and February's pre-invoices made (what `make run` does before serving)."""
    from bot import context
    from bot.workflows.preinvoices import create_preinvoices
    from storage.loader import load_scenario
    from tests.sandbox.scenario import scenario

    load_scenario(db, scenario())
    create_preinvoices(db, period=PERIOD, actor="cli", key=context.get_key(), now=datetime.now(UTC))


def run_billing_step(s: Surface) -> None:
    """An operator types ``/billing run 2026-02``: a progress message ends with the job log."""
    s.command(OPERATOR, f"run {PERIOD}")
    s.wait()

    def finished() -> str | None:
        texts = [block_text(m) for m in s.channel_messages()]
        return next((t for t in texts if f"Billing run {PERIOD}" in t and "done" in t), None)

    # the run is background work: its message may be updated just after the pools look idle
    deadline = time.monotonic() + 30
    while (log := finished()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
        s.wait()
    texts = [block_text(m) for m in s.channel_messages()]
    assert log is not None, f"no finished run message among {texts}"
    assert "Document INV-2026-000001 created for Autohaus Elbe KG" in log
    assert "Skipped items with a total of 180.00 EUR for Kiosk Alster (threshold 250.00 EUR)" in log
    assert invoices(s.db) == {"autohaus-elbe": "INV-2026-000001"}
    for kind in ("variance", "below_threshold"):
        _, msg = exception_message(s, kind)
        assert {"decide_approve", "decide_reject", "decide_force"} <= set(buttons(msg))


def approve_variance_step(s: Surface) -> None:
    """An approver approves the variance: the message loses its buttons and says who approved."""
    row, _ = exception_message(s, "variance")
    s.click(APPROVER, row.channel or "", row.message_ts or "", "decide_approve")
    s.wait()
    row, msg = exception_message(s, "variance")
    assert row.state == "approved" and row.decided_by == APPROVER
    assert buttons(msg) == {}
    assert "Approved" in block_text(msg) and APPROVER in block_text(msg)
    assert any("Approved" in t for t in s.thread(row.channel or "", row.message_ts or ""))


def approver_force_refused_step(s: Surface) -> None:
    """An approver's Force on the below-threshold skip is refused (finance_manager only); nothing changes."""
    row, _ = exception_message(s, "below_threshold")
    s.click(APPROVER, row.channel or "", row.message_ts or "", "decide_force")
    s.wait()
    assert any(f"Invoice now needs a finance manager: <@{FINANCE}>" in t for t in s.ephemerals(APPROVER)), \
        s.ephemerals(APPROVER)
    assert s.modal(APPROVER) is None
    row, msg = exception_message(s, "below_threshold")
    assert row.state == "pending" and "decide_force" in buttons(msg)
    assert "kiosk-alster" not in invoices(s.db)


def finance_force_step(s: Surface, reason: str = "Kiosk asked for the invoice now") -> str:
    """A finance manager forces the skip with a reason: invoiced now, the message and thread say so."""
    row, _ = exception_message(s, "below_threshold")
    s.click(FINANCE, row.channel or "", row.message_ts or "", "decide_force")
    s.wait()
    view = s.modal(FINANCE)
    assert view is not None and view.get("callback_id") == "decision_reason"
    block_id, action_id = reason_input(view)
    s.submit(FINANCE, view, {block_id: {action_id: reason}})
    s.wait()
    row, msg = exception_message(s, "below_threshold")
    assert row.state == "forced" and row.decided_by == FINANCE
    number = invoices(s.db).get("kiosk-alster")
    assert number == "INV-2026-000002"
    assert buttons(msg) == {} and "Forced" in block_text(msg) and reason in block_text(msg)
    replies = s.thread(row.channel or "", row.message_ts or "")
    assert any(number in t for t in replies), replies
    with s.db.read() as ss:
        d = ss.execute(select(Decision).where(Decision.exception_id == row.id)).scalar_one()
        assert (d.decision, d.actor_id, d.reason) == ("force", FINANCE, reason)
        assert d.actor_name == "Fiona Finance"  # looked up with users.info
    return number


def decision_flow(s: Surface) -> None:
    run_billing_step(s)
    approve_variance_step(s)
    approver_force_refused_step(s)
    finance_force_step(s)
