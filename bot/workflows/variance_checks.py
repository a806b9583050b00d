"""Run the variance checks on pre-invoices and keep their ``variance`` exceptions in step.

:func:`run_variance_checks` runs inside the caller's transaction (``create_preinvoices`` calls it
after writing the drafts): it loads the pre-invoices, their campaign items, first- and third-party
delivery rows of this and the prior period, approved conversions and exchange rates, runs the pure
:func:`billing.variance.check_variances`, and then per pre-invoice:

- findings beyond tolerance → ONE ``variance`` exception per pre-invoice, key
  ``variance:preinvoice:<id>``, holding every finding (the one with the most money at stake is the
  primary: its rule, cause and figures are at the top of the evidence, all of them under
  ``findings``). One per pre-invoice because the decision is per pre-invoice: Approve bills the
  computed amount, Force bills the booked amount of the whole pre-invoice. A ``draft`` pre-invoice
  becomes ``pending``;
- no findings → an open variance exception of the pre-invoice is closed ("no longer breached").

Re-running is idempotent: the same data gives the same evidence and subject hash, so nothing is
written; changed data updates the open exception in place (or reopens a decided one).
Pre-invoices that are ``approved``, ``invoiced`` or ``cancelled`` are not checked (listed as skipped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.util import identity_key

from billing.fx import MAX_AGE_DAYS, Rate, find_rate
from billing.money import ZERO, round_money
from billing.periods import Period
from billing.preinvoice import booked_share
from billing.variance import (
    DEFAULT_TOLERANCE,
    METRICS,
    ItemPeriod,
    PreInvoiceFindings,
    check_variances,
    findings_by_preinvoice,
    overlap_days,
    prior_period,
    resolve_tolerance,
)
from bot.workflows import audit
from bot.workflows.effects import notify
from bot.workflows.exceptions import close_exception, insert_new, open_exception, record_opened
from storage.mapping import campaign_spec
from storage.models import (
    Advertiser,
    BillingException,
    Campaign,
    CampaignItem,
    Conversion,
    DeliveryFact,
    ExchangeRate,
    LegalEntity,
    PreInvoice,
)
from storage.queries import among

CHECKED_STATES = ("draft", "pending", "held")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
KIND = "variance"


def exception_key(preinvoice_id: int) -> str:
    return f"variance:preinvoice:{preinvoice_id}"


@dataclass(frozen=True)
class VarianceRunResult:
    """What one check run did. Exception ids in ``opened`` include reopened ones."""

    checked: tuple[int, ...] = ()
    skipped: tuple[int, ...] = ()
    pending: tuple[int, ...] = ()  # pre-invoices with an open variance exception after the run
    opened: tuple[int, ...] = ()
    updated: tuple[int, ...] = ()
    unchanged: tuple[int, ...] = ()
    closed: tuple[int, ...] = ()
    variances: int = 0
    findings: tuple[PreInvoiceFindings, ...] = ()


# --------------------------------------------------------------------------- loading


def _facts_frame(s: Session, item_ids: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """First- and third-party delivery rows plus approved conversions (as first-party rows of table
    ``conversions``) of ``item_ids`` between ``start`` and ``end``."""
    cols = ["id", "item_id", "day", "party", "impressions", "clicks", "conversions", "table"]
    if not item_ids:
        return pd.DataFrame(columns=cols)
    # Core queries and a frame built column-wise: ~100k rows through the ORM row machinery, as row
    # tuples into pandas, or dates through ``pd.to_datetime`` / numpy's date parsing are each slow
    f, c = DeliveryFact.__table__.c, Conversion.__table__.c
    conn = s.connection()
    fq = (select(f.id, f.item_id, f.day, f.party, f.impressions, f.clicks, f.conversions)
          .where(f.day >= start, f.day <= end))
    cq = select(c.id, c.item_id, c.day).where(c.day >= start, c.day <= end, c.status == "approved")
    wanted = set(item_ids)
    f_among, c_among = among(s, f.item_id, wanted), among(s, c.item_id, wanted)
    if f_among is not None and c_among is not None:
        fq, cq = fq.where(f_among), cq.where(c_among)
    facts = [r for r in conn.execute(fq).all() if r[1] in wanted]
    convs = [r for r in conn.execute(cq).all() if r[1] in wanted]
    n_f, n_c = len(facts), len(convs)
    f_cols = [[r[i] for r in facts] for i in range(7)]  # indexing rows: far cheaper than zip(*rows)
    c_cols = [[r[i] for r in convs] for i in range(3)]
    epoch = _EPOCH_ORDINAL
    days = np.array([d.toordinal() - epoch for d in (*f_cols[2], *c_cols[2])], dtype="int64")
    return pd.DataFrame({
        "id": np.array([*f_cols[0], *c_cols[0]], dtype="int64"),
        "item_id": np.array([*f_cols[1], *c_cols[1]], dtype=object),
        "day": days.astype("datetime64[D]").astype("datetime64[ns]"),
        "party": np.array([*f_cols[3], *(["first_party"] * n_c)], dtype=object),
        "impressions": _ints(f_cols[4], n_c, 0),
        "clicks": _ints(f_cols[5], n_c, 0),
        "conversions": _ints(f_cols[6], n_c, 1),
        "table": np.array(["delivery_facts"] * n_f + ["conversions"] * n_c, dtype=object),
    }, columns=cols)


def _ints(values: Sequence[int | None], extra: int, fill: int) -> npt.NDArray[np.int64]:
    """An int64 column of ``values`` (None → 0) followed by ``extra`` copies of ``fill``."""
    return np.array([*(v or 0 for v in values), *([fill] * extra)], dtype="int64")


def _rates(s: Session, currencies: Iterable[str], start: date, end: date) -> list[Rate]:
    cur = sorted(set(currencies))
    rows = s.execute(
        select(ExchangeRate).where(ExchangeRate.day >= start - timedelta(days=MAX_AGE_DAYS),
                                   ExchangeRate.day <= end,
                                   ExchangeRate.base.in_(cur) | ExchangeRate.quote.in_(cur))
        .order_by(ExchangeRate.day, ExchangeRate.id)
    ).scalars()
    return [Rate(r.day, r.base, r.quote, r.rate, r.source) for r in rows]


def _rate(rates: Sequence[Rate], from_: str, to: str, on: date) -> Decimal | None:
    if from_ == to:
        return None
    found = find_rate(rates, from_, to, on=on)
    return found.rate if found is not None else None


def _unit_price(item: CampaignItem, amount: Decimal, qty: Decimal | None) -> Decimal | None:
    """Price of one unit of the item's metric (a CPM rate per impression)."""
    if item.rate is not None and (item.rate_type or "") in METRICS:
        return item.rate / 1000 if item.rate_type == "cpm" else item.rate
    if qty:
        return amount / qty
    return None


