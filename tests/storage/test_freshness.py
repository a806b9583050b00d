"""Data freshness (issue 21): a tracker whose data ends before the period end holds the pre-invoices it
feeds with a ``stale_source`` exception; after a sync that reaches the period end, the rerun bills them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from bot.workflows import freshness
from bot.workflows.sync import run_sync
from storage.db import Database
from storage.loader import load_scenario
from storage.models import AuditLog, BillingException, Invoice, PreInvoice
from tests.factories import MANAGER, OPERATOR, add_user
from tests.fakes.tracker import FakeTracker
from tests.storage.conftest import SCENARIO, Sleeps, connector, stat

runner = CliRunner()
ADDRESS = {"street": "Hafenstrasse 1", "postcode": "20457", "city": "Hamburg"}


@pytest.fixture
def scenario(db: Database) -> Database:
    """The sync tests' scenario with postal addresses and only the display item (tracker offer 101)."""
    sc = copy.deepcopy(SCENARIO)
    sc["legal_entities"][0].update(ADDRESS)
    sc["advertisers"][0].update(ADDRESS)
    sc["campaigns"][0]["items"] = sc["campaigns"][0]["items"][:1]
    load_scenario(db, sc)
    return db


@pytest.fixture(autouse=True)
def _no_variance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the freshness check holds here (the display item delivers below its booking)."""
    import bot.workflows.variance_checks as variance_checks

    monkeypatch.setattr(variance_checks, "run_variance_checks", lambda *_a, **_kw: None)


def _json(*args: str) -> Any:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _days(first: int, last: int) -> list[dict[str, Any]]:
    return [stat(f"2026-02-{d:02d}", "101", "5", 15000, 100, revenue="63.00") for d in range(first, last + 1)]


def _sync(db: Database, key: Any, sleeps: Sleeps, now: datetime) -> None:
    res = run_sync(db, source="tracker", mode="standard", actor=OPERATOR, signing_key=key, now=now,
                   connector=connector(sleeps))
    assert res.state == "done"


def test_run_holds_stale_tracker_data_and_bills_after_the_sync(scenario: Database, key: Any,
                                                              source_env: FakeTracker, sleeps: Sleeps) -> None:
    db = scenario
    add_user(db, OPERATOR, ["operator"])
    load_scenario(db, {"freshness": {"tracker": {"days": 2}}})
    source_env.stats += _days(1, 20)
    _sync(db, key, sleeps, datetime(2026, 3, 3, 8, 0, tzinfo=UTC))  # tracker data until 2026-02-20

    created = _json("preinvoices", "create", "--period", "2026-02")
    [pid] = created["created"]
    assert created["approved"] == [] and created["pending"] == [pid]
    [stale] = created["stale_source"]
    assert stale["id"] == pid and stale["sources"][0].startswith(
        "tracker: data until 2026-02-20, before the period end 2026-02-28; target missed (due 2026-03-02)")

    run = _json("run", "--period", "2026-02")
    assert run["created"] == []
    assert [(p["problem"], p["source"], p["data_until"], p["period_end"], p["preinvoice"]) for p in run["problems"]] == [
        ("stale_source", "tracker", "2026-02-20", "2026-02-28", pid)]
    assert [h["preinvoice"] for h in run["held"]] == [pid]
    assert run["log"][0].startswith("stale_source: tracker has data until 2026-02-20, before the period end 2026-02-28")
    with db.read() as s:
        exc = s.execute(select(BillingException).where(BillingException.kind == "stale_source")).scalar_one()
        assert (exc.state, exc.preinvoice_id, exc.evidence["target_missed"]) == ("pending", pid, True)
        assert s.get(PreInvoice, pid).state == "pending"
        net_before = s.get(PreInvoice, pid).net

    # the tracker catches up; the rerun recomputes the pre-invoice from the new data and bills it
    source_env.stats += _days(21, 28)
    _sync(db, key, sleeps, datetime(2026, 3, 4, 8, 0, tzinfo=UTC))
    run = _json("run", "--period", "2026-02")
    assert run["problems"] == [] and len(run["created"]) == 1
    with db.read() as s:
        exc = s.get(BillingException, exc.id)
        pi = s.get(PreInvoice, pid)
        inv = s.execute(select(Invoice).where(Invoice.number == run["created"][0])).scalar_one()
        assert exc.state == "closed" and pi.state == "invoiced" and pi.invoice_id == inv.id
        assert pi.net > net_before  # billed from the data up to the period end, not the stale days
        closed = s.execute(select(AuditLog.action).where(AuditLog.subject_type == "exception",
                                                         AuditLog.subject_id == str(exc.id))).scalars().all()
        assert closed == ["exception.opened", "exception.closed"]


def test_force_by_a_finance_manager_bills_stale_data_and_approve_is_refused(
        scenario: Database, key: Any, source_env: FakeTracker, sleeps: Sleeps) -> None:
    from billing.errors import Invalid
    from bot.workflows.decisions import decide, subject_hash_of

    db = scenario
    add_user(db, OPERATOR, ["operator"])
    add_user(db, MANAGER, ["finance_manager", "approver"])
    load_scenario(db, {"freshness": {"tracker": {"days": 2, "block": True}}})
    source_env.stats += _days(1, 20)
    _sync(db, key, sleeps, datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    _json("preinvoices", "create", "--period", "2026-02")
    with db.read() as s:
        exc = s.execute(select(BillingException).where(BillingException.kind == "stale_source")).scalar_one()
        digest = subject_hash_of(exc)
    with pytest.raises(Invalid, match="stale source data is not approved"):
        decide(db, exception_id=exc.id, decision="approve", actor=MANAGER, subject_hash=digest, reason=None,
               signing_key=key)
    decide(db, exception_id=exc.id, decision="force", actor=MANAGER, subject_hash=digest,
           reason="client accepted the tracker figures up to the 20th", signing_key=key)
    run = _json("run", "--period", "2026-02")
    assert len(run["created"]) == 1  # the override stands for exactly this data
    assert [p["source"] for p in run["problems"]] == ["tracker"]


def test_freshness_report_states(scenario: Database, key: Any, source_env: FakeTracker, sleeps: Sleeps) -> None:
    db = scenario
    load_scenario(db, {"freshness": {"tracker": {"days": 2}, "gam": {"days": 5}}})
    source_env.stats += _days(1, 28)
    _sync(db, key, sleeps, datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    with db.read() as s:
        rows = {r.source: r for r in freshness.report(s, date(2026, 3, 9))}
    assert (rows["tracker"].state, rows["tracker"].data_until) == ("ok", date(2026, 2, 28))
    assert (rows["gam"].state, rows["gam"].due) == ("missed", date(2026, 2, 28) + timedelta(days=5))
    with db.read() as s:
        assert freshness.report(s, date(2026, 3, 3))[0].state == "waiting"  # gam: due 2026-03-05


def test_digest_shows_the_freshness_targets(scenario: Database, key: Any, source_env: FakeTracker,
                                            sleeps: Sleeps) -> None:
    from bot.blocks.digest import digest_blocks
    from bot.workflows.digest import collect

    db = scenario
    load_scenario(db, {"freshness": {"tracker": {"days": 2}, "gam": {"days": 5}}})
    source_env.stats += _days(1, 20)
    _sync(db, key, sleeps, datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    with db.read() as s:
        data = collect(s, now=datetime(2026, 3, 9, 8, 0, tzinfo=UTC))
    text = json.dumps([b.to_dict() for b in digest_blocks(data)], ensure_ascii=False)
    assert "target: data until 2026-02-28 by 2026-03-02 \u2014 missed" in text  # tracker, data until 02-20
    assert ":warning: *gam* \u2014 last sync never synced · target: data until 2026-02-28 by 2026-03-05 \u2014 missed" in text


def test_a_missed_target_is_raised_to_the_operators_once(scenario: Database, key: Any, source_env: FakeTracker,
                                                         sleeps: Sleeps, slack: Any, client: Any) -> None:
    from bot.slack.freshness import alert_missed

    db = scenario
    add_user(db, OPERATOR, ["operator"])
    load_scenario(db, {"freshness": {"tracker": {"days": 2}}})
    source_env.stats += _days(1, 20)
    _sync(db, key, sleeps, datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    assert alert_missed(db, client=client, key=key, now=datetime(2026, 3, 2, 10, 0, tzinfo=UTC)) == []  # not yet due
    assert alert_missed(db, client=client, key=key, now=datetime(2026, 3, 3, 10, 0, tzinfo=UTC)) == ["tracker"]
    assert alert_missed(db, client=client, key=key, now=datetime(2026, 3, 3, 10, 1, tzinfo=UTC)) == []  # once
    [post] = slack.calls_to("chat.postMessage")
    assert post["text"].startswith(f":warning: <@{OPERATOR}>: freshness target missed — *tracker* has data until "
                                   "2026-02-20; the month ending 2026-02-28 needed it by 2026-03-02.")
    with db.read() as s:
        [rec] = s.execute(select(AuditLog).where(AuditLog.action == "freshness.missed")).scalars().all()
        assert (rec.subject_type, rec.subject_id, rec.actor) == ("source", "tracker", "system")
