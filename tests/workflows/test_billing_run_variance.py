"""End to end: a pre-invoice with an open variance is refused by the billing run, with the reason
in the job log; once decided it is billed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import select

from bot.workflows.billing_run import run_billing
from bot.workflows.preinvoices import create_preinvoices
from storage.loader import load_scenario
from storage.models import BillingException, JobLog, PreInvoice

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

SCENARIO = {
    "legal_entities": [{"id": "nw", "name": "Northwind Media GmbH", "country": "DE", "currency": "EUR",
                        "vat_id": "DE811907980", "address": "Hafenstrasse 1, 20457 Hamburg"}],
    "advertisers": [
        {"id": "lyon", "name": "Garage du Rhône SARL", "legal_entity": "nw", "currency": "EUR", "country": "DE",
         "vat_id": "DE136695976", "billing_threshold": "0.00", "address": "Elbchaussee 10, 22763 Hamburg"},
    ],
    "campaigns": [
        {"id": "lyon-display", "advertiser": "lyon", "name": "Display retargeting", "start": "2026-02-01",
         "end": "2026-02-28", "items": [
             {"id": "lyon-cpc", "description": "Display clicks", "billing": "delivery", "rate_type": "cpc",
              "rate": "0.50", "booked_quantity": 5600}]},
        {"id": "lyon-search", "advertiser": "lyon", "name": "Search", "start": "2026-02-01",
         "end": "2026-02-28", "items": [
             {"id": "lyon-search-cpc", "description": "Search clicks", "billing": "delivery",
              "rate_type": "cpc", "rate": "1.00", "booked_quantity": 2800}]},
    ],
    # display: 150 clicks/day of 200 booked (-25 %); search: exactly as booked
    "delivery": [{"item": "lyon-cpc", "date": f"2026-02-{d:02d}", "source": "first_party", "clicks": 150}
                 for d in range(1, 29)]
    + [{"item": "lyon-search-cpc", "date": f"2026-02-{d:02d}", "source": "first_party", "clicks": 100}
       for d in range(1, 29)],
}


def test_open_variance_is_refused_by_the_billing_run_with_the_reason_logged(db, key) -> None:  # type: ignore[no-untyped-def]
    load_scenario(db, SCENARIO)
    res = create_preinvoices(db, period="2026-02", actor="U01OPERATOR", key=key, now=NOW)
    with db.read() as s:
        pis = {p.campaign_id: p for p in s.execute(select(PreInvoice)).scalars()}
        exc = s.execute(select(BillingException)).scalar_one()
    display, search = pis["lyon-display"], pis["lyon-search"]
    assert display.state == "pending" and search.state == "approved"
    assert display.id in res.pending
    assert (exc.kind, exc.state, exc.preinvoice_id, exc.cause) == ("variance", "pending", display.id,
                                                                   "under_delivery")
    assert exc.evidence["computed_amount"] == "2100.00" and exc.evidence["booked_amount"] == "2800.00"

    run = run_billing(db, period="2026-02", actor="U01OPERATOR", key=key, today=date(2026, 3, 2), now=NOW)
    assert [h["preinvoice"] for h in run.held] == [display.id]
    assert "open exception" in run.held[0]["reason"]
    assert len(run.created) == 1  # the search campaign is billed
    with db.read() as s:
        lines = list(s.execute(select(JobLog.message).where(JobLog.run_id == run.run_id)).scalars())
        assert s.get(PreInvoice, display.id).invoice_id is None
    held = [ln for ln in lines if ln.startswith(f"Held pre-invoice {display.id}")]
    assert held and "waiting for a decision on 1 open exception" in held[0]

    # re-creating the pre-invoices re-runs the checks: still one exception, unchanged
    create_preinvoices(db, period="2026-02", actor="U01OPERATOR", key=key, now=NOW)
    with db.read() as s:
        assert [e.id for e in s.execute(select(BillingException)).scalars()] == [exc.id]


def _linear_scenario(*, opt_in: bool) -> dict[str, object]:
    items = [
        {"id": "news-qty", "description": "Newsletter placements", "billing": "linear", "unit": "quantity",
         "rate_type": "flat", "rate": "250.00", "booked_quantity": 5},
        {"id": "sponsor-cpm", "description": "Homepage sponsorship", "billing": "linear", "unit": "quantity",
         "rate_type": "cpm", "rate": "4.05", "booked_quantity": 24000, "variance_check": opt_in},
        {"id": "sponsor-amount", "description": "Sponsorship fee", "billing": "linear", "unit": "amount",
         "amount": "1200.00"},
    ]
    return {**SCENARIO, "campaigns": [
        {"id": "linear", "advertiser": "lyon", "name": "Sponsorship", "start": "2026-02-01", "end": "2026-02-28",
         "items": items}], "delivery": []}


def test_linear_items_without_delivery_rows_are_approved_by_the_system_with_no_exception(db, key) -> None:  # type: ignore[no-untyped-def]
    """ADvendio's rule: linear distribution needs no delivery report. Quantity and amount items bill the
    distributed booked figure and raise no tracking gap."""
    load_scenario(db, _linear_scenario(opt_in=False))
    create_preinvoices(db, period="2026-02", actor="U01OPERATOR", key=key, now=NOW)
    with db.read() as s:
        [pi] = s.execute(select(PreInvoice)).scalars().all()
        assert s.execute(select(BillingException)).scalars().all() == []
        assert pi.state == "approved" and pi.net == Decimal("2547.20")  # 5 × 250 + 24 × 4.05 + 1,200
    run = run_billing(db, period="2026-02", actor="U01OPERATOR", key=key, today=date(2026, 3, 2), now=NOW)
    assert len(run.created) == 1 and run.held == []


def test_a_linear_item_may_opt_in_to_the_delivery_check(db, key) -> None:  # type: ignore[no-untyped-def]
    load_scenario(db, _linear_scenario(opt_in=True))
    create_preinvoices(db, period="2026-02", actor="U01OPERATOR", key=key, now=NOW)
    with db.read() as s:
        [pi] = s.execute(select(PreInvoice)).scalars().all()
        [exc] = s.execute(select(BillingException)).scalars().all()
    assert pi.state == "pending" and (exc.kind, exc.cause) == ("variance", "tracking_gap")
