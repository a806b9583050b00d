"""SQLAlchemy 2.0 typed models for the whole billbot domain (DESIGN.md).

Conventions:
- master data (legal entities, advertisers, campaigns, items) uses our stable string ids from the
  scenario file / sources; transactional rows use integer ids;
- money columns are :class:`storage.types.Money` (exact decimals, never float);
- timestamps are :class:`storage.types.UTCDateTime` (aware UTC);
- invoices, their lines and the audit log are append-only (see ``storage.guards``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import Money, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


# --------------------------------------------------------------------------- master data


class LegalEntity(Base):
    __tablename__ = "legal_entities"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    vat_id: Mapped[str | None] = mapped_column(String(32))
    start_of_week: Mapped[int] = mapped_column(Integer, default=0)  # 0 = Monday … 6 = Sunday
    invoice_series: Mapped[str] = mapped_column(String(64), default="INV-{year}-{seq:06d}")
    credit_note_series: Mapped[str] = mapped_column(String(64), default="CN-{year}-{seq:06d}")
    address: Mapped[str | None] = mapped_column(Text)
    exceptions_channel: Mapped[str | None] = mapped_column(String(64))
    tolerance: Mapped[Decimal | None] = mapped_column(Money())
    iban: Mapped[str | None] = mapped_column(String(34))
    # the structured postal address (EN 16931 BG-5; ``address`` is the one-line text of older files)
    street: Mapped[str | None] = mapped_column(String(200))
    postcode: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(100))
    # what a GmbH's business documents must state (§ 35a GmbHG) and the bank a payment goes to
    register_court: Mapped[str | None] = mapped_column(String(100))
    register_number: Mapped[str | None] = mapped_column(String(64))
    managing_directors: Mapped[str | None] = mapped_column(Text)  # names, one per line
    bank_name: Mapped[str | None] = mapped_column(String(100))
    bic: Mapped[str | None] = mapped_column(String(11))
    # the accounting export (issue 19): DATEV consultant/client numbers, fiscal year start, account
    # length, and the chart (receivable, revenue accounts and BU keys per VAT treatment); see
    # :class:`billing.accounting.Chart`
    accounting: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # invoice terms (issue 19, :mod:`billing.terms`): how invoices are dated and when they fall due
    invoice_date_rule: Mapped[str] = mapped_column(String(24), default="run_day", server_default="run_day")
    due_date_rule: Mapped[str] = mapped_column(String(24), default="net", server_default="net")
    # the FX cutoff (issue 19, :func:`billing.fx.invoice_rate`): which day's rate an invoice locks
    # (``issue_date`` | ``service_end``) and how old that rate may be
    fx_rule: Mapped[str] = mapped_column(String(24), default="issue_date", server_default="issue_date")
    fx_max_age_days: Mapped[int] = mapped_column(Integer, default=7, server_default="7")
    dunning: Mapped[list[Any] | None] = mapped_column(JSON)  # levels: level, name, days, fee, interest_rate
    # who owns an exception when neither the advertiser's account owner nor a person started the work (issue 21)
    default_owner: Mapped[str | None] = mapped_column(String(64))


PARTNER_INVOICING = ("per_branch", "consolidated")


class Partner(Base):
    """A sales partner owning several advertisers (its branches; issue 19). ``invoicing``: ``per_branch``
    (each branch gets its own invoices) or ``consolidated`` (one invoice per partner, legal entity and
    currency with a line block per branch, addressed to the partner at its head office branch)."""

    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    invoicing: Mapped[str] = mapped_column(String(16), default="per_branch", server_default="per_branch")
    # the branch whose address, VAT id, e-mail addresses and debtor account a consolidated invoice uses
    # (None: the partner's first branch by id); not a foreign key: partners load before their branches
    head_office_id: Mapped[str | None] = mapped_column(String(64))


class Advertiser(Base):
    __tablename__ = "advertisers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    legal_entity_id: Mapped[str] = mapped_column(ForeignKey("legal_entities.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    country: Mapped[str] = mapped_column(String(2))
    vat_id: Mapped[str | None] = mapped_column(String(32))
    billing_threshold: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    address: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(200))
    tolerance: Mapped[Decimal | None] = mapped_column(Money())
    source: Mapped[str | None] = mapped_column(String(64))  # set when a sync created it
    # the structured postal address (EN 16931 BG-8; ``address`` is the one-line text of older files)
    street: Mapped[str | None] = mapped_column(String(200))
    postcode: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(100))
    customer_number: Mapped[str | None] = mapped_column(String(64))  # the number the advertiser knows us by
    # the account owner (Slack id): owns the advertiser's exceptions (issue 21) and its held items (issue 17)
    account_owner: Mapped[str | None] = mapped_column(String(32))
    # e-mail dispatch (issue 19): where invoices are mailed, and whether at all (``none``: the client
    # downloads them from a portal)
    invoice_emails: Mapped[list[Any]] = mapped_column(JSON, default=list)
    invoice_cc: Mapped[list[Any]] = mapped_column(JSON, default=list)
    dispatch: Mapped[str] = mapped_column(String(16), default="email")  # email | none
    # the advertiser's personal debtor account in the accounting export (else the chart's collective one)
    debtor_account: Mapped[str | None] = mapped_column(String(16))
    # the legal entity's invoice terms, overridden for this advertiser (None: the entity's)
    invoice_date_rule: Mapped[str | None] = mapped_column(String(24))
    due_date_rule: Mapped[str | None] = mapped_column(String(24))
    # the partner this advertiser is a branch of (issue 19), if any
    partner_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id"), index=True)
    # purchase orders (issue 19): the advertiser's default PO number (a campaign may override it), and
    # whether its invoices need one (a pre-invoice without one has a problem and is held)
    po_number: Mapped[str | None] = mapped_column(String(64))
    po_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    legal_entity: Mapped[LegalEntity] = relationship()


class Affiliate(Base):
    __tablename__ = "affiliates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(64))


class Employee(Base):
    __tablename__ = "employees"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(64))


ROLES = ("approver", "finance_manager", "operator", "admin", "cash_applier")


class User(Base):
    """A Slack user known to billbot. Name and email are cached from ``users.info``."""

    __tablename__ = "users"

    slack_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(200))
    profile_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def role_names(self) -> set[str]:
        return {r.role for r in self.roles}


class UserRole(Base):
    __tablename__ = "user_roles"

    slack_id: Mapped[str] = mapped_column(ForeignKey("users.slack_id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)

    user: Mapped[User] = relationship(back_populates="roles")


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    advertiser_id: Mapped[str] = mapped_column(ForeignKey("advertisers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    bill_me: Mapped[bool] = mapped_column(Boolean, default=True)
    payment_interval: Mapped[str] = mapped_column(String(16), default="monthly")
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date] = mapped_column(Date)
    tolerance: Mapped[Decimal | None] = mapped_column(Money())
    # a fixed exchange rate agreed for this campaign (units of the legal entity's currency per 1 unit of
    # the advertiser's), used instead of the published one; dated ``fx_rate_date`` (else the issue date)
    fx_rate: Mapped[Decimal | None] = mapped_column(Money(20, 10))
    fx_rate_date: Mapped[date | None] = mapped_column(Date)
    po_number: Mapped[str | None] = mapped_column(String(64))  # overrides the advertiser's PO number

    advertiser: Mapped[Advertiser] = relationship()
    items: Mapped[list[CampaignItem]] = relationship(
        back_populates="campaign", order_by="CampaignItem.position", cascade="all, delete-orphan"
    )


class CampaignItem(Base):
    """A booked line of a campaign.

    ``billing='linear'`` items are distributed over the billing periods (``unit`` amount or quantity,
    ``period`` day_based or even); ``billing='delivery'`` items bill delivered quantity × ``rate``
    per ``rate_type`` (cpm per 1,000 impressions, cpc per click, cpa/cpl per approved conversion,
    flat once per period).
    """

    __tablename__ = "campaign_items"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(500))
    billing: Mapped[str] = mapped_column(String(16), default="linear")
    unit: Mapped[str] = mapped_column(String(16), default="amount")
    period: Mapped[str] = mapped_column(String(16), default="day_based")
    amount: Mapped[Decimal | None] = mapped_column(Money())
    rate_type: Mapped[str | None] = mapped_column(String(8))
    rate: Mapped[Decimal | None] = mapped_column(Money())
    booked_quantity: Mapped[Decimal | None] = mapped_column(Money())
    start: Mapped[date | None] = mapped_column(Date)  # defaults to the campaign's dates
    end: Mapped[date | None] = mapped_column(Date)
    tolerance: Mapped[Decimal | None] = mapped_column(Money())
    make_good: Mapped[bool] = mapped_column(Boolean, default=False)
    # linear items bill the distributed booked figure; True opts one in to the delivery (variance) check
    variance_check: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # goods | services: decides the VAT treatment abroad (outside the EU: services ``O``, goods ``G``)
    supply: Mapped[str] = mapped_column(String(16), default="services", server_default="services")

    campaign: Mapped[Campaign] = relationship(back_populates="items")


class ExternalId(Base):
    """Crosswalk: (source, kind, external id) → our id. The universal key against double counting."""

    __tablename__ = "external_ids"
    __table_args__ = (UniqueConstraint("source", "kind", "external_id", name="uq_external_ids_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # item | advertiser | affiliate | employee
    external_id: Mapped[str] = mapped_column(String(128))
    our_id: Mapped[str] = mapped_column(String(64), index=True)


# --------------------------------------------------------------------------- delivery data


class DeliveryFact(Base):
    """Delivered figures per campaign item, day and source.

    ``party`` is ``first_party`` (our ad server / tracker, the billing basis) or ``third_party``
    (the client's or an auditor's counts, compared by the variance checks).
    """

    __tablename__ = "delivery_facts"
    __table_args__ = (
        UniqueConstraint("item_id", "day", "source", "party", name="uq_delivery_facts_key"),
        Index("ix_delivery_facts_item_day", "item_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("campaign_items.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(64))
    party: Mapped[str] = mapped_column(String(16), default="first_party")
    impressions: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    conversions: Mapped[int] = mapped_column(Integer, default=0)
    revenue: Mapped[Decimal | None] = mapped_column(Money())
    currency: Mapped[str | None] = mapped_column(String(3))
    sync_run_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Conversion(Base):
    """One conversion or logged billable event (e.g. a booked test drive). Counted once per
    (source, external_id); only ``approved`` ones are billed for cpa/cpl items."""

    __tablename__ = "conversions"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_conversions_key"),
        Index("ix_conversions_item_day", "item_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="conversion")  # conversion | event
    item_id: Mapped[str | None] = mapped_column(ForeignKey("campaign_items.id", ondelete="CASCADE"))
    affiliate_id: Mapped[str | None] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="approved")
    payout: Mapped[Decimal | None] = mapped_column(Money())
    revenue: Mapped[Decimal | None] = mapped_column(Money())
    currency: Mapped[str | None] = mapped_column(String(3))
    sync_run_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    mode: Mapped[str] = mapped_column(String(16))  # standard | partial | report | logs | scenario
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_by: Mapped[str | None] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    watermark_before: Mapped[str | None] = mapped_column(String(64))
    watermark_after: Mapped[str | None] = mapped_column(String(64))
    data_until: Mapped[date | None] = mapped_column(Date)
    error: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str | None] = mapped_column(String(500))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    lock_key: Mapped[str | None] = mapped_column(String(100), unique=True)  # set while running


class SourceState(Base):
    """Per source: the incremental watermark and the freshness of its data."""

    __tablename__ = "source_states"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark: Mapped[str | None] = mapped_column(String(64))
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_sync_run_id: Mapped[int | None] = mapped_column(Integer)
    data_until: Mapped[date | None] = mapped_column(Date)


class QuarantineRow(Base):
    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    location: Mapped[str] = mapped_column(String(500))  # file:line or page:row
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    sync_run_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExchangeRate(Base):
    """``rate`` units of ``quote`` per 1 unit of ``base`` on ``day`` (ECB style: EUR→USD 1.0812)."""

    __tablename__ = "exchange_rates"
    __table_args__ = (UniqueConstraint("day", "base", "quote", "source", name="uq_exchange_rates_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    base: Mapped[str] = mapped_column(String(3))
    quote: Mapped[str] = mapped_column(String(3))
    rate: Mapped[Decimal] = mapped_column(Money())  # 6 decimals: ECB publishes 4-5
    source: Mapped[str] = mapped_column(String(32), default="ECB")


# --------------------------------------------------------------------------- billing


PREINVOICE_STATES = ("draft", "pending", "approved", "invoiced", "held", "cancelled")


class PreInvoice(Base):
    __tablename__ = "preinvoices"
    __table_args__ = (
        UniqueConstraint("campaign_id", "period_start", "period_end", name="uq_preinvoices_period"),
        Index("ix_preinvoices_state_adv", "state", "advertiser_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id"))  # None: a one-off pre-invoice
    advertiser_id: Mapped[str] = mapped_column(ForeignKey("advertisers.id"), index=True)
    legal_entity_id: Mapped[str] = mapped_column(ForeignKey("legal_entities.id"))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    currency: Mapped[str] = mapped_column(String(3))
    net: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    approved_hash: Mapped[str | None] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(64))
    edited_by: Mapped[str | None] = mapped_column(String(64))
    hold_reason: Mapped[str | None] = mapped_column(Text)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    invoice_id: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # header overrides for this pre-invoice's invoice (issue 19, item 7): payment_terms_days, recipient, notes;
    # part of the content an approval binds to
    overrides: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    campaign: Mapped[Campaign | None] = relationship()
    advertiser: Mapped[Advertiser] = relationship()
    lines: Mapped[list[PreInvoiceLine]] = relationship(
        back_populates="preinvoice", order_by="PreInvoiceLine.position", cascade="all, delete-orphan"
    )


class PreInvoiceLine(Base):
    __tablename__ = "preinvoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    preinvoice_id: Mapped[int] = mapped_column(ForeignKey("preinvoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    item_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="item")  # item | bonus | discount | manual
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Money(), default=Decimal("1"))
    unit: Mapped[str] = mapped_column(String(40), default="unit")
    unit_price: Mapped[Decimal] = mapped_column(Money())
    amount: Mapped[Decimal] = mapped_column(Money())
    computation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)

    preinvoice: Mapped[PreInvoice] = relationship(back_populates="lines")


class NumberSequence(Base):
    """Next number per legal entity, series and year. Locked (``FOR UPDATE`` / ``BEGIN IMMEDIATE``)
    in the finalizing transaction, so numbers are gapless: a rolled-back finalization rolls the
    counter back too."""

    __tablename__ = "number_sequences"

    legal_entity_id: Mapped[str] = mapped_column(ForeignKey("legal_entities.id"), primary_key=True)
    series: Mapped[str] = mapped_column(String(64), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class Invoice(Base):
    """An immutable, numbered invoice or credit note. Never updated after insert except for the
    rendering bookkeeping columns listed in ``storage.guards.MUTABLE_INVOICE_COLUMNS``."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("legal_entity_id", "number", name="uq_invoices_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="invoice")  # invoice | credit_note
    legal_entity_id: Mapped[str] = mapped_column(ForeignKey("legal_entities.id"))
    advertiser_id: Mapped[str] = mapped_column(ForeignKey("advertisers.id"), index=True)
    series: Mapped[str] = mapped_column(String(64))
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    service_start: Mapped[date | None] = mapped_column(Date)
    service_end: Mapped[date | None] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    net: Mapped[Decimal] = mapped_column(Money())
    vat: Mapped[Decimal] = mapped_column(Money())
    gross: Mapped[Decimal] = mapped_column(Money())
    vat_rate: Mapped[Decimal] = mapped_column(Money())
    vat_category: Mapped[str] = mapped_column(String(8))  # EN 16931 UNCL5305: S, AE, G, Z, E
    vat_note: Mapped[str | None] = mapped_column(Text)
    fx: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # locked rate: rate, date, source, to
    references_invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    billing_run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    parties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # seller/buyer snapshot
    approvals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # rendering bookkeeping (mutable, not part of the legal content)
    pdf_state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    pdf_path: Mapped[str | None] = mapped_column(String(500))
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))
    pdf_attempts: Mapped[int] = mapped_column(Integer, default=0)
    pdf_error: Mapped[str | None] = mapped_column(Text)

    advertiser: Mapped[Advertiser] = relationship()
    legal_entity: Mapped[LegalEntity] = relationship()
    lines: Mapped[list[InvoiceLine]] = relationship(back_populates="invoice", order_by="InvoiceLine.position")


