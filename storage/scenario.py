"""The scenario-file contract (``billbot load FILE.yaml``), as pydantic models.

``../shared/scenarios/example.yaml`` is the reference. Validation collects *every* problem and
names each by its path in the file (``campaigns[3].items[0].rate: …``); cross references
(advertiser → legal entity, campaign → advertiser, delivery → item) are checked against the file
and, for ids not in the file, against the database by the loader.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from billing.errors import Invalid
from billing.money import check_currency, money
from billing.numbering import check_template

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _money(v: Any) -> Decimal:
    if isinstance(v, float):
        # YAML turns 250.00 into a float; money must be written as a string ("250.00").
        raise ValueError(f"write money as a string in quotes, e.g. \"{v:.2f}\" (floats are inexact)")
    try:
        return money(v)
    except Invalid as e:  # pydantic collects ValueErrors with their path
        raise ValueError(e.message) from None


def _currency(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be an ISO 4217 code such as EUR")
    try:
        return check_currency(v)
    except Invalid as e:
        raise ValueError(e.message) from None


def _names(v: Any) -> Any:
    """``managing_directors`` as a list of names; one name as a plain string is accepted too."""
    return [v] if isinstance(v, str) else v


def _not_negative(v: Decimal) -> Decimal:
    if v < 0:
        raise ValueError("must not be negative (a discount is a line of its own, not a negative figure)")
    return v


MoneyField = Annotated[Decimal, BeforeValidator(_money)]
#: rates, amounts, quantities, tolerances: never below zero
Amount = Annotated[Decimal, BeforeValidator(_money), AfterValidator(_not_negative)]
Currency = Annotated[str, BeforeValidator(_currency)]


def _country(v: Any) -> Any:
    from billing.addresses import is_country

    if isinstance(v, str) and len(v) == 2 and v.isupper() and not is_country(v):
        raise ValueError(f"{v!r} is not an ISO 3166-1 alpha-2 country code")
    return v


Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$"), AfterValidator(_country)]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DunningLevelIn(_Model):
    """One dunning letter: ``days`` after the due date, with an optional fee and yearly interest (%)."""

    level: int = Field(ge=1, le=9)
    name: str = Field(min_length=1, max_length=40)
    days: int = Field(ge=0, le=3650)
    fee: MoneyField = Decimal("0")
    interest_rate: Decimal = Field(default=Decimal("0"), ge=0, le=100)


SlackId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,20}$")]


class LegalEntityIn(_Model):
    id: Id
    name: str
    country: Country
    currency: Currency
    vat_id: str | None = None
    start_of_week: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = "monday"
    invoice_series: str = "INV-{year}-{seq:06d}"
    credit_note_series: str = "CN-{year}-{seq:06d}"
    address: str | None = None  # one line, as older files have it: parsed into street, postcode and city
    street: str | None = None
    postcode: str | None = None
    city: str | None = None
    exceptions_channel: str | None = None
    tolerance: Amount | None = None
    iban: str | None = None
    default_owner: SlackId | None = None  # owns exceptions nobody else owns (issue 21)
    # what the documents state about the seller (§ 35a GmbHG: register court and number, managing directors)
    register_court: str | None = None
    register_number: str | None = None
    managing_directors: Annotated[list[str], BeforeValidator(_names)] = Field(default_factory=list)
    bank_name: str | None = None
    bic: str | None = None
    # the accounting export (issue 19): DATEV numbers, fiscal year start, account length and chart
    # (:class:`billing.accounting.Chart`)
    accounting: dict[str, Any] | None = None
    # invoice terms (:mod:`billing.terms`): issue date and due date rules, overridable per advertiser
    invoice_date: Literal["run_day", "service_end", "day_after_service"] = "run_day"
    due_date: Literal["net", "end_of_month"] = "net"
    # the FX cutoff (:func:`billing.fx.invoice_rate`): the rate of the issue date or of the service
    # period's last day (the agreed month-end rate), at most ``fx_max_age_days`` older
    fx_rule: Literal["issue_date", "service_end"] = "issue_date"
    fx_max_age_days: int = Field(default=7, ge=0, le=62)

    @field_validator("accounting")
    @classmethod
    def _accounting(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        from billing.accounting import Chart

        if v is not None:
            try:
                Chart.from_settings(v)
            except Invalid as e:
                raise ValueError("; ".join(e.problems)) from None
        return v

    @field_validator("bic")
    @classmethod
    def _bic(cls, v: str | None) -> str | None:
        from stdnum import bic

        if v is not None and not bic.is_valid(v):
            raise ValueError(f"{v!r} is not a valid BIC (ISO 9362, e.g. COBADEFFXXX)")
        return bic.compact(v) if v is not None else None

    @field_validator("iban")
    @classmethod
    def _iban(cls, v: str | None) -> str | None:
        from stdnum import iban

        if v is not None and not iban.is_valid(v):
            raise ValueError(f"{v!r} is not a valid IBAN")
        return iban.compact(v) if v is not None else None
    dunning: list[DunningLevelIn] = Field(default_factory=list)

    @field_validator("invoice_series", "credit_note_series")
    @classmethod
    def _series(cls, v: str) -> str:
        if "{seq" not in v:
            raise ValueError("a number series needs a {seq} placeholder, e.g. INV-{year}-{seq:06d}")
        try:
            check_template(v)  # bounded widths first: formatting a huge width would allocate it
        except Invalid as e:
            raise ValueError(e.message) from None
        return v


class PartnerIn(_Model):
    """A sales partner owning several advertisers (its branches name it in ``partner``).

    ``invoicing``: ``per_branch`` (each branch is invoiced on its own; the default) or ``consolidated``
    (one invoice per partner, legal entity and currency with a line block per branch, addressed to the
    partner at its ``head_office`` branch: that branch's address, VAT id, e-mail addresses and terms;
    default the partner's first branch by id)."""

    id: Id
    name: str = Field(min_length=1, max_length=200)
    invoicing: Literal["per_branch", "consolidated"] = "per_branch"
    head_office: Id | None = None


_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


class AdvertiserIn(_Model):
    id: Id
    name: str
    legal_entity: Id
    currency: Currency
    country: Country
    vat_id: str | None = None
    billing_threshold: Amount = Decimal("0")
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    locale: str = "en"
    address: str | None = None  # one line, as older files have it: parsed into street, postcode and city
    street: str | None = None
    postcode: str | None = None
    city: str | None = None
    customer_number: str | None = None  # the advertiser's own customer number, printed on its documents
    # Slack user id of the account owner: told about items held for correction, and reminded
    account_owner: SlackId | None = None  # owns its exceptions and its items held for correction
    email: str | None = None
    tolerance: Amount | None = None
    # e-mail dispatch (issue 19): invoices go to ``invoice_emails`` (else ``email``), copied to ``invoice_cc``;
    # ``dispatch: none`` for clients who download their invoices from a portal
    invoice_emails: list[str] = Field(default_factory=list)
    invoice_cc: list[str] = Field(default_factory=list)
    dispatch: Literal["email", "none"] = "email"
    # the advertiser's personal debtor account in the accounting export (DATEV: 10000–69999 for 4-digit charts)
    debtor_account: Annotated[str, Field(pattern=r"^[1-9][0-9]{4,8}$")] | None = None
    invoice_date: Literal["run_day", "service_end", "day_after_service"] | None = None  # None: the entity's
    due_date: Literal["net", "end_of_month"] | None = None
    partner: Id | None = None  # the partner (``partners``) this advertiser is a branch of
    # purchase orders (issue 19): the default PO number of the advertiser's invoices (a campaign may
    # override it); ``po_required``: a pre-invoice without one has a problem and is held
    po_number: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    po_required: bool = False

    @field_validator("invoice_emails", "invoice_cc")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not _EMAIL.fullmatch(a.strip())]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(bad)}")
        return [a.strip() for a in v]

    @field_validator("billing_threshold")
    @classmethod
    def _nonneg(cls, v: Decimal) -> Decimal:
        if v < 0:
            raise ValueError("must not be negative")
        return v


