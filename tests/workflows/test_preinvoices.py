"""Pre-invoices: created per campaign and period, idempotent, checked, approved by the system,
edits void approvals."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing.errors import NotAllowed
from bot.workflows.preinvoices import (
    add_line,
    approve_preinvoice,
    create_preinvoices,
    delete_line,
    edit_line,
    get_preinvoice,
    hold_preinvoice,
    list_preinvoices,
    override_to_booked,
)
from storage.db import Database
from storage.mapping import preinvoice_hash
from storage.models import AuditLog, Conversion, DeliveryFact, PreInvoice, PreInvoiceLine
from tests.factories import advertiser, campaign, delivery, entity, linear, load, scenario

from .conftest import NOW

pytestmark = pytest.mark.usefixtures("no_variance")  # variance checks off unless with_variance

D = Decimal


def _basic(db: Database) -> None:
    load(db, scenario(
        advertisers=[advertiser("nord", "Autohaus Nord")],
        campaigns=[campaign("winter", "nord", [linear("search", "7000.00", description="Regional search ads")],
                            start="2026-01-10", end="2026-03-20")],
    ))


def _audit_actions(db: Database, subject_id: int) -> list[tuple[str, str]]:
    with db.read() as s:
        return [(a.actor, a.action) for a in s.execute(
            select(AuditLog).where(AuditLog.subject_type == "preinvoice", AuditLog.subject_id == str(subject_id))
            .order_by(AuditLog.id)).scalars()]


def test_create_is_idempotent_and_clean_ones_are_approved_by_the_system(db: Database, key: object) -> None:
    _basic(db)
    r = create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)  # type: ignore[arg-type]
    assert len(r.created) == 1 and r.approved == r.created and not r.problems
    v = get_preinvoice(db, r.created[0])
    assert (v.period_start, v.period_end, v.state, v.net) == (date(2026, 2, 1), date(2026, 2, 28), "approved",
                                                              D("2800.00"))
    assert (v.vat, v.gross) == (D("532.00"), D("3332.00"))
    assert v.approved_by == "system" and v.approved_hash == v.content_hash
    assert _audit_actions(db, v.id) == [("cli:op", "preinvoice.created"), ("system", "preinvoice.approved")]

    again = create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)  # type: ignore[arg-type]
    assert (again.created, again.updated, again.unchanged) == ([], [], [v.id])
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(PreInvoice)) == 1
        assert s.scalar(select(func.count()).select_from(PreInvoiceLine)) == 1
    assert len(_audit_actions(db, v.id)) == 2

    # a quarter covers every month ending in it; January's remainder period and March's end
    q = create_preinvoices(db, period="2026-Q1", actor="cli:op", key=key, now=NOW)  # type: ignore[arg-type]
    assert len(q.created) == 2 and q.unchanged == [v.id]
    nets = sorted((x.period_start, x.net) for x in list_preinvoices(db))
    assert nets == [(date(2026, 1, 10), D("2200.00")), (date(2026, 2, 1), D("2800.00")),
                    (date(2026, 3, 1), D("2000.00"))]


def test_weekly_campaign_uses_the_entitys_week_start(db: Database, key: object) -> None:
    """The worked example end to end: Sunday weeks, 9,000.00 over Dec 1–9 → 7,000.00 + 2,000.00."""
    load(db, scenario(entities=[entity(sow="sunday")], advertisers=[advertiser("nord")],
                      campaigns=[campaign("wk", "nord", [linear("x", "9000.00")], start="2019-12-01",
                                          end="2019-12-09", interval="weekly")]))
    create_preinvoices(db, period="2019-12", actor="t", key=key, now=NOW)  # type: ignore[arg-type]
    got = [(v.period_start, v.period_end, v.net) for v in list_preinvoices(db)]
    assert got == [(date(2019, 12, 1), date(2019, 12, 7), D("7000.00")),
                   (date(2019, 12, 8), date(2019, 12, 9), D("2000.00"))]


def test_cpm_cpc_cpl_amounts_come_from_first_party_delivery_and_approved_conversions(db: Database, key: object) -> None:
    load(db, scenario(
        advertisers=[advertiser("nord")],
        campaigns=[campaign("c", "nord", [delivery("disp", "cpm", "4.20"), delivery("search", "cpc", "0.35"),
                                          delivery("drives", "cpl", "25.00"), delivery("fee", "flat", "300.00")],
                            start="2026-02-01", end="2026-02-28")],
    ))
    with db.transaction() as s:
        day = date(2026, 2, 1)
        for i in range(10):
            d = day + timedelta(days=i)
            s.add(DeliveryFact(item_id="disp", day=d, source="gam", party="first_party", impressions=12_345))
            s.add(DeliveryFact(item_id="disp", day=d, source="auditor", party="third_party", impressions=99_999))
            s.add(DeliveryFact(item_id="search", day=d, source="ads", party="first_party", clicks=101))
            # a tracker's conversion counter on delivery facts is never the billing basis for cpl
            s.add(DeliveryFact(item_id="drives", day=d, source="logs", party="first_party", conversions=50))
        for i, status in enumerate(["approved"] * 7 + ["pending"] * 2 + ["rejected"]):
            s.add(Conversion(source="logs", external_id=f"td-{i}", item_id="drives", day=day, status=status))
        s.add(Conversion(source="logs", external_id="late", item_id="drives", day=date(2026, 3, 1)))
    create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)  # type: ignore[arg-type]
    (v,) = list_preinvoices(db)
    lines = {x.item: (x.quantity, x.unit_price, x.amount) for x in v.lines}
    assert lines["disp"] == (D("123.45"), D("4.20"), D("518.49"))  # 123,450 impressions / 1,000 × 4.20
    assert lines["search"] == (D(1010), D("0.35"), D("353.50"))
    assert lines["drives"] == (D(7), D("25.00"), D("175.00"))  # approved conversions only
    assert lines["fee"] == (D(1), D("300.00"), D("300.00"))
    assert v.net == D("1346.99") and v.state == "approved"


def test_delivery_item_without_data_is_a_problem_and_blocks_approval(db: Database, key: object) -> None:
    load(db, scenario(advertisers=[advertiser("nord")],
                      campaigns=[campaign("c", "nord", [delivery("disp", "cpm", "4.20"), linear("x", "100.00")],
                                          start="2026-02-01", end="2026-02-28")]))
    r = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)  # type: ignore[arg-type]
    (pid,) = r.created
    assert r.problems == {pid: ["no delivery data for Delivered disp (disp) in this period"]}
    assert get_preinvoice(db, pid).state == "draft"
    with db.transaction() as s, pytest.raises(NotAllowed) as e:
        approve_preinvoice(s, pid, actor="U1", signing_key=key, now=NOW)  # type: ignore[arg-type]
    assert e.value.code == "has_problems"


def test_eu_customer_without_vat_id_is_a_problem(db: Database, key: object) -> None:
    load(db, scenario(advertisers=[advertiser("lyon", country="FR")],
                      campaigns=[campaign("c", "lyon", [linear("x", "100.00")], start="2026-02-01",
                                          end="2026-02-28")]))
    r = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)  # type: ignore[arg-type]
    assert list(r.problems.values()) == [
        ["missing VAT data: the advertiser has no VAT id (needed for reverse charge to FR)"]]


def test_an_address_without_postcode_is_a_problem_named_by_its_law(db: Database, key: object) -> None:
    """Issue 15 item 5: a one-line address of an older file that names no postcode (and a seller without
    a city) holds the pre-invoice: § 14 Abs. 4 Nr. 1 UStG wants the full address of both parties."""
    old = {k: v for k, v in advertiser("nord").items() if k not in ("street", "postcode", "city")}
    seller = {**entity(), "address": "Hafenstrasse 1"}
    load(db, scenario(entities=[seller], advertisers=[{**old, "address": "Hauptstrasse 106, Frankfurt"}],
                      campaigns=[campaign("c", "nord", [linear("x", "100.00")], start="2026-02-01",
                                          end="2026-02-28")]))
    r = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)  # type: ignore[arg-type]
    (pid,) = r.created
    assert r.problems == {pid: ["seller address: postcode missing (§ 14 Abs. 4 Nr. 1 UStG)",
                                "seller address: city missing (§ 14 Abs. 4 Nr. 1 UStG)",
                                "buyer address: postcode missing (§ 14 Abs. 4 Nr. 1 UStG)"]}
    assert get_preinvoice(db, pid).state == "draft"
    # a row stored before structured addresses (only the one line) is read through the same parser
    from storage.mapping import postal_address
    from storage.models import Advertiser

    with db.read() as s:
        adv = s.get(Advertiser, "nord")
        assert adv is not None
        adv.street = adv.postcode = adv.city = None
        adv.address = "Hauptstrasse 106, 60311 Frankfurt"
        assert postal_address(adv).lines() == ("Hauptstrasse 106", "60311 Frankfurt")


def _approve_manual_change(db: Database, key: object, pid: int) -> None:
    """A checker (not the editor) approves the pre-invoice's open manual change."""
    from bot.workflows.decisions import decide, subject_hash_of
    from bot.workflows.preinvoices import manual_change_key
    from storage.models import BillingException
    from tests.factories import add_user

    add_user(db, "U9CHECKER", ["approver"], cached=True)
    with db.read() as s:
        exc = s.execute(select(BillingException).where(BillingException.key == manual_change_key(pid))).scalar_one()
        eid, digest = exc.id, subject_hash_of(exc)
    out = decide(db, exception_id=eid, decision="approve", actor="U9CHECKER", subject_hash=digest,
                 signing_key=key)  # type: ignore[arg-type]
    assert out.final