DISPATCH_STATES = ("queued", "sent", "failed")


class InvoiceDispatch(Base):
    """The e-mail dispatch of one invoice (issue 19). Kept beside the invoice because invoices are
    immutable (``storage.guards``); one row per invoice, its ``message_id`` derived from the invoice
    number so a retried job, a second process or a mail server that saw it before never duplicates it."""

    __tablename__ = "invoice_dispatches"

    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued | sent | failed
    message_id: Mapped[str] = mapped_column(String(200))
    recipients: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # {"to": […], "cc": […]}
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sends: Mapped[int] = mapped_column(Integer, default=0)  # mails accepted by the server (1 + resends)
    last_error: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


EXPORT_FORMATS = ("datev", "beancount")


class ExportBatch(Base):
    """One accounting export (issue 19): the documents of a legal entity handed to accounting in one file.

    ``entries`` is the snapshot the file is written from (:class:`billing.accounting.Entry` as JSON) and
    ``header`` the file's settings at export time, so ``billbot export … --batch ID`` re-writes the file
    byte for byte (``sha256``) whatever master data changed since."""

    __tablename__ = "export_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    format: Mapped[str] = mapped_column(String(16))  # datev | beancount
    legal_entity_id: Mapped[str] = mapped_column(ForeignKey("legal_entities.id"))
    period: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    header: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    entries: Mapped[list[Any]] = mapped_column(JSON, default=list)
    documents: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExportedDocument(Base):
    """An invoice or credit note handed to accounting in one format: at most once (the primary key)."""

    __tablename__ = "exported_documents"

    format: Mapped[str] = mapped_column(String(16), primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("export_batches.id"), index=True)