class ItemIn(_Model):
    id: Id
    description: str
    billing: Literal["linear", "delivery"] = "linear"
    unit: Literal["amount", "quantity"] = "amount"
    period: Literal["day_based", "even"] = "day_based"
    amount: Amount | None = None
    rate_type: Literal["cpm", "cpc", "cpa", "cpl", "flat"] | None = None
    rate: Amount | None = None
    booked_quantity: Amount | None = None
    start: date | None = None
    end: date | None = None
    tolerance: Amount | None = None
    make_good: bool = False
    variance_check: bool = False  # linear items only: check them against delivery data too (opt in)
    # what is sold: decides the VAT treatment abroad (outside the EU services are ``O``, goods ``G``)
    supply: Literal["goods", "services"] = "services"
    external_ids: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> ItemIn:
        if self.billing == "linear" and self.unit == "amount" and self.amount is None:
            raise ValueError("a linear item with unit amount needs `amount`")
        if self.billing == "linear" and self.unit == "quantity" and (self.booked_quantity is None or self.rate is None):
            raise ValueError("a linear item with unit quantity needs `booked_quantity` and `rate`")
        if self.billing == "delivery" and (self.rate_type is None or self.rate is None):
            raise ValueError("a delivery item needs `rate_type` and `rate`")
        if self.amount is not None and self.amount < 0:
            raise ValueError("amount must not be negative")
        if self.start and self.end and self.end < self.start:
            raise ValueError("end is before start")
        return self