def _item_periods(
    pi: PreInvoice, *, campaign: Campaign, items: Sequence[CampaignItem], adv: Advertiser, le: LegalEntity,
    prior_lines: dict[str, Decimal] | None, rates: Sequence[Rate], default_tol: Decimal,
) -> list[ItemPeriod]:
    prior_start, prior_end = prior_period(pi.period_start, pi.period_end, campaign.payment_interval)
    amounts: dict[str, Decimal] = {}
    quantities: dict[str, Decimal] = {}
    for ln in pi.lines:
        if ln.item_id is None or ln.kind != "item":
            continue
        amounts[ln.item_id] = amounts.get(ln.item_id, ZERO) + ln.amount
        q = (ln.computation or {}).get("quantity")
        if q is not None:  # the distributed quantity (a CPM line's own quantity is per 1,000)
            quantities[ln.item_id] = quantities.get(ln.item_id, ZERO) + Decimal(str(q))
    # what Force bills for a delivery item: its booked amount pro rata (bot.workflows.preinvoices.override_to_booked)
    spec = campaign_spec(campaign)
    specs = {i.id: i for i in spec.items}
    period = Period(pi.period_start, pi.period_end)
    r_cur = _rate(rates, pi.currency, le.currency, pi.period_end)
    r_prior = _rate(rates, pi.currency, le.currency, prior_end)
    out: list[ItemPeriod] = []
    for it in items:
        if it.billing == "linear" and not it.variance_check:
            continue  # linear items bill the distributed booked figure: no delivery report needed
        start, end = it.start or campaign.start, it.end or campaign.end
        if it.id not in amounts and overlap_days(pi.period_start, pi.period_end, start, end) == 0:
            continue
        tol, src = resolve_tolerance(item=it.tolerance, campaign=campaign.tolerance, advertiser=adv.tolerance,
                                     legal_entity=le.tolerance, default=default_tol)
        amount = amounts.get(it.id, ZERO)
        qty = quantities.get(it.id) if it.unit == "quantity" and it.billing == "linear" else None
        out.append(ItemPeriod(
            preinvoice_id=pi.id, item_id=it.id, billing=it.billing, unit=it.unit, rate_type=it.rate_type,
            item_start=start, item_end=end, period_start=pi.period_start, period_end=pi.period_end,
            prior_start=prior_start, prior_end=prior_end, tolerance=tol, tolerance_source=src,
            currency=pi.currency, amount=amount, unit_price=_unit_price(it, amount, qty),
            booked_quantity=it.booked_quantity, expected_quantity=qty, period_basis=it.period,
            make_good=bool(it.make_good),
            prior_amount=(prior_lines or {}).get(it.id) if prior_lines is not None else None,
            le_currency=le.currency, rate_current=r_cur, rate_prior=r_prior, description=it.description,
            booked=(round_money(booked_share(spec, specs[it.id], period), pi.currency)
                    if it.billing == "delivery" and it.id in specs else None),
        ))
    return out