class ExportedAllocation(Base):
    """A payment allocation or write-off booked in an accounting export of one format: at most once."""

    __tablename__ = "exported_allocations"

    format: Mapped[str] = mapped_column(String(16), primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("payment_allocations.id"), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("export_batches.id"), index=True)


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    preinvoice_id: Mapped[int | None] = mapped_column(Integer, index=True)
    preinvoice_line_id: Mapped[int | None] = mapped_column(Integer)
    item_id: Mapped[str | None] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Money())
    unit: Mapped[str] = mapped_column(String(40))
    unit_price: Mapped[Decimal] = mapped_column(Money())
    amount: Mapped[Decimal] = mapped_column(Money())
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)
    computation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credited_line_id: Mapped[int | None] = mapped_column(Integer)  # credit notes: the cancelled line

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class BillingRun(Base):
    __tablename__ = "billing_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(16))  # 2026-02, 2026-W07, 2026-Q1
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    advertisers: Mapped[list[Any]] = mapped_column(JSON, default=list)  # filter, empty = all
    started_by: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    channel: Mapped[str | None] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    lock_key: Mapped[str | None] = mapped_column(String(100), unique=True)  # set while running


class JobLog(Base):
    """Human-readable job log lines of billing runs and syncs, in order."""

    __tablename__ = "job_log"
    __table_args__ = (Index("ix_job_log_run", "run_kind", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_kind: Mapped[str] = mapped_column(String(16))  # billing | sync
    run_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)


EXCEPTION_STATES = ("pending", "escalated", "approved", "rejected", "forced", "closed")
OPEN_EXCEPTION_STATES = ("pending", "escalated")


class BillingException(Base):
    """An exception waiting for a human: a variance on a pre-invoice or a below-threshold skip.

    ``key`` makes re-running checks update instead of duplicate. SLA timers are data: the sweep
    moves rows whose ``remind_at`` / ``due_at`` passed with one conditional UPDATE each.
    """

    __tablename__ = "exceptions"
    __table_args__ = (
        UniqueConstraint("key", name="uq_exceptions_key"),
        Index("ix_exceptions_state_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # variance | below_threshold
    state: Mapped[str] = mapped_column(String(16), default="pending")
    legal_entity_id: Mapped[str] = mapped_column(ForeignKey("legal_entities.id"))
    advertiser_id: Mapped[str] = mapped_column(ForeignKey("advertisers.id"), index=True)
    preinvoice_id: Mapped[int | None] = mapped_column(ForeignKey("preinvoices.id"))
    billing_run_id: Mapped[int | None] = mapped_column(Integer)
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(3))
    cause: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    subject_hash: Mapped[str] = mapped_column(String(64), default="")  # what a decision binds to
    approvals_needed: Mapped[int] = mapped_column(Integer, default=1)
    approvals: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{user, at}] before the last one
    started_by: Mapped[str | None] = mapped_column(String(64))  # who started the run / edited
    # who sees it through (issue 21): the account owner, else the starter, else the entity's default
    owner: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)
    #: the routing rule, approver group, checklist and reminder plan it was opened under (issue 21;
    #: None: the default rule — any approver, two above TWO_APPROVER_AMOUNT, one reminder at half-time)
    review: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    advertiser: Mapped[Advertiser] = relationship()
    preinvoice: Mapped[PreInvoice | None] = relationship()


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exception_id: Mapped[int] = mapped_column(ForeignKey("exceptions.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject | force
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    actor_email: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
    subject_hash: Mapped[str] = mapped_column(String(64))
    audit_id: Mapped[int | None] = mapped_column(Integer)


class AuditLog(Base):
    """Append-only, hash-chained, Ed25519-signed log of every state change.

    ``record_hash`` = SHA-256 over the canonical JSON of (seq, at, actor, action, subject, payload,
    prev_hash); ``signature`` signs ``record_hash``. ``billbot audit verify`` recomputes both.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON text, hashed as stored
    prev_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64), unique=True)
    signature: Mapped[str | None] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(32))


class AuditHead(Base):
    """One row: the hash of the last audit record. Updated in the same transaction as the insert
    (row lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("task", "args_key", "cron", name="uq_schedules_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    args_key: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Setting(Base):
    """Small key/value state (e.g. ``digest.last_sent_at``)."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# --------------------------------------------------------------------------- controls (issue 14)


class SigningKey(Base):
    """The key registry: every public key the audit log and evidence packs were ever signed with.

    A key is registered (and recorded in the audit log itself, with its PEM) the first time it signs;
    ``billbot keys rotate`` retires the active key with a hand-over record signed by it. Records signed
    by a retired key still verify — up to ``retired_at_record``, the hand-over; none may follow it.
    """

    __tablename__ = "signing_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    public_key: Mapped[str] = mapped_column(Text)  # PEM (SubjectPublicKeyInfo)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    registered_at_record: Mapped[int | None] = mapped_column(Integer)  # the audit record naming it
    retired_at_record: Mapped[int | None] = mapped_column(Integer)  # the hand-over record it signed last
    created_by: Mapped[str | None] = mapped_column(String(64))


class ChangeSet(Base):
    """Money-moving changes of existing master data (rates, amounts, thresholds, tolerances, VAT data,
    payment terms) from ``billbot load``, held until someone other than the author approves them.

    ``diff`` is a list of ``{kind, id, field, before, after}`` (values as canonical strings);
    ``subject_hash`` the SHA-256 of the diff, what an approval binds to.
    """

    __tablename__ = "change_sets"
    __table_args__ = (Index("ix_change_sets_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    author: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(200), default="")  # the file or demo it came from
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | approved | rejected
    diff: Mapped[list[Any]] = mapped_column(JSON, default=list)
    subject_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(32))


class CreditNoteRequest(Base):
    """A credit note asked for, not yet issued: a ``finance_manager`` other than the requester
    approves it, and only then is the credit note numbered and issued (``credit_note_id``)."""

    __tablename__ = "credit_note_requests"
    __table_args__ = (Index("ix_credit_note_requests_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    invoice_number: Mapped[str] = mapped_column(String(64))
    line_ids: Mapped[list[Any] | None] = mapped_column(JSON)  # None: every line not yet credited
    reason: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))  # net to be credited (negative)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | approved | rejected
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str | None] = mapped_column(Text)
    credit_note_id: Mapped[int | None] = mapped_column(Integer)
    # partial credits (issue 20): [{line, quantity, amount}] (quantity/amount as strings, None: the rest of
    # the line); None: whole lines (``line_ids``)
    partial: Mapped[list[Any] | None] = mapped_column(JSON)
    dispute_id: Mapped[int | None] = mapped_column(Integer)  # the dispute this credit was proposed for


DISPUTE_CATEGORIES = ("tracking_disagreement", "invalid_traffic", "make_good_not_applied", "rate_disagreement",
                      "duplicate_billing", "other")
# open: waiting for the desk; proposed: a credit proposal waits for approval (both hold dunning)
OPEN_DISPUTE_STATES = ("open", "proposed")
DISPUTE_STATES = (*OPEN_DISPUTE_STATES, "credited", "rejected", "withdrawn")


class Dispute(Base):
    """A client's challenge of an invoice (issue 20): the disputed lines and amount, who owns it, its SLA
    timers (data, like exceptions' — swept by :mod:`bot.workflows.disputes`) and how it ended
    (``credited`` amount, ``days_open``). An open dispute keeps its invoice out of dunning."""

    __tablename__ = "disputes"
    __table_args__ = (Index("ix_disputes_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    invoice_number: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    lines: Mapped[list[Any]] = mapped_column(JSON, default=list)  # disputed invoice line ids
    amount: Mapped[Decimal] = mapped_column(Money())  # disputed net amount
    currency: Mapped[str] = mapped_column(String(3))
    client_contact: Mapped[str | None] = mapped_column(String(200))
    client_reference: Mapped[str | None] = mapped_column(String(100))
    owner: Mapped[str] = mapped_column(String(64))
    opened_by: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(Text)  # the reason given to the client
    credited: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))  # net credited (positive)
    days_open: Mapped[int | None] = mapped_column(Integer)
    credit_request_id: Mapped[int | None] = mapped_column(Integer)
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    evidence_path: Mapped[str | None] = mapped_column(String(500))
    channel: Mapped[str | None] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(32))
# --------------------------------------------------------------------------- money in (issue 18)


PAYMENT_KINDS = ("credit", "debit", "return", "reversal")
# unmatched | matched | partial | overpaid: cash application of a credit; not_a_payment: debits, returns, reversals
PAYMENT_STATES = ("unmatched", "matched", "partial", "overpaid", "not_a_payment")


class Payment(Base):
    """One booked bank-statement entry. Only ``kind='credit'`` entries are payments to apply; the
    others are kept as what they are. The bank's entry reference, the account, the booking date and
    the amount identify an entry: a statement imported twice adds nothing."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("account", "entry_ref", "booking_date", "amount", name="uq_payments_entry"),
        Index("ix_payments_state", "state"),
        Index("ix_payments_sla_state_due", "sla_state", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(34))
    entry_ref: Mapped[str] = mapped_column(String(100))
    booking_date: Mapped[date] = mapped_column(Date)
    value_date: Mapped[date | None] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money())  # signed: + in, − out
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    payer_name: Mapped[str | None] = mapped_column(String(200))
    payer_iban: Mapped[str | None] = mapped_column(String(34), index=True)
    payer_bic: Mapped[str | None] = mapped_column(String(11))
    remittance: Mapped[str | None] = mapped_column(Text)
    end_to_end_id: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default="unmatched")
    unapplied: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    source_file: Mapped[str | None] = mapped_column(String(500))
    location: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # a cash-application exception's SLA timers, moved by the sweep like those of ``exceptions``:
    # None (nobody needs to act) | open | escalated | settled
    sla_state: Mapped[str | None] = mapped_column(String(16))
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    channel: Mapped[str | None] = mapped_column(String(64))  # where its Slack message is
    message_ts: Mapped[str | None] = mapped_column(String(32))


class PaymentAllocation(Base):
    """Money applied to an invoice: a part of a payment (``kind='payment'``) or a written-off
    difference (``kind='write_off'``, no payment). Rows are only added; each is audited."""

    __tablename__ = "payment_allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="payment")  # payment | write_off
    amount: Mapped[Decimal] = mapped_column(Money())
    method: Mapped[str] = mapped_column(String(16))  # reference | iban | name | manual
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PayerAccount(Base):
    """A payer IBAN known to belong to an advertiser (learned when a payment from it was applied)."""

    __tablename__ = "payer_accounts"

    iban: Mapped[str] = mapped_column(String(34), primary_key=True)
    advertiser_id: Mapped[str] = mapped_column(ForeignKey("advertisers.id"), index=True)
    learned_from_payment_id: Mapped[int | None] = mapped_column(Integer)


class InvoiceHold(Base):
    """Something that stops dunning an invoice: an open ``dispute`` (until resolved) or a ``promise``
    to pay by ``until``."""

    __tablename__ = "invoice_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # dispute | promise
    until: Mapped[date | None] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DunningLetter(Base):
    """One dunning letter per invoice and level, ever (the unique key makes a second run a no-op)."""

    __tablename__ = "dunning_letters"
    __table_args__ = (UniqueConstraint("invoice_id", "level", name="uq_dunning_letters_level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(40))
    letter_date: Mapped[date] = mapped_column(Date)
    days_past_due: Mapped[int] = mapped_column(Integer)
    open_amount: Mapped[Decimal] = mapped_column(Money())
    fee: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    interest: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16), default="sent")  # sent | skipped
    pdf_path: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