class CampaignIn(_Model):
    id: Id
    advertiser: Id
    name: str
    bill_me: bool = True
    payment_interval: Literal["weekly", "monthly", "quarterly", "total"] = "monthly"
    start: date
    end: date
    tolerance: Amount | None = None
    # a fixed exchange rate agreed with the client: units of the legal entity's currency per 1 unit of the
    # advertiser's, used instead of the published rate (``fx_rate_date``: the day it was agreed)
    fx_rate: Decimal | None = Field(default=None, gt=0)
    fx_rate_date: date | None = None
    po_number: Annotated[str, Field(min_length=1, max_length=64)] | None = None  # overrides the advertiser's
    items: list[ItemIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _dates(self) -> CampaignIn:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class UserIn(_Model):
    slack_id: Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]
    name: str = ""
    email: str | None = None
    roles: list[Literal["approver", "finance_manager", "operator", "admin", "cash_applier"]] = Field(
        default_factory=list)


class DeliveryIn(_Model):
    item: Id
    date: date
    source: Literal["first_party", "third_party"] = "first_party"
    impressions: int = Field(default=0, ge=0)
    clicks: int = Field(default=0, ge=0)
    conversions: int = Field(default=0, ge=0)
    status: Literal["approved", "pending", "rejected"] = "approved"
    revenue: Amount | None = None


