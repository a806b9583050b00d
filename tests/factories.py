"""One factories module for the whole suite: scenario dicts and rows built with the models.

Sections (each was a per-directory ``factories.py``): billing-workflow scenario dicts; the Slack tests' rows;
the SLA/digest/schedules/jobs rows; the variance-check rows; the documents' world. Names that meant
different things in different sections are kept distinct: ``preinvoice`` (Slack) /
``variance_preinvoice`` / ``document_preinvoice``, ``invoice`` (schedules) / ``document_invoice``,
``delivery`` (a scenario item dict) / ``document_delivery``. ``NOW`` and ``FEB`` were the same values
wherever they were defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from billing.signatures import content_hash, key_id
from bot.workflows import audit
from storage.db import Database
from storage.loader import load_scenario
from storage.models import (
    Advertiser,
    BillingException,
    Campaign,
    CampaignItem,
    Conversion,
    Decision,
    DeliveryFact,
    ExchangeRate,
    Invoice,
    InvoiceLine,
    LegalEntity,
    PreInvoice,
    PreInvoiceLine,
    SourceState,
    SyncRun,
    User,
    UserRole,
)

# ====================================================================================================
# workflows
# Scenario dicts (the ``billbot load`` format), loaded with storage.loader — the billing-workflow tests.
# ====================================================================================================


def entity(id: str = "northwind", *, country: str = "DE", currency: str = "EUR", sow: str = "monday",
           vat_id: str | None = "DE811907980", series: str = "INV-{year}-{seq:06d}",
           cn_series: str = "CN-{year}-{seq:06d}") -> dict[str, Any]:
    return {"id": id, "name": f"{id.title()} Media GmbH", "country": country, "currency": currency,
            "vat_id": vat_id, "start_of_week": sow, "invoice_series": series, "credit_note_series": cn_series,
            "address": "Hafenstrasse 1, 20457 Hamburg"}


def advertiser(id: str, name: str | None = None, *, le: str = "northwind", country: str = "DE",
               currency: str = "EUR", vat_id: str | None = None, threshold: str = "0.00",
               terms: int = 14) -> dict[str, Any]:
    # a full postal address: § 14 UStG wants street, postcode and city (billing.checks.check_addresses)
    return {"id": id, "name": name or id.replace("-", " ").title(), "legal_entity": le, "currency": currency,
            "country": country, "vat_id": vat_id, "billing_threshold": threshold, "payment_terms_days": terms,
            "street": "Hauptstrasse 1", "postcode": "10115", "city": "Berlin"}


def linear(id: str, amount: str, **kw: Any) -> dict[str, Any]:
    return {"id": id, "description": kw.pop("description", f"Booked {id}"), "billing": "linear",
            "unit": "amount", "period": "day_based", "amount": amount, **kw}


def delivery(id: str, rate_type: str, rate: str, **kw: Any) -> dict[str, Any]:
    return {"id": id, "description": kw.pop("description", f"Delivered {id}"), "billing": "delivery",
            "rate_type": rate_type, "rate": rate, **kw}


def campaign(id: str, adv: str, items: list[dict[str, Any]], *, start: str = "2026-01-01", end: str = "2026-12-31",
             interval: str = "monthly") -> dict[str, Any]:
    return {"id": id, "advertiser": adv, "name": f"Campaign {id}", "bill_me": True, "payment_interval": interval,
            "start": start, "end": end, "items": items}


def scenario(*, entities: list[dict[str, Any]] | None = None, advertisers: list[dict[str, Any]],
             campaigns: list[dict[str, Any]], delivery_rows: list[dict[str, Any]] | None = None,
             rates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"legal_entities": entities or [entity()], "advertisers": advertisers,
                            "campaigns": campaigns}
    if delivery_rows:
        data["delivery"] = delivery_rows
    if rates:
        data["exchange_rates"] = rates
    return data


def load(db: Database, data: dict[str, Any]) -> None:
    load_scenario(db, data, actor="test")


def monthly_advertisers(n: int, *, amount: str = "1000.00", threshold: str = "0.00",
                        prefix: str = "adv") -> dict[str, Any]:
    """``n`` domestic advertisers, each with one linear campaign over 2026 billing ``amount`` a month."""
    yearly = str(Decimal(amount) * 12)
    return scenario(
        advertisers=[advertiser(f"{prefix}-{i:03d}", f"Autohaus {prefix} {i:03d}", threshold=threshold)
                     for i in range(n)],
        campaigns=[campaign(f"{prefix}-c{i:03d}", f"{prefix}-{i:03d}", [linear(f"{prefix}-i{i:03d}", yearly,
                                                                             period="even")])
                   for i in range(n)],
    )

# ====================================================================================================
# slack
# Rows for the Slack tests, built with the models (plus the real ``open_exception``); ``f.preinvoice`` is this one.
# ====================================================================================================


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
                          start_of_week=0, exceptions_channel=CHANNEL, address="Hafenstrasse 1, Hamburg",
                          street="Hafenstrasse 1", postcode="20457", city="Hamburg"))
        s.add(Advertiser(id=ADV, name="Autohaus Elbe KG", legal_entity_id=LE, currency="EUR", country="DE",
                         vat_id="DE136695976", billing_threshold=Decimal(threshold), address="Elbchaussee 10",
                         street="Elbchaussee 10", postcode="22763", city="Hamburg"))
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

# ====================================================================================================
# schedules
# Rows for the SLA, digest, schedules and jobs tests (``open_exception`` is the Slack section's); ``f.invoice`` is this one.
# ====================================================================================================


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

# ====================================================================================================
# variance
# Rows for the variance-check tests (one legal entity, advertiser, campaign); their pre-invoice is ``variance_preinvoice``.
# ====================================================================================================


FEB = (date(2026, 2, 1), date(2026, 2, 28))
JAN = (date(2026, 1, 1), date(2026, 1, 31))


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def master(s: Session, *, le_tol: str | None = None, adv_tol: str | None = None, camp_tol: str | None = None,
           le_currency: str = "EUR", adv_currency: str = "EUR", channel: str | None = None) -> None:
    s.add(LegalEntity(id="nw", name="Northwind Media GmbH", country="DE", currency=le_currency,
                      tolerance=Decimal(le_tol) if le_tol else None, exceptions_channel=channel))
    s.add(Advertiser(id="elbe", name="Autohaus Elbe KG", legal_entity_id="nw", currency=adv_currency, country="DE",
                     tolerance=Decimal(adv_tol) if adv_tol else None))
    s.add(Campaign(id="winter", advertiser_id="elbe", name="Winter", payment_interval="monthly",
                   start=date(2026, 1, 1), end=date(2026, 3, 31), tolerance=Decimal(camp_tol) if camp_tol else None))
    s.flush()


def item(s: Session, item_id: str = "display", *, rate_type: str | None = "cpm", rate: str | None = "4.00",
         booked: str | None = "900000", billing: str = "delivery", unit: str = "quantity", amount: str | None = None,
         tol: str | None = None, make_good: bool = False, start: date | None = None,
         end: date | None = None) -> CampaignItem:
    it = CampaignItem(id=item_id, campaign_id="winter", description=f"Item {item_id}", billing=billing, unit=unit,
                      rate_type=rate_type, rate=Decimal(rate) if rate else None,
                      booked_quantity=Decimal(booked) if booked else None, amount=Decimal(amount) if amount else None,
                      tolerance=Decimal(tol) if tol else None, make_good=make_good, start=start, end=end)
    s.add(it)
    s.flush()
    return it


def daily(s: Session, item_id: str, start: date, end: date, *, per_day: int, party: str = "first_party",
          metric: str = "impressions", skip: tuple[date, ...] = (), source: str = "gam") -> list[DeliveryFact]:
    rows = []
    for d in days(start, end):
        if d in skip:
            continue
        f = DeliveryFact(item_id=item_id, day=d, source=source, party=party, impressions=0, clicks=0, conversions=0)
        setattr(f, metric, per_day)
        s.add(f)
        rows.append(f)
    s.flush()
    return rows


def conversions(s: Session, item_id: str, day: date, n: int, *, status: str = "approved") -> list[Conversion]:
    rows = [Conversion(source="tracker", external_id=f"{item_id}-{day}-{status}-{i}", item_id=item_id, day=day,
                       status=status) for i in range(n)]
    s.add_all(rows)
    s.flush()
    return rows


def rate(s: Session, day: date, base: str, quote: str, value: str) -> None:
    s.add(ExchangeRate(day=day, base=base, quote=quote, rate=Decimal(value), source="ECB"))
    s.flush()


def variance_preinvoice(s: Session, period: tuple[date, date] = FEB, lines: list[dict[str, Any]] | None = None,
               *, state: str = "draft", currency: str = "EUR") -> PreInvoice:
    pi = PreInvoice(campaign_id="winter", advertiser_id="elbe", legal_entity_id="nw", period_start=period[0],
                    period_end=period[1], state=state, currency=currency, created_at=NOW, updated_at=NOW,
                    content_hash="x")
    for pos, ln in enumerate(lines or []):
        pi.lines.append(PreInvoiceLine(position=pos, item_id=ln.get("item_id"), kind=ln.get("kind", "item"),
                                       description=ln.get("description", "line"),
                                       quantity=Decimal(ln.get("quantity", "1")), unit=ln.get("unit", "unit"),
                                       unit_price=Decimal(ln.get("unit_price", ln["amount"])),
                                       amount=Decimal(ln["amount"]), computation=ln.get("computation", {})))
    pi.net = sum((ln.amount for ln in pi.lines), Decimal(0))
    s.add(pi)
    s.flush()
    return pi

# ====================================================================================================
# documents
# The document tests' world, built with the models (no billing run needed); their helpers are
# ``document_delivery``, ``document_preinvoice``, ``document_invoice``.
#
# One legal entity in Germany billing three advertisers:
# - ``elbe`` (DE, locale de): domestic, 19 % VAT, category S — a linear line and a CPL line;
# - ``lyon`` (FR, VAT id, locale en): EU B2B reverse charge, category AE — a CPM line;
# - ``austin`` (US, USD, locale en): export, category G, FX locked EUR→USD.
# Delivery facts and conversions come from two sync runs with file hashes; the CPM line's pre-invoice
# had a variance exception that an approver approved (a signed Decision + audit record).
# ====================================================================================================


T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@dataclass
class World:
    domestic: int
    reverse: int
    foreign: int
    credit: int
    numbers: dict[str, str]


def master_data(s: Session) -> None:
    s.add(LegalEntity(id="northwind", name="Northwind Media GmbH", country="DE", currency="EUR",
                      vat_id="DE811907980", address="Hafenstrasse 1, 20457 Hamburg, Germany",
                      iban="DE89370400440532013000"))
    s.add_all([
        Advertiser(id="elbe", name="Autohaus Elbe KG", legal_entity_id="northwind", currency="EUR", country="DE",
                   vat_id="DE136695976", payment_terms_days=14, locale="de",
                   address="Elbchaussee 10, 22763 Hamburg, Germany"),
        Advertiser(id="lyon", name="Garage du Rhône SARL", legal_entity_id="northwind", currency="EUR", country="FR",
                   vat_id="FR40303265045", payment_terms_days=30, locale="en",
                   address="12 Quai Perrache, 69002 Lyon, France"),
        Advertiser(id="austin", name="Austin Motors Inc.", legal_entity_id="northwind", currency="USD", country="US",
                   vat_id=None, payment_terms_days=30, locale="en",
                   address="500 Congress Ave, Austin, TX 78701, United States"),
    ])
    s.flush()
    s.add_all([
        Campaign(id="elbe-winter", advertiser_id="elbe", name="Winter search", start=date(2026, 1, 10),
                 end=date(2026, 3, 20)),
        Campaign(id="lyon-display", advertiser_id="lyon", name="Display retargeting", start=FEB[0], end=FEB[1]),
        Campaign(id="austin-video", advertiser_id="austin", name="Video launch", start=FEB[0], end=FEB[1]),
    ])
    s.flush()
    s.add_all([
        CampaignItem(id="elbe-search", campaign_id="elbe-winter", position=0, description="Regional search ads",
                     billing="linear", unit="amount", period="day_based", amount=Decimal("7000.00")),
        CampaignItem(id="elbe-drives", campaign_id="elbe-winter", position=1, description="Booked test drives",
                     billing="delivery", rate_type="cpl", rate=Decimal("25.00"), booked_quantity=Decimal(120)),
        CampaignItem(id="lyon-cpm", campaign_id="lyon-display", position=0, description="Display impressions",
                     billing="delivery", rate_type="cpm", rate=Decimal("4.20"), booked_quantity=Decimal(500000)),
        CampaignItem(id="austin-flat", campaign_id="austin-video", position=0, description="Video pre-roll flight",
                     billing="linear", unit="amount", period="even", amount=Decimal("5000.00")),
    ])
    s.flush()


def document_delivery(s: Session) -> tuple[int, int]:
    gam = SyncRun(source="gam", mode="report", state="done", started_at=T0 - timedelta(days=1),
                  finished_at=T0 - timedelta(days=1, seconds=-30), file_name="gam-2026-02.csv",
                  file_sha256="a" * 64, counts={"rows": 28})
    logs = SyncRun(source="dealer-logs", mode="logs", state="done", started_at=T0 - timedelta(days=1),
                   finished_at=T0 - timedelta(days=1, seconds=-10), file_name="drives-2026-02.log",
                   file_sha256="b" * 64, counts={"rows": 16})
    s.add_all([gam, logs])
    s.flush()
    for i in range(28):
        s.add(DeliveryFact(item_id="lyon-cpm", day=FEB[0] + timedelta(days=i), source="gam", party="first_party",
                           impressions=17000 + (i % 3) * 500, clicks=20 + i, sync_run_id=gam.id))
    for i in range(16):
        s.add(Conversion(source="dealer-logs", external_id=f"drive-{i}", kind="event", item_id="elbe-drives",
                         day=FEB[0] + timedelta(days=i), status="approved", sync_run_id=logs.id))
    s.add(Conversion(source="dealer-logs", external_id="drive-x", kind="event", item_id="elbe-drives",
                     day=date(2026, 2, 20), status="rejected", sync_run_id=logs.id))
    s.flush()
    return gam.id, logs.id


def document_preinvoice(s: Session, campaign: str, advertiser: str, net: Decimal, currency: str = "EUR") -> PreInvoice:
    p = PreInvoice(campaign_id=campaign, advertiser_id=advertiser, legal_entity_id="northwind",
                   period_start=FEB[0], period_end=FEB[1], state="invoiced", currency=currency, net=net,
                   content_hash=content_hash({"c": campaign, "net": str(net)}), approved_by="system",
                   approved_at=T0 - timedelta(hours=2), created_at=T0 - timedelta(days=1),
                   updated_at=T0 - timedelta(hours=2))
    s.add(p)
    s.flush()
    return p


def approved_variance(s: Session, key: Ed25519PrivateKey, pre: PreInvoice) -> dict[str, Any]:
    """A variance exception on ``pre`` approved by U02APPROVER: Decision row + signed audit record."""
    at = T0 - timedelta(hours=3)
    exc = BillingException(key=f"variance:{pre.id}", kind="variance", state="approved", legal_entity_id="northwind",
                           advertiser_id=pre.advertiser_id, preinvoice_id=pre.id, period_start=FEB[0],
                           period_end=FEB[1], amount=pre.net, currency=pre.currency, cause="delivered_vs_booked",
                           summary="delivered 3.2 % below booked", subject_hash=pre.content_hash,
                           created_at=at - timedelta(hours=5), updated_at=at, decided_at=at,
                           decided_by="U02APPROVER", decision="approve")
    s.add(exc)
    s.flush()
    rec = audit.record(s, key=key, actor="U02APPROVER", action="exception.decided", subject_type="exception",
                       subject_id=exc.id, payload={"decision": "approve", "subject_hash": pre.content_hash}, now=at)
    s.add(Decision(exception_id=exc.id, decision="approve", actor_id="U02APPROVER", actor_name="Arne Approver",
                   actor_email="arne@example.com", decided_at=at, subject_hash=pre.content_hash, audit_id=rec.id))
    s.flush()
    return {"actor": "U02APPROVER", "name": "Arne Approver", "at": at.isoformat(), "decision": "approve",
            "signature_fingerprint": rec.record_hash[:16]}


def document_invoice(
    s: Session, key: Ed25519PrivateKey, *, number: str, advertiser: Advertiser, lines: list[dict[str, Any]],
    vat_rate: Decimal, vat_category: str, vat_note: str | None = None, currency: str = "EUR",
    fx: dict[str, Any] | None = None, kind: str = "invoice", references: Invoice | None = None,
    reason: str | None = None, approvals: list[dict[str, Any]] | None = None, seq: int = 1,
    issue: date = date(2026, 3, 1),
) -> Invoice:
    le = s.get(LegalEntity, "northwind")
    assert le is not None
    net = sum((Decimal(li["amount"]) for li in lines), Decimal(0))
    vat = (net * vat_rate / 100).quantize(Decimal("0.01"))
    parties = {
        "seller": {"id": le.id, "name": le.name, "address": le.address, "country": le.country, "vat_id": le.vat_id,
                   "currency": le.currency, "iban": le.iban},
        "buyer": {"id": advertiser.id, "name": advertiser.name, "address": advertiser.address,
                  "country": advertiser.country, "vat_id": advertiser.vat_id, "locale": advertiser.locale},
    }
    inv = Invoice(number=number, kind=kind, legal_entity_id=le.id, advertiser_id=advertiser.id,
                  series="INV-{year}-{seq:06d}" if kind == "invoice" else "CN-{year}-{seq:06d}", year=issue.year,
                  seq=seq, issue_date=issue, due_date=issue + timedelta(days=advertiser.payment_terms_days),
                  service_start=FEB[0], service_end=FEB[1], currency=currency, net=net, vat=vat, gross=net + vat,
                  vat_rate=vat_rate, vat_category=vat_category, vat_note=vat_note, fx=fx,
                  references_invoice_id=references.id if references else None, reason=reason, billing_run_id=1,
                  parties=parties, approvals=approvals or [], content_hash=content_hash({"n": number}),
                  created_by="test", created_at=T0)
    s.add(inv)
    s.flush()
    for pos, li in enumerate(lines):
        s.add(InvoiceLine(invoice_id=inv.id, position=pos, preinvoice_id=li.get("preinvoice_id"),
                          item_id=li.get("item_id"), campaign=li.get("campaign"), description=li["description"],
                          quantity=Decimal(li["quantity"]), unit=li["unit"], unit_price=Decimal(li["unit_price"]),
                          amount=Decimal(li["amount"]), period_start=FEB[0], period_end=FEB[1],
                          computation=li.get("computation", {})))
    s.flush()
    audit.record(s, key=key, actor="system", action="invoice.finalized", subject_type="invoice", subject_id=inv.id,
                 payload={"number": number, "gross": str(inv.gross)}, now=T0)
    return inv


def build_world(db: Database, key: Ed25519PrivateKey) -> World:
    """The three invoices of the issue's done-when list plus a credit note on the domestic one."""
    with db.transaction() as s:
        master_data(s)
        document_delivery(s)
        elbe = s.get(Advertiser, "elbe")
        lyon = s.get(Advertiser, "lyon")
        austin = s.get(Advertiser, "austin")
        assert elbe and lyon and austin
        p_elbe = document_preinvoice(s, "elbe-winter", "elbe", Decimal("2900.00"))
        p_lyon = document_preinvoice(s, "lyon-display", "lyon", Decimal("2037.00"))
        p_austin = document_preinvoice(s, "austin-video", "austin", Decimal("5406.00"), currency="USD")
        system = {"actor": "system", "name": "billbot", "at": (T0 - timedelta(hours=2)).isoformat(),
                  "decision": "approve", "signature_fingerprint": key_id(key.public_key())}
        approval = approved_variance(s, key, p_lyon)
        dom = document_invoice(
            s, key, number="INV-2026-000001", advertiser=elbe, vat_rate=Decimal(19), vat_category="S", seq=1,
            approvals=[system],
            lines=[
                {"preinvoice_id": p_elbe.id, "item_id": "elbe-search", "campaign": "Winter search",
                 "description": "Regional search ads", "quantity": "1", "unit": "amount", "unit_price": "2500.00",
                 "amount": "2500.00",
                 "computation": {"basis": "day_based", "item_amount": "7000.00", "days_in_period": 28,
                                 "days_total": 70, "periods": [
                                     {"start": "2026-01-10", "end": "2026-01-31", "amount": "2200.00"},
                                     {"start": "2026-02-01", "end": "2026-02-28", "amount": "2800.00"},
                                     {"start": "2026-03-01", "end": "2026-03-20", "amount": "2000.00"}]}},
                {"preinvoice_id": p_elbe.id, "item_id": "elbe-drives", "campaign": "Winter search",
                 "description": "Booked test drives", "quantity": "16", "unit": "leads", "unit_price": "25.00",
                 "amount": "400.00", "computation": {"rate_type": "cpl", "approved": 16, "rate": "25.00"}},
            ])
        rev = document_invoice(
            s, key, number="INV-2026-000002", advertiser=lyon, vat_rate=Decimal(0), vat_category="AE", seq=2,
            vat_note="Reverse charge: VAT to be accounted for by the recipient (Art. 196 Council Directive "
                     "2006/112/EC)",
            approvals=[approval],
            lines=[
                {"preinvoice_id": p_lyon.id, "item_id": "lyon-cpm", "campaign": "Display retargeting",
                 "description": "Display impressions", "quantity": "485000", "unit": "impressions",
                 "unit_price": "4.20", "amount": "2037.00",
                 "computation": {"rate_type": "cpm", "impressions": 485000, "rate": "4.20", "per": 1000}},
            ])
        foreign = document_invoice(
            s, key, number="INV-2026-000003", advertiser=austin, vat_rate=Decimal(0), vat_category="G", seq=3,
            currency="USD", vat_note="Export of services: not subject to VAT in Germany",
            fx={"rate": "1.0812", "date": "2026-02-27", "source": "ECB", "base": "EUR", "quote": "USD"},
            approvals=[system],
            lines=[
                {"preinvoice_id": p_austin.id, "item_id": "austin-flat", "campaign": "Video launch",
                 "description": "Video pre-roll flight", "quantity": "1", "unit": "amount", "unit_price": "5406.00",
                 "amount": "5406.00", "computation": {"basis": "even", "item_amount_eur": "5000.00",
                                                      "fx_rate": "1.0812", "periods": 1}},
            ])
        credit = document_invoice(
            s, key, number="CN-2026-000001", advertiser=elbe, vat_rate=Decimal(19), vat_category="S", seq=1,
            kind="credit_note", references=dom, reason="Test drives double counted", issue=date(2026, 3, 5),
            lines=[
                {"item_id": "elbe-drives", "campaign": "Winter search", "description": "Booked test drives",
                 "quantity": "-4", "unit": "leads", "unit_price": "25.00", "amount": "-100.00"},
            ])
        return World(dom.id, rev.id, foreign.id, credit.id,
                     {"domestic": dom.number, "reverse": rev.number, "foreign": foreign.number,
                      "credit": credit.number})