def test_an_edit_after_approval_voids_it_and_binds_the_new_approval_to_the_new_content(
    db: Database, key: object
) -> None:
    _basic(db)
    (pid,) = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW).created  # type: ignore[arg-type]
    before = get_preinvoice(db, pid)
    line_id = before.lines[0].id
    edit_line(db, pid, line_id, actor="cli:ed", key=key, now=NOW, amount="2500.00")  # type: ignore[arg-type]
    after = get_preinvoice(db, pid)
    assert after.net == D("2500.00") and after.lines[0].edited
    assert after.content_hash != before.content_hash
    # maker-checker (issue 14): the edit of an approved pre-invoice waits for a second person
    assert after.state == "pending" and after.approved_hash is None
    actions = [a for _, a in _audit_actions(db, pid)]
    assert actions[-3:] == ["preinvoice.line_edited", "preinvoice.approval_voided", "preinvoice.pending"]
    _approve_manual_change(db, key, pid)
    after = get_preinvoice(db, pid)
    assert after.approved_hash == after.content_hash != before.approved_hash and after.approved_by == "U9CHECKER"
    with db.read() as s:
        row = s.get(PreInvoice, pid)
        assert row is not None and preinvoice_hash(row) == row.approved_hash and row.edited_by == "cli:ed"

    # manual lines and edited lines survive a recomputation
    add_line(db, pid, kind="discount", description="Loyalty", amount="100.00", actor="cli:ed", key=key,  # type: ignore[arg-type]
             now=NOW)
    add_line(db, pid, kind="bonus", description="Bonus impressions", amount="0.00", actor="cli:ed", key=key,  # type: ignore[arg-type]
             now=NOW)
    r = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)  # type: ignore[arg-type]
    assert r.unchanged == [pid]
    v = get_preinvoice(db, pid)
    assert [(x.kind, x.amount) for x in v.lines] == [("item", D("2500.00")), ("discount", D("-100.00")),
                                                     ("bonus", D("0.00"))]
    assert v.net == D("2400.00") and v.state == "pending"  # the added lines wait for the checker
    _approve_manual_change(db, key, pid)
    assert get_preinvoice(db, pid).state == "approved"
    delete_line(db, pid, v.lines[2].id, actor="cli:ed", key=key, now=NOW)  # type: ignore[arg-type]
    assert [x.kind for x in get_preinvoice(db, pid).lines] == ["item", "discount"]