class RateIn(_Model):
    date: date
    base: Currency
    quote: Currency
    rate: MoneyField
    source: str = "ECB"

    @field_validator("rate")
    @classmethod
    def _pos(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise ValueError("must be positive")
        return v


class DisputeSlaIn(_Model):
    """How long a dispute of one category may stay open (issue 20): ``hours`` to resolve it, the owner
    reminded after ``remind_hours`` (default: half of ``hours``)."""

    hours: float = Field(gt=0, le=24 * 365)
    remind_hours: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _remind_first(self) -> DisputeSlaIn:
        if self.remind_hours is not None and self.remind_hours > self.hours:
            raise ValueError("remind_hours is after hours (the reminder comes before the deadline)")
        return self


CHECKED_DECISIONS: tuple[Literal["approve", "force"], ...] = ("approve", "force")


class ChecklistIn(_Model):
    """Items an approver ticks before Approve / Force on exceptions of ``kind`` (and ``cause``)."""

    kind: Literal["variance", "below_threshold", "manual_change"]
    cause: str | None = None  # None: every cause of the kind; a cause-specific list wins
    decisions: list[Literal["approve", "force"]] = Field(default_factory=lambda: list(CHECKED_DECISIONS))
    # a Slack checkbox option is at most 75 characters, a checkbox group at most 10 options
    items: list[Annotated[str, Field(min_length=3, max_length=75)]] = Field(min_length=1, max_length=10)


class ApproversIn(_Model):
    """Who may decide: a Slack user group (``group: S…``; members asked from Slack unless ``users``
    lists them) and/or a list of Slack users."""

    group: Annotated[str, Field(pattern=r"^S[A-Z0-9]{2,}$")] | None = None
    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,79}$")  # handle: "finance-leads"
    users: list[Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _someone(self) -> ApproversIn:
        if self.group is None and not self.users:
            raise ValueError("give a Slack user group (group: S…) or a list of users")
        return self


class SlaIn(_Model):
    """Reminders with backoff and the outcome at expiry."""

    hours: Decimal | None = Field(default=None, gt=0, le=24 * 60)  # None: SLA_HOURS
    reminders: list[Decimal] = Field(default_factory=lambda: [Decimal("0.5")])  # fractions of the SLA
    repeat_hours: Decimal | None = Field(default=None, gt=0)  # after expiry: every N hours to the managers
    on_timeout: Literal["escalate", "auto_approve"] = "escalate"
    auto_approve_below: Amount | None = None  # auto_approve only for variances below this amount

    @field_validator("reminders")
    @classmethod
    def _fractions(cls, v: list[Decimal]) -> list[Decimal]:
        if any(f <= 0 or f > 1 for f in v):
            raise ValueError("each reminder is a fraction of the SLA above 0 and at most 1 (0.5 = half-time)")
        return sorted(set(v))

    @model_validator(mode="after")
    def _auto(self) -> SlaIn:
        if self.on_timeout == "auto_approve" and self.auto_approve_below is None:
            raise ValueError("on_timeout auto_approve needs auto_approve_below (the small amount it applies under)")
        return self


class RouteIn(_Model):
    """A routing rule: exceptions matching every given condition go to ``approvers``; the first
    matching rule in file order wins; no match → the default (any approver, two above
    TWO_APPROVER_AMOUNT)."""

    id: Id
    legal_entity: Id | None = None
    advertiser: Id | None = None
    kind: Literal["variance", "below_threshold", "manual_change"] | None = None
    min_amount: Amount | None = None  # the amount at stake is at least this
    max_amount: Amount | None = None  # ... and below this
    approvers: ApproversIn | None = None  # None: any approver
    approvals: int = Field(default=1, ge=1, le=5)
    sla: SlaIn | None = None


class FreshnessIn(_Model):
    """A source's freshness target (issue 21): its data must reach a billing period's last day within
    ``days`` days after it. ``block`` (default): a pre-invoice fed by the source while its data ends
    before the period end waits on a ``stale_source`` exception; ``false``: shown, not blocking."""

    days: int = Field(default=2, ge=0, le=365)
    block: bool = True


class Scenario(_Model):
    legal_entities: list[LegalEntityIn] = Field(default_factory=list)
    partners: list[PartnerIn] = Field(default_factory=list)
    advertisers: list[AdvertiserIn] = Field(default_factory=list)
    campaigns: list[CampaignIn] = Field(default_factory=list)
    users: list[UserIn] = Field(default_factory=list)
    delivery: list[DeliveryIn] = Field(default_factory=list)
    exchange_rates: list[RateIn] = Field(default_factory=list)
    dispute_sla: dict[str, DisputeSlaIn] = Field(default_factory=dict)  # category → SLA (issue 20)
    freshness: dict[str, FreshnessIn] = Field(default_factory=dict)  # source → freshness target (issue 21)

    @field_validator("dispute_sla")
    @classmethod
    def _categories(cls, v: dict[str, DisputeSlaIn]) -> dict[str, DisputeSlaIn]:
        from storage.models import DISPUTE_CATEGORIES

        bad = [k for k in v if k not in DISPUTE_CATEGORIES]
        if bad:
            raise ValueError(f"unknown dispute categor{'y' if len(bad) == 1 else 'ies'} {', '.join(bad)} "
                             f"(one of {', '.join(DISPUTE_CATEGORIES)})")
        return v
    checklists: list[ChecklistIn] | None = None  # given: replaces the stored checklists
    routing: list[RouteIn] | None = None  # given: replaces the stored routing rules


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "literal[", "constrained-")):
            continue
        else:
            out += ("." if out else "") + part
    return out or "(file)"


