"""Billing runs: invoices per advertiser, thresholds with carry-over, resumable runs, gapless numbers,
credit notes, FX locking, VAT on the document."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from billing.errors import Conflict, Invalid, NotAllowed
from bot.workflows.billing_run import InjectedFailure, finalize_for_advertiser, run_billing, withdraw_items
from bot.workflows.fx import import_ecb_csv
from bot.workflows.invoices import credit_note, get_invoice, list_invoices
from bot.workflows.preinvoices import create_preinvoices, list_preinvoices
from storage.db import Database
from storage.models import (
    AuditLog,
    BillingException,
    BillingRun,
    Invoice,
    InvoiceLine,
    JobLog,
    NumberSequence,
    PreInvoice,
)
from tests.factories import advertiser, campaign, entity, linear, load, monthly_advertisers, scenario

from .conftest import NOW

pytestmark = pytest.mark.usefixtures("no_variance")  # variance checks off unless with_variance

D = Decimal
TODAY = date(2026, 3, 1)


def _prepare(db: Database, key: Any, period: str = "2026-02") -> None:
    create_preinvoices(db, period=period, actor="cli:op", key=key, now=NOW)


def _numbers(db: Database, kind: str = "invoice") -> list[str]:
    return [v.number for v in list_invoices(db, kind=kind)]


def test_run_creates_one_invoice_per_advertiser_with_the_log_lines(db: Database, key: Any, events: list) -> None:
    load(db, monthly_advertisers(3))
    _prepare(db, key)
    r = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert r.created == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
    assert r.log == [f"Document INV-2026-00000{i + 1} created for Autohaus adv {i:03d}" for i in range(3)]
    assert (r.skipped, r.held) == ([], [])
    inv = get_invoice(db, "INV-2026-000001")
    assert (inv.net, inv.vat, inv.gross, inv.vat_category) == (D("1000.00"), D("190.00"), D("1190.00"), "S")
    assert (inv.issue_date, inv.due_date, inv.service_start, inv.service_end) == (
        TODAY, TODAY + timedelta(days=14), date(2026, 2, 1), date(2026, 2, 28))
    with db.read() as s:
        row = s.execute(select(Invoice).where(Invoice.number == "INV-2026-000001")).scalar_one()
        assert row.parties["seller"]["vat_id"] == "DE811907980" and row.parties["buyer"]["name"] == "Autohaus adv 000"
        assert row.approvals[0]["approved_by"] == "system" and row.billing_run_id == r.run_id
        assert [j.message for j in s.execute(select(JobLog).where(JobLog.run_id == r.run_id)
                                             .order_by(JobLog.id)).scalars()] == r.log
        assert s.get(BillingRun, r.run_id).state == "done"  # type: ignore[union-attr]
        assert {p.state for p in s.execute(select(PreInvoice)).scalars()} == {"invoiced"}
        # issued invoices are immutable
        row.net = D("1.00")
        with pytest.raises(NotAllowed):
            s.flush()
    finalized = [kw for name, kw in events if name == "invoice.finalized"]
    assert len(finalized) == 3 and all(kw["billing_run_id"] == r.run_id for kw in finalized)
    # a second run of the same period finds nothing left to bill
    assert run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY).created == []


def test_below_threshold_is_skipped_carried_over_and_invoiced_once_the_sum_passes(db: Database, key: Any) -> None:
    load(db, scenario(advertisers=[advertiser("nord", "Autohaus Nord", threshold="250.00")],
                      campaigns=[campaign("c", "nord", [linear("x", "2160.00", period="even")])]))
    _prepare(db, key, "2026-01")
    jan = run_billing(db, period="2026-01", actor="cli:op", key=key, today=date(2026, 2, 1))
    assert jan.created == []
    assert jan.log == ["Skipped items with a total of 180.00 EUR for Autohaus Nord (threshold 250.00 EUR)"]
    assert jan.skipped == [{"advertiser": "Autohaus Nord", "advertiser_id": "nord", "total": "180.00",
                            "threshold": "250.00", "currency": "EUR"}]
    with db.read() as s:
        exc = s.execute(select(BillingException)).scalar_one()
        assert (exc.kind, exc.state, exc.amount, exc.billing_run_id) == ("below_threshold", "pending", D("180.00"),
                                                                         jan.run_id)
    _prepare(db, key, "2026-02")
    feb = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert feb.created == ["INV-2026-000001"] and feb.skipped == []
    inv = get_invoice(db, "INV-2026-000001")
    assert inv.net == D("360.00")
    assert [(x.period_start, x.amount) for x in inv.lines] == [(date(2026, 1, 1), D("180.00")),
                                                              (date(2026, 2, 1), D("180.00"))]
    with db.read() as s:
        assert s.execute(select(BillingException.state)).scalar_one() == "closed"


def test_force_and_reject_on_a_skip(db: Database, key: Any) -> None:
    load(db, scenario(advertisers=[advertiser("a", threshold="500.00"), advertiser("b", threshold="500.00")],
                      campaigns=[campaign("ca", "a", [linear("xa", "1200.00")]),
                                 campaign("cb", "b", [linear("xb", "1200.00")])]))
    _prepare(db, key)
    assert len(run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY).skipped) == 2
    with db.transaction() as s:
        invs = finalize_for_advertiser(s, advertiser_id="a", period_end=date(2026, 2, 28), actor="U3",
                                       signing_key=key, today=TODAY, billing_run_id=None, ignore_threshold=True)
        assert [i.number for i in invs] == ["INV-2026-000001"]
        ids = list(s.execute(select(PreInvoice.id).where(PreInvoice.advertiser_id == "b")).scalars())
        assert withdraw_items(s, advertiser_id="b", preinvoice_ids=ids, actor="U2", signing_key=key,
                              reason="client cancelled", now=NOW) == ids
    assert {v.advertiser_id: v.state for v in list_preinvoices(db)} == {"a": "invoiced", "b": "cancelled"}


def _assert_gapless(db: Database) -> None:
    with db.read() as s:
        rows = s.execute(select(Invoice.legal_entity_id, Invoice.series, Invoice.year, Invoice.seq)).all()
        seqs: dict[tuple[str, str, int], list[int]] = {}
        for le, series, year, seq in rows:
            seqs.setdefault((le, series, year), []).append(seq)
        for k, got in seqs.items():
            assert sorted(got) == list(range(1, len(got) + 1)), k
            last = s.execute(select(NumberSequence.last_seq).where(
                NumberSequence.legal_entity_id == k[0], NumberSequence.series == k[1],
                NumberSequence.year == k[2])).scalar_one()
            assert last == len(got)
        dup = s.execute(select(InvoiceLine.preinvoice_line_id, func.count()).where(InvoiceLine.credited_line_id.is_(None))
                        .group_by(InvoiceLine.preinvoice_line_id).having(func.count() > 1)).all()
        assert dup == []


def test_a_killed_run_is_completed_by_a_rerun_without_duplicates_or_gaps(db: Database, key: Any, backend: str) -> None:
    load(db, monthly_advertisers(5))
    _prepare(db, key)
    with pytest.raises(InjectedFailure):
        run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY, fail_after=2)
    assert _numbers(db) == ["INV-2026-000001", "INV-2026-000002"]
    with db.read() as s:
        failed = s.execute(select(BillingRun)).scalar_one()
        assert (failed.state, failed.lock_key) == ("failed", None)
        assert "injected failure after 2 invoices" in failed.summary["error"]
    again = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert again.created == ["INV-2026-000003", "INV-2026-000004", "INV-2026-000005"]
    _assert_gapless(db)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 5
        assert {p.state for p in s.execute(select(PreInvoice)).scalars()} == {"invoiced"}


def test_only_one_run_per_period_at_a_time(db: Database, key: Any) -> None:
    load(db, monthly_advertisers(1))
    _prepare(db, key)
    now = datetime.now(UTC)
    with db.transaction() as s:
        s.add(BillingRun(period="2026-02", period_start=date(2026, 2, 1), period_end=date(2026, 2, 28),
                         state="running", started_by="U9", started_at=now, summary={"heartbeat": now.isoformat()},
                         lock_key="billing:2026-02-01..2026-02-28"))
    with pytest.raises(Conflict) as e:
        run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert "billing run 1 for 2026-02 is already running (started by U9" in str(e.value)
    # a different period is not blocked; a dry run never takes the lock
    assert run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY, dry_run=True).created
    # a run whose process died (stale heartbeat) is taken over
    with db.transaction() as s:
        run = s.get(BillingRun, 1)
        run.summary = {"heartbeat": (now - timedelta(hours=1)).isoformat()}  # type: ignore[union-attr]
    r = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert r.created == ["INV-2026-000001"]
    with db.read() as s:
        assert s.get(BillingRun, 1).state == "failed"  # type: ignore[union-attr]


def test_dry_run_writes_nothing(db: Database, key: Any) -> None:
    load(db, scenario(advertisers=[advertiser("a"), advertiser("b", threshold="5000.00")],
                      campaigns=[campaign("ca", "a", [linear("xa", "1200.00")]),
                                 campaign("cb", "b", [linear("xb", "1200.00")])]))
    _prepare(db, key)

    def counts() -> tuple[int, ...]:
        with db.read() as s:
            return tuple(s.scalar(select(func.count()).select_from(m)) for m in  # type: ignore[misc]
                         (Invoice, InvoiceLine, NumberSequence, AuditLog, BillingException, BillingRun, JobLog))

    before = counts()
    r = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY, dry_run=True)
    assert r.dry_run and r.run_id is None and r.created == ["INV-2026-000001"] and len(r.skipped) == 1
    assert counts() == before
    assert {v.state for v in list_preinvoices(db)} == {"approved"}


def test_held_pre_invoices_are_reported_with_the_reason(db: Database, key: Any) -> None:
    load(db, scenario(advertisers=[advertiser("lyon", "Garage Lyon", country="FR"), advertiser("nord")],
                      campaigns=[campaign("cl", "lyon", [linear("x", "1200.00")], start="2026-02-01",
                                          end="2026-02-28"),
                                 campaign("cn", "nord", [linear("y", "1200.00")], start="2026-02-01",
                                          end="2026-02-28")]))
    _prepare(db, key)
    nord = next(v for v in list_preinvoices(db) if v.advertiser_id == "nord")
    with db.transaction() as s:
        s.add(BillingException(key="variance:x", kind="variance", legal_entity_id="northwind", advertiser_id="nord",
                               preinvoice_id=nord.id, currency="EUR", cause="under_delivery", created_at=NOW,
                               updated_at=NOW))
        s.get(PreInvoice, nord.id).state = "pending"  # type: ignore[union-attr]
    r = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert r.created == []
    reasons = {h["advertiser"]: h["reason"] for h in r.held}
    assert reasons == {
        "Garage Lyon": "problems: missing VAT data: the advertiser has no VAT id (needed for reverse charge to FR)",
        "Nord": "waiting for a decision on 1 open exception"}
    assert r.log[0].startswith("Held pre-invoice 1 (Campaign cl, 2026-02-01..2026-02-28) for Garage Lyon: problems:")


def test_reverse_charge_export_and_locked_exchange_rate(db: Database, key: Any) -> None:
    load(db, scenario(
        advertisers=[advertiser("lyon", country="FR", vat_id="FR40303265045"),
                     advertiser("zurich", country="CH", currency="CHF"),
                     advertiser("ny", country="US", currency="USD")],
        campaigns=[campaign(f"c-{a}", a, [linear(f"x-{a}", "1200.00")], start="2026-02-01", end="2026-02-28")
                   for a in ("lyon", "zurich", "ny")]))
    r = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)
    assert sorted(p[0] for p in r.problems.values()) == [
        f"missing exchange rate {c}→EUR for 2026-03-01 (FX rule issue_date: the rate of the issue date, "
        "at most 7 days older): no rate published 2026-02-22..2026-03-01" for c in ("CHF", "USD")]
    import_ecb_csv(db, text="Date,USD,CHF,\n2026-02-27,1.0812,0.9412,\n", actor="t", key=key, now=NOW)
    create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)
    run = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert len(run.created) == 3
    by_adv = {v.advertiser_id: v for v in list_invoices(db)}
    fr, ch, us = by_adv["lyon"], by_adv["zurich"], by_adv["ny"]
    assert (fr.vat_category, fr.vat, fr.fx) == ("AE", D("0.00"), None)
    assert fr.vat_note == "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Council Directive 2006/112/EC)"
    assert (ch.vat_category, ch.currency, ch.vat_note) == ("O", "CHF", "Export of services: not subject to VAT in Germany")
    assert ch.fx == {"from": "CHF", "to": "EUR", "rate": "1.0624734382", "date": "2026-02-27", "source": "ECB", "rule": "issue_date",
                     "net": "1274.97", "vat": "0.00", "gross": "1274.97"}
    assert us.fx is not None and us.fx["rate"] == "0.9248982612"


def test_credit_notes_cancel_all_or_some_lines_in_their_own_series(db: Database, key: Any) -> None:
    load(db, scenario(advertisers=[advertiser("nord")],
                      campaigns=[campaign("c", "nord", [linear("a", "1200.00", period="even"), linear("b", "2400.00", period="even")])]))
    _prepare(db, key)
    run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    inv = get_invoice(db, "INV-2026-000001")
    partial = credit_note(db, number=inv.number, line_ids=[inv.lines[1].id], reason="wrong rate", actor="cli:op",
                          key=key, today=TODAY)
    assert partial.number == "CN-2026-000001"
    cn = get_invoice(db, "CN-2026-000001")
    assert (cn.kind, cn.references, cn.net, cn.vat, cn.gross) == ("credit_note", inv.number, D("-200.00"),
                                                                   D("-38.00"), D("-238.00"))
    assert cn.lines[0].credited_line_id == inv.lines[1].id and cn.reason == "wrong rate"
    with pytest.raises(Invalid) as e:
        credit_note(db, number=inv.number, line_ids=[inv.lines[1].id], reason="again", actor="x", key=key,
                    today=TODAY)
    assert "already credited" in str(e.value)
    rest = credit_note(db, number=inv.number, line_ids=None, reason="cancelled", actor="cli:op", key=key, today=TODAY)
    assert rest.number == "CN-2026-000002" and rest.net == D("-100.00")
    with pytest.raises(NotAllowed):
        credit_note(db, number=inv.number, line_ids=None, reason="thrice", actor="x", key=key, today=TODAY)
    with pytest.raises(NotAllowed):
        credit_note(db, number="CN-2026-000001", line_ids=None, reason="no", actor="x", key=key, today=TODAY)
    assert _numbers(db) == ["INV-2026-000001"] and _numbers(db, "credit_note") == ["CN-2026-000001", "CN-2026-000002"]


ops = st.lists(st.one_of(
    st.tuples(st.just("run"), st.integers(1, 4), st.integers(0, 3), st.none()),
    st.tuples(st.just("crash"), st.integers(1, 4), st.integers(0, 3), st.integers(1, 2)),
    st.tuples(st.just("credit"), st.integers(0, 20), st.booleans(), st.none()),
), min_size=1, max_size=8)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops, n=st.integers(1, 4))
def test_numbers_stay_gapless_under_any_sequence_of_runs_and_credit_notes(
    db: Database, key: Any, sequence: list[tuple[Any, ...]], n: int
) -> None:
    tag = f"e{abs(hash((tuple(sequence), n))) % 10**8}"
    le = f"le-{tag}"
    data = monthly_advertisers(n, prefix=tag)
    data["legal_entities"] = [entity(le)]
    for a in data["advertisers"]:
        a["legal_entity"] = le
    load(db, data)
    mine_advs = [a["id"] for a in data["advertisers"]]
    for op, month, subset, extra in sequence:
        period = f"2026-{month:02d}"
        advs = mine_advs[subset:] or mine_advs
        if op != "credit":
            create_preinvoices(db, period=period, advertisers=mine_advs, actor="t", key=key, now=NOW)
        if op == "run":
            run_billing(db, period=period, advertisers=advs, actor="t", key=key, today=TODAY)
        elif op == "crash":
            try:
                run_billing(db, period=period, advertisers=advs, actor="t", key=key, today=TODAY, fail_after=extra)
            except InjectedFailure:
                pass
        else:
            mine = [v for v in list_invoices(db, kind="invoice") if v.legal_entity == le]
            if mine:
                target = mine[month % len(mine)]
                try:
                    credit_note(db, number=target.number, line_ids=None if subset else [target.lines[0].id],
                                reason="property", actor="t", key=key, today=TODAY, legal_entity_id=le)
                except (NotAllowed, Invalid):
                    pass  # already fully credited
    _assert_gapless(db)
