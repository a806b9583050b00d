"""Issue 20: disputes as records — opened and resolved on the CLI, outcomes listed as JSON, SLAs per
category from the scenario format (defaults when absent) with reminders and escalation, the digest's
dispute section."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from billing.errors import Conflict, Invalid
from bot.blocks.digest import digest_blocks
from bot.cli import app
from bot.slack import disputes as slack_disputes
from bot.workflows.digest import collect
from bot.workflows.disputes import dispute_stats, open_dispute, reject_dispute, withdraw_dispute
from bot.workflows.evidence import verify_evidence_pack
from bot.workflows.invoices import get_invoice
from storage.db import Database
from storage.models import AuditLog, Dispute
from tests.factories import MANAGER, OPERATOR, load
from tests.workflows.test_partial_credits import MANAGER2, search_and_display

pytestmark = pytest.mark.usefixtures("no_variance")

runner = CliRunner()
T0 = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _search(db: Database) -> Any:
    return next(x for x in get_invoice(db, "INV-2026-000001").lines if x.item == "search")


def test_a_dispute_on_the_cli_from_opening_to_its_credited_outcome(db: Database) -> None:
    search_and_display(db)
    line = _search(db)
    r = _run("disputes", "open", "INV-2026-000001", "--category", "invalid_traffic", "--reason", "bot clicks",
             "--line", str(line.id), "--client-ref", "PO-4711", "--contact", "anna@nord.example", "--json",
             "--as", OPERATOR)
    assert r.exit_code == 0, r.output
    opened = json.loads(r.stdout)
    assert opened["evidence_pack"] and verify_evidence_pack(Path(opened["evidence_pack"])) == []
    again = _run("disputes", "open", "INV-2026-000001", "--category", "other", "--reason", "x", "--as", OPERATOR)
    assert again.exit_code == 1 and f"already has open dispute #{opened['id']}" in again.output
    bad = _run("disputes", "open", "INV-2026-000001", "--category", "weather", "--reason", "x", "--as", OPERATOR)
    assert bad.exit_code == 2 and "category: 'weather' is not one of tracking_disagreement" in bad.output

    listed = json.loads(_run("disputes", "list", "--json").stdout)
    assert len(listed) == 1
    d = listed[0]
    assert {k: d[k] for k in ("id", "invoice", "category", "state", "amount", "credited", "resolved_at", "owner")} == {
        "id": opened["id"], "invoice": "INV-2026-000001", "category": "invalid_traffic", "state": "open",
        "amount": "180.00", "credited": "0.00", "resolved_at": None, "owner": OPERATOR}
    assert d["opened_at"] and (d["client_reference"], d["client_contact"]) == ("PO-4711", "anna@nord.example")
    shown = json.loads(_run("disputes", "show", str(d["id"]), "--json").stdout)
    assert "First party: 300 clicks; third party: 280 clicks for those days." in shown["evidence"][0]

    # a credit proposal from the evidence (20 clicks), rejected: the dispute is open again
    p = _run("disputes", "propose-credit", str(d["id"]), "--as", MANAGER, "--json")
    assert p.exit_code == 0, p.output
    proposal = json.loads(p.stdout)
    assert (proposal["amount"], proposal["partial"]) == ("-12.00", [{"line": line.id, "quantity": "20",
                                                                      "amount": None}])
    assert json.loads(_run("disputes", "list", "--json").stdout)[0]["state"] == "proposed"
    assert _run("credit-note", "reject", str(proposal["request"]), "--reason", "ask for the logs",
                "--as", MANAGER2).exit_code == 0
    assert json.loads(_run("disputes", "list", "--json").stdout)[0]["state"] == "open"

    # then a credit of an amount on the disputed line, approved by another finance manager
    p2 = _run("disputes", "propose-credit", str(d["id"]), "--line", str(line.id), "--amount", "15.00",
              "--as", MANAGER, "--json")
    assert p2.exit_code == 0, p2.output
    req = json.loads(p2.stdout)["request"]
    assert _run("credit-note", "approve", str(req), "--as", MANAGER).exit_code == 1  # the proposer's own
    ok = _run("credit-note", "approve", str(req), "--as", MANAGER2, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["number"] == "CN-2026-000001"
    done = json.loads(_run("disputes", "list", "--json").stdout)[0]
    assert (done["state"], done["credited"], done["days_open"], done["resolution"]) == (
        "credited", "15.00", 0, "credited by CN-2026-000001")
    assert done["resolved_at"] is not None
    assert json.loads(_run("disputes", "list", "--state", "open", "--json").stdout) == []
    with db.read() as s:
        actions = list(s.execute(select(AuditLog.action).where(AuditLog.subject_type == "dispute")
                                 .order_by(AuditLog.id)).scalars())
    assert actions == ["dispute.opened", "dispute.credit_proposed", "dispute.reopened", "dispute.credit_proposed",
                       "dispute.credited"]
    assert _run("audit", "verify").exit_code == 0


def test_rejecting_and_withdrawing_need_a_finance_manager_and_happen_once(db: Database, key: Any) -> None:
    search_and_display(db)
    did = open_dispute(db, number="INV-2026-000001", category="rate_disagreement", reason="0.50 agreed",
                       actor=OPERATOR, key=key, amount=Decimal("30.00"), now=T0)
    with pytest.raises(Invalid):
        reject_dispute(db, dispute_id=did, reason=" ", actor=MANAGER, key=key)
    r = _run("disputes", "reject", str(did), "--reason", "the IO says 0.60", "--as", OPERATOR)
    assert r.exit_code == 1 and "Rejecting a dispute needs the finance_manager role" in r.output
    reject_dispute(db, dispute_id=did, reason="the IO says 0.60", actor=MANAGER, key=key, now=T0 + timedelta(days=3))
    with pytest.raises(Conflict) as e:
        withdraw_dispute(db, dispute_id=did, actor=MANAGER2, key=key)
    assert f"dispute #{did} was already rejected by {MANAGER}" in str(e.value)
    with db.read() as s:
        d = s.get(Dispute, did)
        assert d is not None and (d.state, d.days_open, d.amount, d.resolution) == (
            "rejected", 3, Decimal("30.00"), "the IO says 0.60")
    with pytest.raises(Invalid) as too_much:
        open_dispute(db, number="INV-2026-000001", category="other", reason="x", actor=OPERATOR, key=key,
                     amount=Decimal("280.01"))
    assert "more than the disputed lines bill (280.00 EUR)" in str(too_much.value)


def test_dispute_slas_per_category_from_the_scenario_with_reminder_and_escalation(db: Database, key: Any,
                                                                                 slack: Any, client: Any) -> None:
    search_and_display(db)
    with pytest.raises(Invalid) as bad:
        load(db, {"dispute_sla": {"weather": {"hours": 1}}})
    assert "dispute_sla: unknown dispute category weather" in str(bad.value)
    load(db, {"dispute_sla": {"duplicate_billing": {"hours": 10, "remind_hours": 2}}})
    dup = open_dispute(db, number="INV-2026-000001", category="duplicate_billing", reason="billed twice",
                       actor=OPERATOR, key=key, now=T0)
    with db.read() as s:
        d = s.get(Dispute, dup)
        assert d is not None and (d.remind_at, d.due_at) == (T0 + timedelta(hours=2), T0 + timedelta(hours=10))
    withdraw_dispute(db, dispute_id=dup, actor=MANAGER, key=key, now=T0)
    other = open_dispute(db, number="INV-2026-000001", category="invalid_traffic", reason="bots", actor=OPERATOR,
                         key=key, now=T0)
    with db.read() as s:  # no SLA in the file for this category: the default, reminder at half
        d = s.get(Dispute, other)
        assert d is not None and (d.remind_at, d.due_at) == (T0 + timedelta(hours=60), T0 + timedelta(hours=120))

    assert slack_disputes.sweep(db, now=T0 + timedelta(hours=59), client=client, key=key).reminded == []
    first = slack_disputes.sweep(db, now=T0 + timedelta(hours=61), client=client, key=key)
    assert (first.reminded, first.escalated) == ([other], [])
    assert slack_disputes.sweep(db, now=T0 + timedelta(hours=62), client=client, key=key).reminded == []
    late = slack_disputes.sweep(db, now=T0 + timedelta(hours=121), client=client, key=key,
                                managers_channel="billing-managers")
    assert (late.reminded, late.escalated) == ([], [other])
    assert slack_disputes.sweep(db, now=T0 + timedelta(hours=122), client=client, key=key).escalated == []
    posts = [c["text"] for c in slack.calls_to("chat.postMessage")]
    assert any(f"<@{OPERATOR}>: dispute #{other} on INV-2026-000001" in t and "is still open" in t for t in posts)
    assert any(t.startswith(":rotating_light: Dispute SLA breached") and f"dispute #{other}" in t for t in posts)
    with db.read() as s:
        actions = list(s.execute(select(AuditLog.action).where(AuditLog.subject_type == "dispute",
                                                               AuditLog.subject_id == str(other))
                                 .order_by(AuditLog.id)).scalars())
    assert actions == ["dispute.opened", "dispute.reminded", "dispute.escalated"]


def test_the_digest_shows_open_disputes_median_days_to_resolve_and_top_categories(db: Database, key: Any) -> None:
    search_and_display(db)
    a = open_dispute(db, number="INV-2026-000001", category="invalid_traffic", reason="bots", actor=OPERATOR,
                     key=key, now=T0)
    reject_dispute(db, dispute_id=a, reason="counted by both", actor=MANAGER, key=key, now=T0 + timedelta(days=2))
    b = open_dispute(db, number="INV-2026-000001", category="invalid_traffic", reason="more bots", actor=OPERATOR,
                     key=key, now=T0 + timedelta(days=3))
    withdraw_dispute(db, dispute_id=b, actor=MANAGER, key=key, now=T0 + timedelta(days=7))
    open_dispute(db, number="INV-2026-000001", category="rate_disagreement", reason="rate", actor=OPERATOR, key=key,
                 amount=Decimal("40.00"), now=T0 + timedelta(days=8))
    st = dispute_stats(db, now=T0 + timedelta(days=10))
    assert (st.open_count, st.open_amount, st.median_days_to_resolve, st.resolved) == (
        1, {"EUR": Decimal("40.00")}, 3.0, 2)
    assert st.top_categories == [("invalid_traffic", 2), ("rate_disagreement", 1)]
    with db.read() as s:
        data = collect(s, now=T0 + timedelta(days=10))
    text = "\n".join(str(b.to_dict()) for b in digest_blocks(data))
    assert "*Disputes:* 1 open · 40.00 EUR" in text
    assert "Median time to resolve: 3 days (2 resolved) · top categories: invalid traffic (2), rate disagreement (1)" \
        in text
    # 90 days later the window is empty: only the open one is left
    late = dispute_stats(db, now=T0 + timedelta(days=120))
    assert (late.open_count, late.median_days_to_resolve, late.top_categories) == (1, None, [])