def parse_scenario(data: Any) -> Scenario:
    """Validate ``data`` (parsed YAML). Raises :class:`Invalid` with one problem per bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise Invalid("(file): a scenario is a mapping with keys legal_entities, advertisers, campaigns, …")
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            problems.append(f"{_path(err['loc'])}: {msg}")
        raise Invalid(problems) from None
    return sc


def cross_check(sc: Scenario, known: dict[str, set[str]]) -> list[str]:  # noqa: C901 - one cross-reference check per scenario section, each naming its path
    """Reference and uniqueness problems; ``known`` holds ids already in the database by kind."""
    problems: list[str] = []
    les = {le.id for le in sc.legal_entities} | known.get("legal_entities", set())
    advs = {a.id for a in sc.advertisers} | known.get("advertisers", set())
    items = {it.id for c in sc.campaigns for it in c.items} | known.get("items", set())

    def dupes(kind: str, ids: list[str]) -> None:
        seen: set[str] = set()
        for i, x in enumerate(ids):
            if x in seen:
                problems.append(f"{kind}[{i}].id: duplicate id {x!r}")
            seen.add(x)

    dupes("legal_entities", [x.id for x in sc.legal_entities])
    dupes("advertisers", [x.id for x in sc.advertisers])
    dupes("campaigns", [x.id for x in sc.campaigns])
    dupes("partners", [x.id for x in sc.partners])
    partners = {p.id for p in sc.partners} | known.get("partners", set())
    for i, a in enumerate(sc.advertisers):
        if a.partner is not None and a.partner not in partners:
            problems.append(f"advertisers[{i}].partner: unknown partner {a.partner!r}")
    branch_of = {a.id: a.partner for a in sc.advertisers}
    for i, pa in enumerate(sc.partners):
        if pa.head_office is None:
            continue
        if pa.head_office not in advs:
            problems.append(f"partners[{i}].head_office: unknown advertiser {pa.head_office!r}")
        elif pa.head_office in branch_of and branch_of[pa.head_office] != pa.id:
            problems.append(f"partners[{i}].head_office: advertiser {pa.head_office!r} is not a branch of "
                            f"partner {pa.id!r} (its `partner` says {branch_of[pa.head_office]!r})")
    all_items: dict[str, str] = {}
    for ci, c in enumerate(sc.campaigns):
        for ii, it in enumerate(c.items):
            if it.id in all_items:
                problems.append(f"campaigns[{ci}].items[{ii}].id: duplicate item id {it.id!r}")
            all_items[it.id] = c.id
    for i, a in enumerate(sc.advertisers):
        if a.legal_entity not in les:
            problems.append(f"advertisers[{i}].legal_entity: unknown legal entity {a.legal_entity!r}")
    for i, c in enumerate(sc.campaigns):
        if c.advertiser not in advs:
            problems.append(f"campaigns[{i}].advertiser: unknown advertiser {c.advertiser!r}")
    for i, d in enumerate(sc.delivery):
        if d.item not in items:
            problems.append(f"delivery[{i}].item: unknown campaign item {d.item!r}")
    for i, r in enumerate(sc.routing or []):
        if r.legal_entity is not None and r.legal_entity not in les:
            problems.append(f"routing[{i}].legal_entity: unknown legal entity {r.legal_entity!r}")
        if r.advertiser is not None and r.advertiser not in advs:
            problems.append(f"routing[{i}].advertiser: unknown advertiser {r.advertiser!r}")
    dupes("routing", [r.id for r in sc.routing or []])
    for i, le in enumerate(sc.legal_entities):
        if le.vat_id and not _vat_ok(le.vat_id):
            problems.append(f"legal_entities[{i}].vat_id: {le.vat_id!r} is not a valid VAT id")
    for i, a in enumerate(sc.advertisers):
        if a.vat_id and not _vat_ok(a.vat_id):
            problems.append(f"advertisers[{i}].vat_id: {a.vat_id!r} is not a valid VAT id")
    return problems


def _vat_ok(v: str) -> bool:
    from stdnum.ch import vat as ch_vat
    from stdnum.eu import vat as eu_vat
    from stdnum.gb import vat as gb_vat

    v = v.strip()
    if v.upper().startswith("CHE"):
        return bool(ch_vat.is_valid(v))
    if v.upper().startswith("GB"):
        return bool(gb_vat.is_valid(v))
    if v[:2].isalpha() and v[:2].upper() in {"US", "CA", "NO", "AU", "JP"}:
        return True  # no EU-style VAT id; kept as given
    return bool(eu_vat.is_valid(v))
