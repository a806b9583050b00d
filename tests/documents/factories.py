"""Rows for the document tests, built directly with the models (no billing run needed).

One legal entity in Germany billing three advertisers:
- ``elbe`` (DE, locale de): domestic, 19 % VAT, category S — a linear line and a CPL line;
- ``lyon`` (FR, VAT id, locale en): EU B2B reverse charge, category AE — a CPM line;
- ``austin`` (US, USD, locale en): export, category G, FX locked EUR→USD.
Delivery facts and conversions come from two sync runs with file hashes; the CPM line's pre-invoice
had a variance exception that an approver approved (a signed Decision + audit record).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from billing.signatures import content_hash, key_id
from bot.workflows import audit
from storage.db import Database
from storage.models import (
    Advertiser,
    BillingException,
    Campaign,
    CampaignItem,
    Conversion,
    Decision,
    DeliveryFact,
    Invoice,
    InvoiceLine,
    LegalEntity,
    PreInvoice,
    SyncRun,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
FEB = (date(2026, 2, 1), date(2026, 2, 28))


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


def delivery(s: Session) -> tuple[int, int]:
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


def preinvoice(s: Session, campaign: str, advertiser: str, net: Decimal, currency: str = "EUR") -> PreInvoice:
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


def invoice(
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
        delivery(s)
        elbe = s.get(Advertiser, "elbe")
        lyon = s.get(Advertiser, "lyon")
        austin = s.get(Advertiser, "austin")
        assert elbe and lyon and austin
        p_elbe = preinvoice(s, "elbe-winter", "elbe", Decimal("2900.00"))
        p_lyon = preinvoice(s, "lyon-display", "lyon", Decimal("2037.00"))
        p_austin = preinvoice(s, "austin-video", "austin", Decimal("5406.00"), currency="USD")
        system = {"actor": "system", "name": "billbot", "at": (T0 - timedelta(hours=2)).isoformat(),
                  "decision": "approve", "signature_fingerprint": key_id(key.public_key())}
        approval = approved_variance(s, key, p_lyon)
        dom = invoice(
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
        rev = invoice(
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
        foreign = invoice(
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
        credit = invoice(
            s, key, number="CN-2026-000001", advertiser=elbe, vat_rate=Decimal(19), vat_category="S", seq=1,
            kind="credit_note", references=dom, reason="Test drives double counted", issue=date(2026, 3, 5),
            lines=[
                {"item_id": "elbe-drives", "campaign": "Winter search", "description": "Booked test drives",
                 "quantity": "-4", "unit": "leads", "unit_price": "25.00", "amount": "-100.00"},
            ])
        return World(dom.id, rev.id, foreign.id, credit.id,
                     {"domestic": dom.number, "reverse": rev.number, "foreign": foreign.number,
                      "credit": credit.number})
