"""run_variance_checks and the exception lifecycle, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import context
from bot.workflows import effects
from bot.workflows.exceptions import close_exception, open_exceptions_for
from bot.workflows.variance_checks import exception_key, run_variance_checks
from storage.models import AuditLog, BillingException, DeliveryFact, PreInvoice
from tests.factories import FEB, JAN, NOW, daily, item, master, rate
from tests.factories import variance_preinvoice as preinvoice

# a CPM item Jan 1 – Mar 31 (90 days), 900,000 impressions booked at 4.00: 280,000 expected in February
LINE = {"item_id": "display", "amount": "896.00", "quantity": "224", "unit_price": "4.00"}


@pytest.fixture
def events():  # type: ignore[no-untyped-def]
    seen: list[tuple[str, int]] = []
    names = ("exception.opened", "exception.updated", "exception.closed", "preinvoice.changed")

    def record(name: str, kw: Mapping[str, Any]) -> None:
        if name in names:
            seen.append((name, kw.get("exception_id") or kw.get("preinvoice_id")))

    previous = effects.install(record)
    yield seen
    effects.install(previous)


def setup_under_delivery(db, **master_kw):  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        master(s, **master_kw)
        item(s)
        daily(s, "display", *FEB, per_day=8000)  # 224,000: -20 %
        return preinvoice(s, FEB, [LINE]).id


def check(db, key, ids, now=NOW):  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        return run_variance_checks(s, ids, actor="U01OPERATOR", signing_key=key, now=now)


def audit_actions(db) -> list[str]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return list(s.execute(select(AuditLog.action).order_by(AuditLog.id)).scalars())


def test_a_variance_opens_a_pending_exception_with_evidence(db, key, events) -> None:  # type: ignore[no-untyped-def]
    pid = setup_under_delivery(db)
    res = check(db, key, [pid])
    assert res.checked == (pid,) and res.pending == (pid,) and len(res.opened) == 1 and res.variances == 1
    with db.read() as s:
        e = s.execute(select(BillingException)).scalar_one()
        pi = s.get(PreInvoice, pid)
        fact_ids = sorted(s.execute(select(DeliveryFact.id)).scalars())
        assert pi is not None and pi.state == "pending"
    assert (e.key, e.kind, e.state, e.preinvoice_id) == (exception_key(pid), "variance", "pending", pid)
    assert (e.advertiser_id, e.legal_entity_id, e.currency, e.cause) == ("elbe", "nw", "EUR", "under_delivery")
    assert e.amount == Decimal("224.00")
    assert e.due_at == NOW + timedelta(hours=24) and e.remind_at == NOW + timedelta(hours=12)
    assert e.approvals_needed == 1 and e.channel == "billing-exceptions" and e.started_by == "U01OPERATOR"
    assert (e.period_start, e.period_end) == FEB
    ev = e.evidence
    assert ev["rule"] == "delivered_vs_booked" and ev["cause"] == "under_delivery"
    assert ev["tolerance"] == "0.1" and ev["tolerance_source"] == "default"
    assert ev["figures"]["delivered"] == "224000" and ev["figures"]["expected"] == "280000"
    assert ev["days"] == [d.isoformat() for d in (FEB[0] + timedelta(days=i) for i in range(28))]
    assert ev["row_ids"] == fact_ids
    assert ev["booked_amount"] == "1120.00" and ev["computed_amount"] == "896.00"
    assert len(ev["findings"]) == 1
    assert "224000 impressions delivered vs 280000 booked" in e.summary
    assert audit_actions(db) == ["key.registered", "exception.opened", "preinvoice.pending"]
    assert ("exception.opened", e.id) in events and ("preinvoice.changed", pid) in events
    with db.read() as s:
        assert [x.id for x in open_exceptions_for(s, pid)] == [e.id]


def test_rerun_is_idempotent(db, key, events) -> None:  # type: ignore[no-untyped-def]
    pid = setup_under_delivery(db)
    first = check(db, key, [pid])
    events.clear()
    again = check(db, key, [pid], now=NOW + timedelta(hours=3))
    assert again.opened == () and again.updated == () and again.unchanged == first.opened
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(BillingException)) == 1
        e = s.execute(select(BillingException)).scalar_one()
        assert e.version == 1 and e.due_at == NOW + timedelta(hours=24)
    assert audit_actions(db) == ["key.registered", "exception.opened", "preinvoice.pending"]  # nothing new written
    assert events == []


def test_changed_data_updates_the_open_exception_in_place(db, key, events) -> None:  # type: ignore[no-untyped-def]
    pid = setup_under_delivery(db)
    (eid,) = check(db, key, [pid]).opened
    with db.transaction() as s:
        for f in s.execute(select(DeliveryFact)).scalars():
            f.impressions = 7000  # worse: -30 %
    events.clear()
    res = check(db, key, [pid], now=NOW + timedelta(hours=5))
    assert res.updated == (eid,) and res.opened == ()
    with db.read() as s:
        e = s.execute(select(BillingException)).scalar_one()
    assert e.id == eid and e.version == 2 and e.state == "pending"
    assert e.evidence["figures"]["delivered"] == "196000"
    assert e.amount == Decimal("336.00")
    assert e.due_at == NOW + timedelta(hours=24)  # SLA timers kept
    assert e.updated_at == NOW + timedelta(hours=5)
    assert audit_actions(db)[-1] == "exception.updated"
    assert events == [("exception.updated", eid)]


def test_no_longer_breached_closes_the_exception(db, key, events) -> None:  # type: ignore[no-untyped-def]
    pid = setup_under_delivery(db)
    (eid,) = check(db, key, [pid]).opened
    with db.transaction() as s:
        for f in s.execute(select(DeliveryFact)).scalars():
            f.impressions = 10000  # the missing report arrived
    events.clear()
    res = check(db, key, [pid])
    assert res.closed == (eid,) and res.pending == ()
    with db.read() as s:
        e = s.get(BillingException, eid)
        assert e is not None and e.state == "closed" and "no longer breached" in (e.reason or "")
        assert open_exceptions_for(s, pid) == []
    assert audit_actions(db)[-1] == "exception.closed"
    assert events == [("exception.closed", eid)]
    assert check(db, key, [pid]).closed == ()  # closing is done once


def test_a_decision_stands_for_the_same_data_and_changed_data_reopens(db, key) -> None:  # type: ignore[no-untyped-def]
    pid = setup_under_delivery(db)
    (eid,) = check(db, key, [pid]).opened
    with db.transaction() as s:  # what the decisions workflow leaves behind
        e = s.get(BillingException, eid)
        e.state, e.decision, e.decided_by, e.decided_at = "approved", "approve", "U02APPROVER", NOW
        s.get(PreInvoice, pid).state = "draft"
    res = check(db, key, [pid], now=NOW + timedelta(days=1))
    assert res.unchanged == (eid,) and res.pending == ()
    with db.read() as s:
        assert s.get(BillingException, eid).state == "approved"
        assert s.get(PreInvoice, pid).state == "draft"
    with db.transaction() as s:
        s.execute(select(DeliveryFact)).scalars().first().impressions = 100
    later = NOW + timedelta(days=2)
    res = check(db, key, [pid], now=later)
    assert res.opened == (eid,)
    with db.read() as s:
        e = s.get(BillingException, eid)
        assert e.state == "pending" and e.decision is None and e.decided_by is None
        assert e.due_at == later + timedelta(hours=24)
        assert s.get(PreInvoice, pid).state == "pending"
        assert s.scalar(select(func.count()).select_from(BillingException)) == 1


def test_tolerance_precedence_from_the_database(db, key) -> None:  # type: ignore[no-untyped-def]
    # -20 % delivered: the advertiser's 25 % wins over the legal entity's 5 %
    pid = setup_under_delivery(db, le_tol="0.05", adv_tol="0.25")
    assert check(db, key, [pid]).pending == ()
    with db.transaction() as s:  # the campaign's 15 % wins over the advertiser
        from storage.models import Campaign, CampaignItem
        s.get(Campaign, "winter").tolerance = Decimal("0.15")
    check(db, key, [pid])
    with db.read() as s:
        e = s.execute(select(BillingException)).scalar_one()
        assert (e.evidence["tolerance"], e.evidence["tolerance_source"], e.state) == ("0.15", "campaign", "pending")
    with db.transaction() as s:  # and the item's 30 % over the campaign: the exception closes
        s.get(CampaignItem, "display").tolerance = Decimal("0.30")
    assert len(check(db, key, [pid]).closed) == 1


def test_two_approvers_above_the_configured_amount_and_legal_entity_channel(db, key, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TWO_APPROVER_AMOUNT", "200")
    monkeypatch.setenv("SLA_HOURS", "8")
    context.reset()
    pid = setup_under_delivery(db, channel="C0NWEXC")
    check(db, key, [pid])
    with db.read() as s:
        e = s.execute(select(BillingException)).scalar_one()
    assert e.approvals_needed == 2 and e.channel == "C0NWEXC"
    assert e.due_at == NOW + timedelta(hours=8) and e.remind_at == NOW + timedelta(hours=4)


def test_fx_swing_from_stored_rates(db, key) -> None:  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        master(s, adv_currency="USD")
        item(s, booked=None)
        daily(s, "display", *JAN, per_day=10000)
        daily(s, "display", *FEB, per_day=10000)
        rate(s, date(2026, 1, 30), "EUR", "USD", "1.05")  # Friday before Jan 31
        rate(s, date(2026, 2, 27), "EUR", "USD", "1.25")
        pid = preinvoice(s, FEB, [{**LINE, "amount": "1120.00", "quantity": "280"}], currency="USD").id
    res = check(db, key, [pid])
    assert res.pending == (pid,)
    with db.read() as s:
        e = s.execute(select(BillingException)).scalar_one()
    assert e.cause == "fx_swing" and e.currency == "USD"
    f = e.evidence["figures"]
    assert (f["currency"], f["legal_entity_currency"]) == ("USD", "EUR")
    assert f["rate_current"] == "0.8" and f["rate_prior"] == "0.9523809524"
    assert f["le_amount"] == "896.00" and f["le_amount_at_prior_rate"] == "1066.67"
    assert e.evidence["rule"] == "period_over_period"


def test_conversions_from_the_scenario_loader_are_counted_once(db, key) -> None:  # type: ignore[no-untyped-def]
    from storage.loader import load_scenario

    load_scenario(db, {
        "legal_entities": [{"id": "nw", "name": "Northwind", "country": "DE", "currency": "EUR"}],
        "advertisers": [{"id": "elbe", "name": "Elbe", "legal_entity": "nw", "currency": "EUR", "country": "DE"}],
        "campaigns": [{"id": "winter", "advertiser": "elbe", "name": "Winter", "start": "2026-01-01",
                       "end": "2026-03-31", "items": [
                           {"id": "drives", "description": "Test drives", "billing": "delivery", "rate_type": "cpl",
                            "rate": "25.00", "booked_quantity": 90}]}],
        "delivery": [{"item": "drives", "date": f"2026-02-{d:02d}", "source": "first_party", "conversions": 1,
                      "status": "approved"} for d in range(1, 25)],  # 24 of 28 expected
    })
    with db.transaction() as s:
        pid = preinvoice(s, FEB, [{"item_id": "drives", "amount": "600.00", "quantity": "24",
                                   "unit_price": "25.00"}]).id
    res = check(db, key, [pid])
    assert res.variances == 1  # -14 % (24 vs 28), not +71 % from counting conversions twice
    with db.read() as s:
        e = s.execute(select(BillingException)).scalar_one()
    assert e.evidence["figures"]["delivered"] == "24" and e.evidence["figures"]["metric"] == "conversions"
    assert len(e.evidence["conversion_ids"]) == 24
    assert e.cause == "tracking_gap" and e.evidence["days"] == ["2026-02-25", "2026-02-26", "2026-02-27",
                                                               "2026-02-28"]


def test_only_open_pre_invoices_are_checked(db, key) -> None:  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        master(s)
        item(s)
        daily(s, "display", *FEB, per_day=8000)
        approved = preinvoice(s, FEB, [LINE], state="approved").id
    res = check(db, key, [approved])
    assert res.skipped == (approved,) and res.checked == ()
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(BillingException)) == 0


def test_close_exception_refuses_decided_ones(db, key) -> None:  # type: ignore[no-untyped-def]
    from billing.errors import Conflict, NotFound

    pid = setup_under_delivery(db)
    (eid,) = check(db, key, [pid]).opened
    with db.transaction() as s:
        s.get(BillingException, eid).state = "rejected"
    with pytest.raises(Conflict), db.transaction() as s:
        close_exception(s, eid, reason="x", actor="system", signing_key=key, now=NOW)
    with pytest.raises(NotFound), db.transaction() as s:
        close_exception(s, 999, reason="x", actor="system", signing_key=key, now=NOW)


def test_an_insert_that_loses_the_race_updates_the_winner(db, key, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two checks of one pre-invoice at once: the second insert hits the unique key and updates instead."""
    from bot.workflows import exceptions as wf

    pid = setup_under_delivery(db)
    (eid,) = check(db, key, [pid]).opened
    with db.transaction() as s:
        for f in s.execute(select(DeliveryFact)).scalars():
            f.impressions = 7000
    real = wf._by_key
    calls = {"n": 0}

    def blind_first(s, k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return None if calls["n"] == 1 else real(s, k)  # the first look misses the concurrent row

    monkeypatch.setattr(wf, "_by_key", blind_first)
    res = check(db, key, [pid])
    assert calls["n"] == 2 and res.updated == (eid,)
    with db.read() as s:
        e = s.execute(select(BillingException)).scalar_one()
        assert e.id == eid and e.evidence["figures"]["delivered"] == "196000"