def _cid(p: PreInvoice) -> str:
    """The campaign of a checked pre-invoice (one-off pre-invoices, without one, are never checked here)."""
    if p.campaign_id is None:
        raise ValueError(f"pre-invoice {p.id} has no campaign")
    return p.campaign_id


def _prior_amounts(
    s: Session, pis: Sequence[PreInvoice], campaigns: dict[str, Campaign]
) -> dict[int, dict[str, Decimal]]:
    """Item amounts of each pre-invoice's prior-period pre-invoice, where one exists (one query for all)."""
    if not pis:
        return {}
    priors = {pi.id: prior_period(pi.period_start, pi.period_end, campaigns[_cid(pi)].payment_interval)
              for pi in pis}
    lo = min(ps for ps, _ in priors.values())
    hi = max(pe for _, pe in priors.values())
    by_campaign: dict[str, list[PreInvoice]] = {}
    for p in s.execute(
        select(PreInvoice).options(selectinload(PreInvoice.lines))
        .where(PreInvoice.campaign_id.in_({pi.campaign_id for pi in pis}), PreInvoice.period_start <= hi,
               PreInvoice.period_end >= lo, PreInvoice.state != "cancelled")
        .order_by(PreInvoice.id)
    ).scalars():
        by_campaign.setdefault(_cid(p), []).append(p)
    out: dict[int, dict[str, Decimal]] = {}
    for pi in pis:
        ps, pe = priors[pi.id]
        prior = [p for p in by_campaign.get(_cid(pi), ()) if p.period_start <= pe and p.period_end >= ps]
        if not prior:
            continue
        amounts: dict[str, Decimal] = {}
        for p in prior:
            for ln in p.lines:
                if ln.item_id is not None and ln.kind == "item":
                    amounts[ln.item_id] = amounts.get(ln.item_id, ZERO) + ln.amount
        out[pi.id] = amounts
    return out


def _usable(pi: PreInvoice) -> bool:
    st = inspect(pi)
    return not (st.expired or st.deleted or st.was_deleted) and "lines" not in st.unloaded


def _load(s: Session, preinvoice_ids: Sequence[int]) -> list[PreInvoice]:
    """The pre-invoices with their lines, in id order: those the session already holds with their
    lines loaded (``create_preinvoices`` just wrote them) are taken from it, the rest are queried."""
    found: list[PreInvoice] = []
    missing: list[int] = []
    for pid in dict.fromkeys(preinvoice_ids):
        obj = s.identity_map.get(identity_key(PreInvoice, pid))
        if isinstance(obj, PreInvoice) and _usable(obj):
            found.append(obj)
        else:
            missing.append(pid)
    if missing:
        found += s.execute(select(PreInvoice).options(selectinload(PreInvoice.lines))
                           .where(PreInvoice.id.in_(missing))).scalars().all()
    return sorted(found, key=lambda p: p.id)


# --------------------------------------------------------------------------- the run


