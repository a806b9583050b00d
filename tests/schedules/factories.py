"""Rows for the schedules tests, built directly with the models (``open_exception`` is another helper's)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count

from storage.db import Database
from storage.models import (
    Advertiser,
    BillingException,
    Invoice,
    LegalEntity,
    SourceState,
    User,
    UserRole,
)

_seq = count(1)


def base(db: Database) -> None:
    """One legal entity, two advertisers, two approvers and two finance managers."""
    with db.transaction() as s:
        s.add(LegalEntity(id="le-de", name="Media GmbH", country="DE", currency="EUR"))
        s.flush()
        s.add_all([
            Advertiser(id="adv-1", name="Autohaus Nord", legal_entity_id="le-de", currency="EUR", country="DE",
                       billing_threshold=Decimal("250.00")),
            Advertiser(id="adv-2", name="Bäckerei Süd", legal_entity_id="le-de", currency="EUR", country="DE"),
        ])
        for uid, name, roles in (("UAPP1", "Ann", ["approver"]), ("UAPP2", "Ben", ["approver"]),
                                 ("UFM1", "Fay", ["finance_manager", "approver"]), ("UFM2", "Finn", ["finance_manager"])):
            s.add(User(slack_id=uid, name=name, email=f"{name.lower()}@example.com",
                       roles=[UserRole(slack_id=uid, role=r) for r in roles]))


def exception(
    db: Database,
    *,
    created_at: datetime,
    sla: timedelta = timedelta(hours=24),
    kind: str = "variance",
    amount: str = "1200.00",
    advertiser: str = "adv-1",
    state: str = "pending",
    channel: str | None = "CEXC",
    message_ts: str | None = "1700000000.000100",
    started_by: str | None = "UAPP2",
) -> int:
    n = next(_seq)
    with db.transaction() as s:
        e = BillingException(
            key=f"test:{n}:{created_at.isoformat()}", kind=kind, state=state, legal_entity_id="le-de",
            advertiser_id=advertiser, amount=Decimal(amount), currency="EUR",
            cause="delivered_vs_booked" if kind == "variance" else "below_threshold",
            summary="test", created_at=created_at, updated_at=created_at,
            remind_at=created_at + sla / 2, due_at=created_at + sla,
            channel=channel, message_ts=message_ts, started_by=started_by,
            period_start=date(2026, 2, 1), period_end=date(2026, 2, 28),
        )
        s.add(e)
        s.flush()
        return e.id


def invoice(db: Database, *, number: str, created_at: datetime, gross: str, kind: str = "invoice",
            advertiser: str = "adv-1") -> int:
    seq = next(_seq)
    g = Decimal(gross)
    net = (g / Decimal("1.19")).quantize(Decimal("0.01"))
    with db.transaction() as s:
        inv = Invoice(
            number=number, kind=kind, legal_entity_id="le-de", advertiser_id=advertiser, series="INV-{year}-{seq:06d}",
            year=created_at.year, seq=seq, issue_date=created_at.date(), due_date=created_at.date() + timedelta(days=30),
            currency="EUR", net=net, vat=g - net, gross=g, vat_rate=Decimal("19"), vat_category="S",
            content_hash="0" * 64, created_at=created_at,
        )
        s.add(inv)
        s.flush()
        return inv.id


def source_state(db: Database, source: str, last_success_at: datetime | None, data_until: date | None = None) -> None:
    with db.transaction() as s:
        s.add(SourceState(source=source, last_success_at=last_success_at, data_until=data_until))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