def test_recomputation_with_new_delivery_voids_the_approval(db: Database, key: object) -> None:
    load(db, scenario(advertisers=[advertiser("nord")],
                      campaigns=[campaign("c", "nord", [delivery("disp", "cpc", "1.00")], start="2026-02-01",
                                          end="2026-02-28")]))
    with db.transaction() as s:
        s.add(DeliveryFact(item_id="disp", day=date(2026, 2, 3), source="ads", party="first_party", clicks=100))
    (pid,) = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW).created  # type: ignore[arg-type]
    with db.transaction() as s:
        s.add(DeliveryFact(item_id="disp", day=date(2026, 2, 4), source="ads", party="first_party", clicks=50))
    r = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW)  # type: ignore[arg-type]
    assert r.updated == [pid] and r.voided == [pid] and r.approved == [pid]
    assert get_preinvoice(db, pid).net == D("150.00")
    assert [a for _, a in _audit_actions(db, pid)][-3:] == [
        "preinvoice.updated", "preinvoice.approval_voided", "preinvoice.approved"]


def test_hold_approve_and_override_to_booked(db: Database, key: object) -> None:
    load(db, scenario(advertisers=[advertiser("nord")],
                      campaigns=[campaign("c", "nord", [delivery("disp", "cpm", "4.00", booked_quantity=280_000)],
                                          start="2026-02-01", end="2026-03-31")]))
    with db.transaction() as s:
        s.add(DeliveryFact(item_id="disp", day=date(2026, 2, 3), source="gam", party="first_party",
                           impressions=50_000))
    (pid,) = create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW).created  # type: ignore[arg-type]
    with db.transaction() as s:
        pi = hold_preinvoice(s, pid, reason="numbers look wrong", actor="U2", signing_key=key, now=NOW)  # type: ignore[arg-type]
        assert (pi.state, pi.approved_hash) == ("held", None)
    with db.transaction() as s:
        pi = override_to_booked(s, pid, actor="U3", signing_key=key, now=NOW)  # type: ignore[arg-type]
        # 280,000 × 4.00 / 1,000 = 1,120.00 booked over Feb+Mar (59 days); February's 28 days → 531.52
        assert pi.net == D("531.52") and pi.state == "approved" and pi.approved_by == "U3"
        assert pi.approved_hash == preinvoice_hash(pi)
    # the forced amount survives a recomputation (the line is marked edited)
    assert create_preinvoices(db, period="2026-02", actor="t", key=key, now=NOW).unchanged == [pid]  # type: ignore[arg-type]
