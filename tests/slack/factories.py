"""Rows for the Slack tests, built directly with the models (plus the real ``open_exception``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from storage.db import Database
from storage.models import (
    Advertiser,
    BillingException,
    Campaign,
    CampaignItem,
    LegalEntity,
    PreInvoice,
    PreInvoiceLine,
    User,
    UserRole,
)

LE = "northwind-media"
ADV = "autohaus-elbe"
CAMPAIGN = "elbe-winter"
CHANNEL = "CEXCEPTIONS"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

OPERATOR = "U01OPERATOR"
APPROVER = "U02APPROVER"
APPROVER2 = "U03APPROVER"
MANAGER = "U04FINANCE"
NOBODY = "U05NOBODY"

ROLES: dict[str, list[str]] = {
    OPERATOR: ["operator"],
    APPROVER: ["approver"],
    APPROVER2: ["approver"],
    MANAGER: ["finance_manager"],
    NOBODY: [],
}
PROFILES = {
    OPERATOR: {"name": "olivia", "real_name": "Olivia Operator", "email": "olivia@northwind.example"},
    APPROVER: {"name": "arne", "real_name": "Arne Approver", "email": "arne@northwind.example"},
    APPROVER2: {"name": "bea", "real_name": "Bea Approver", "email": "bea@northwind.example"},
    MANAGER: {"name": "fiona", "real_name": "Fiona Finance", "email": "fiona@northwind.example"},
    NOBODY: {"name": "nora", "real_name": "Nora Nobody", "email": "nora@northwind.example"},
}


def add_user(db: Database, slack_id: str, roles: list[str], *, cached: bool = False) -> None:
    """A user with roles. ``cached=False`` leaves the profile to ``users.info`` (the fake answers)."""
    with db.transaction() as s:
        u = s.get(User, slack_id)
        if u is None:
            u = User(slack_id=slack_id, name=PROFILES.get(slack_id, {}).get("real_name", "") if cached else "")
            if cached:
                u.email = PROFILES.get(slack_id, {}).get("email")
                u.profile_fetched_at = datetime.now(UTC)
            s.add(u)
        for r in roles:
            if r not in u.role_names:
                u.roles.append(UserRole(slack_id=slack_id, role=r))


def seed(db: Database, *, threshold: str = "250.00") -> None:
    with db.transaction() as s:
        s.add(LegalEntity(id=LE, name="Northwind Media GmbH", country="DE", currency="EUR", vat_id="DE811907980",
                          start_of_week=0, exceptions_channel=CHANNEL, address="Hafenstrasse 1, Hamburg"))
        s.add(Advertiser(id=ADV, name="Autohaus Elbe KG", legal_entity_id=LE, currency="EUR", country="DE",
                         vat_id="DE136695976", billing_threshold=Decimal(threshold), address="Elbchaussee 10"))
        c = Campaign(id=CAMPAIGN, advertiser_id=ADV, name="Winter search campaign", payment_interval="monthly",
                     start=date(2026, 1, 10), end=date(2026, 3, 20))
        c.items.append(CampaignItem(id="elbe-winter-search", description="Regional search ads", billing="linear",
                                    unit="amount", period="day_based", amount=Decimal("7000.00")))
        s.add(c)
    for uid, roles in ROLES.items():
        add_user(db, uid, roles)


def add_campaign(db: Database, campaign_id: str) -> str:
    with db.transaction() as s:
        c = Campaign(id=campaign_id, advertiser_id=ADV, name=f"Campaign {campaign_id}", payment_interval="monthly",
                     start=date(2026, 1, 10), end=date(2026, 3, 20))
        c.items.append(CampaignItem(id=f"{campaign_id}-item", description="Regional search ads", billing="linear",
                                    unit="amount", period="day_based", amount=Decimal("7000.00")))
        s.add(c)
    return campaign_id


def preinvoice(db: Database, *, net: str = "3000.00", state: str = "pending", created_by: str | None = OPERATOR,
               month: int = 2, campaign: str = CAMPAIGN) -> int:
    from storage.mapping import preinvoice_hash

    start = date(2026, month, 1)
    end = date(2026, month, 28) if month == 2 else date(2026, month, 30)
    with db.transaction() as s:
        pi = PreInvoice(campaign_id=campaign, advertiser_id=ADV, legal_entity_id=LE, period_start=start,
                        period_end=end, state=state, currency="EUR", net=Decimal(net), created_by=created_by,
                        created_at=NOW, updated_at=NOW)
        item = "elbe-winter-search" if campaign == CAMPAIGN else f"{campaign}-item"
        pi.lines.append(PreInvoiceLine(position=0, item_id=item, kind="item",
                                       description="Regional search ads", quantity=Decimal(1), unit="unit",
                                       unit_price=Decimal(net), amount=Decimal(net)))
        s.add(pi)
        s.flush()
        pi.content_hash = preinvoice_hash(pi)
        if state == "approved":
            pi.approved_hash, pi.approved_by, pi.approved_at = pi.content_hash, "system", NOW
        return pi.id


def open_exception(db: Database, key: Any, *, kind: str = "variance", preinvoice_id: int | None = None,
                   amount: str = "900.00", started_by: str | None = OPERATOR, name: str = "x",
                   evidence: dict[str, Any] | None = None) -> int:
    """Through the real workflow (``bot.workflows.exceptions.open_exception``)."""
    from bot.workflows.exceptions import open_exception as open_exc

    ev = evidence or ({
        "booked_amount": "3000.00", "computed_amount": "2100.00", "rule": "delivered_vs_booked",
        "tolerance": "0.10", "figures": {"booked": 3000, "delivered": 2100}, "days": ["2026-02-03", "2026-02-04"],
        "cause": "under_delivery",
    } if kind == "variance" else {"total": "180.00", "threshold": "250.00",
                                  "preinvoice_ids": [preinvoice_id] if preinvoice_id else []})
    with db.transaction() as s:
        subject = "subject-" + name
        row = open_exc(
            s, kind=kind, key=f"{kind}:{name}", legal_entity_id=LE, advertiser_id=ADV,
            preinvoice_id=preinvoice_id if kind == "variance" else None, billing_run_id=7 if kind != "variance" else None,
            period_start=date(2026, 2, 1), period_end=date(2026, 2, 28), amount=Decimal(amount), currency="EUR",
            cause=str(ev.get("cause", "below_threshold")), summary=f"{kind} on {ADV}", evidence=ev,
            subject_hash=subject, started_by=started_by, now=datetime.now(UTC), signing_key=key,
        )
        return row.id


def exception_row(db: Database, exception_id: int) -> BillingException:
    with db.read() as s:
        row = s.get(BillingException, exception_id)
        assert row is not None
        s.expunge(row)
        return row