def run_variance_checks(  # noqa: PLR0915 - bulk load, check, then one flush; stages named in comments
    s: Session,
    preinvoice_ids: list[int],
    *,
    actor: str,
    signing_key: Ed25519PrivateKey | None,
    now: datetime,
    default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> VarianceRunResult:
    """Check ``preinvoice_ids`` and open, update or close their ``variance`` exceptions.

    Runs in the caller's transaction. Deterministic for the same data (no clock in the evidence),
    so a re-run writes nothing. See the module docstring for the one-exception-per-pre-invoice rule.
    ``default_tolerance`` applies where no item, campaign, advertiser or legal entity sets one (the
    deployment's ``DEFAULT_TOLERANCE``, passed by the entry point).
    """
    pis = _load(s, preinvoice_ids)
    checked = [p for p in pis if p.state in CHECKED_STATES and p.campaign_id is not None]  # one-offs: no booking
    skipped = tuple(p.id for p in pis if p.state not in CHECKED_STATES or p.campaign_id is None)
    if not checked:
        return VarianceRunResult(skipped=skipped)

    campaigns = {c.id: c for c in s.execute(
        select(Campaign).where(Campaign.id.in_({p.campaign_id for p in checked}))).scalars()}
    items_by_campaign: dict[str, list[CampaignItem]] = {}
    for it in s.execute(select(CampaignItem).where(CampaignItem.campaign_id.in_(campaigns))
                        .order_by(CampaignItem.campaign_id, CampaignItem.position, CampaignItem.id)).scalars():
        items_by_campaign.setdefault(it.campaign_id, []).append(it)
    advertisers = {a.id: a for a in s.execute(
        select(Advertiser).where(Advertiser.id.in_({p.advertiser_id for p in checked}))).scalars()}
    entities = {e.id: e for e in s.execute(
        select(LegalEntity).where(LegalEntity.id.in_({p.legal_entity_id for p in checked}))).scalars()}

    priors = {p.id: prior_period(p.period_start, p.period_end, campaigns[_cid(p)].payment_interval)
              for p in checked}
    window_start = min(ps for ps, _ in priors.values())
    window_end = max(p.period_end for p in checked)
    currencies = {p.currency for p in checked} | {e.currency for e in entities.values()}
    rates = _rates(s, currencies, window_start, window_end) if len(currencies) > 1 else []
    prior_amounts = _prior_amounts(s, checked, campaigns)

    item_periods: list[ItemPeriod] = []
    for p in checked:
        item_periods += _item_periods(
            p, campaign=campaigns[_cid(p)], items=items_by_campaign.get(_cid(p), []),
            adv=advertisers[p.advertiser_id], le=entities[p.legal_entity_id], prior_lines=prior_amounts.get(p.id),
            rates=rates, default_tol=default_tolerance)
    facts = _facts_frame(s, sorted({ip.item_id for ip in item_periods}), window_start, window_end)
    variances = check_variances(item_periods, facts)
    found = findings_by_preinvoice(item_periods, variances, {p.id: p.net for p in checked},
                                   {p.id: p.currency for p in checked})

    existing = {e.key: (e.state, e.version) for e in s.execute(
        select(BillingException).where(BillingException.key.in_([exception_key(p.id) for p in checked]))
    ).scalars()}
    opened: list[int] = []
    updated: list[int] = []
    unchanged: list[int] = []
    closed: list[int] = []
    pending: list[int] = []
    specs: dict[int, dict[str, Any]] = {}
    for p in checked:
        f = found.get(p.id)
        if f is not None:
            specs[p.id] = dict(
                kind=KIND, key=exception_key(p.id), legal_entity_id=p.legal_entity_id, advertiser_id=p.advertiser_id,
                preinvoice_id=p.id, billing_run_id=None, period_start=p.period_start, period_end=p.period_end,
                amount=f.amount_at_stake, currency=p.currency, cause=f.primary.cause, summary=f.summary(),
                evidence=f.evidence(), subject_hash=f.subject_hash(), started_by=actor, now=now,
                signing_key=signing_key,
            )
    inserted = insert_new(s, list(specs.values()))  # new exceptions in one flush; recorded in order below
    for p in checked:
        key = exception_key(p.id)
        spec = specs.get(p.id)
        if spec is None:
            before = existing.get(key)
            if before is not None and before[0] in ("pending", "escalated"):
                exc = s.execute(select(BillingException).where(BillingException.key == key)).scalar_one()
                close_exception(s, exc.id, reason="no longer breached: the variance checks pass", actor=actor,
                                signing_key=signing_key, now=now)
                closed.append(exc.id)
            continue
        new = inserted.get(key)
        if new is not None:
            record_opened(s, new, started_by=actor, signing_key=signing_key, now=now)
            exc = new
        else:
            exc = open_exception(s, **spec)
        before = existing.get(key)
        if before is None or (before[0] not in ("pending", "escalated") and exc.state == "pending"
                               and exc.version != before[1]):
            opened.append(exc.id)
        elif exc.version != before[1]:
            updated.append(exc.id)
        else:
            unchanged.append(exc.id)
        if exc.state in ("pending", "escalated"):
            pending.append(p.id)
            if p.state == "draft":
                p.state = "pending"
                p.updated_at = now
                audit.record(s, key=signing_key, actor=actor, action="preinvoice.pending", subject_type="preinvoice",
                             subject_id=p.id, now=now,
                             payload={"preinvoice_id": p.id, "from": "draft", "to": "pending",
                                      "exception_id": exc.id, "cause": exc.cause})
                notify(s, "preinvoice.changed", preinvoice_id=p.id)
    return VarianceRunResult(
        checked=tuple(p.id for p in checked), skipped=skipped, pending=tuple(pending), opened=tuple(opened),
        updated=tuple(updated), unchanged=tuple(unchanged), closed=tuple(closed), variances=len(variances),
        findings=tuple(found[k] for k in sorted(found)),
    )
