"""Variance checks: delivered vs booked, first- vs third-party, period over period, FX swings.

Pure: data in (one :class:`ItemPeriod` per campaign item and pre-invoice, plus a pandas frame of
delivery rows), :class:`Variance` values out. No database, no clock.

Rules, per campaign item and billing period (a variance fires when the difference is *beyond*
the tolerance, i.e. strictly greater than ``tolerance × base``):

``delivered_vs_booked``
    first-party delivered quantity vs the booked quantity for the period: ``booked_quantity`` pro
    rata by the days the item runs in the period (delivery items), or the distributed quantity of
    the pre-invoice line (linear quantity items). Base: the booked figure.
``first_vs_third_party``
    first-party (ad server, the billing basis) vs third-party (tracker, client, auditor) counts.
    Base: the first-party figure — the industry's usual 10 % guideline is the default tolerance.
``period_over_period``
    delivered quantity per running day in this period vs the prior period (delivery-billed items;
    per day so that a campaign starting mid-month or a 28-day February is no variance). When the
    quantity is steady but the amount in the legal entity's currency moved beyond tolerance with the
    exchange rate, the variance is an FX swing.

Classification by likely cause, from the data:

============== ==========================================================================
cause           when
============== ==========================================================================
make_good       the item is flagged as a manual make-good (delivery and prior-period rules)
tracking_gap    fewer first-party figures than expected *and* days in the period on which the
                item ran without any first-party row (the days are the evidence)
under_delivery  fewer delivered than booked / than the prior period, every day has data
over_delivery   more delivered than booked / than the prior period
party_discrepancy first- and third-party counts disagree, first-party data complete
fx_swing        quantity steady, legal-entity-currency amount moved with the exchange rate
============== ==========================================================================

Example: a CPM item booked for 310,000 impressions over 31 days, checked for a 10-day period,
expects 100,000; 85,000 delivered with every day present is ``under_delivery`` (15 % > 10 %).

The facts frame (one row per item, day, source and party) has the columns ``id`` (row id),
``item_id``, ``day`` (datetime64 or ``date``), ``party`` (``first_party``/``third_party``),
``impressions``, ``clicks``, ``conversions`` and optionally ``table`` (``delivery_facts`` or
``conversions``). Approved ``Conversion`` rows come in as first-party rows of table
``conversions`` with ``conversions = 1``; for an item that has such rows, first-party delivery
rows' ``conversions`` are ignored so nothing is counted twice. Aggregation is vectorised
(``numpy.bincount`` over the rows), so a million rows take a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from billing.money import ZERO, round_money
from billing.signatures import content_hash

RULE_DELIVERY = "delivered_vs_booked"
RULE_PARTY = "first_vs_third_party"
RULE_PRIOR = "period_over_period"
RULES = (RULE_DELIVERY, RULE_PARTY, RULE_PRIOR)

CAUSES = ("tracking_gap", "under_delivery", "over_delivery", "party_discrepancy", "fx_swing", "make_good")

TOLERANCE_SOURCES = ("item", "campaign", "advertiser", "legal_entity", "default")
#: The tolerance when no item, campaign, advertiser or legal entity sets one (a deployment may configure another).
DEFAULT_TOLERANCE = Decimal("0.10")

# rate type → the delivery figure it bills
METRICS = {"cpm": "impressions", "cpc": "clicks", "cpa": "conversions", "cpl": "conversions"}
_METRIC_CODES = {"impressions": 0, "clicks": 1, "conversions": 2}

FIRST_PARTY = "first_party"
THIRD_PARTY = "third_party"

_EPOCH = date(1970, 1, 1)
_SLACK = 1e-9  # float pre-screen slack; every candidate is confirmed with exact Decimal arithmetic


def resolve_tolerance(
    *,
    item: Decimal | None,
    campaign: Decimal | None,
    advertiser: Decimal | None,
    legal_entity: Decimal | None,
    default: Decimal,
) -> tuple[Decimal, str]:
    """The most specific configured tolerance and where it came from.

    >>> resolve_tolerance(item=None, campaign=Decimal("0.05"), advertiser=Decimal("0.2"),
    ...                   legal_entity=None, default=Decimal("0.10"))
    (Decimal('0.05'), 'campaign')
    """
    for value, source in ((item, "item"), (campaign, "campaign"), (advertiser, "advertiser"),
                          (legal_entity, "legal_entity")):
        if value is not None:
            return value, source
    return default, "default"


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def prior_period(start: date, end: date, interval: str | None = None) -> tuple[date, date]:
    """The period of the same shape right before ``start … end``.

    A monthly or quarterly period (possibly clipped to the campaign's dates) has the whole calendar
    month or quarter before it as its prior; other whole calendar months shift by their number of
    months; anything else shifts by its length in days.

    >>> prior_period(date(2026, 2, 1), date(2026, 2, 28))
    (datetime.date(2026, 1, 1), datetime.date(2026, 1, 31))
    >>> prior_period(date(2026, 3, 1), date(2026, 3, 20), "monthly")
    (datetime.date(2026, 2, 1), datetime.date(2026, 2, 28))
    >>> prior_period(date(2026, 2, 9), date(2026, 2, 15))
    (datetime.date(2026, 2, 2), datetime.date(2026, 2, 8))
    """
    if interval in ("monthly", "quarterly"):
        months = 1 if interval == "monthly" else 3
        first = date(start.year, start.month - (start.month - 1) % months, 1)
        return _add_months(first, -months), first - timedelta(days=1)
    if start.day == 1 and (end + timedelta(days=1)).day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month + 1
        return _add_months(start, -months), start - timedelta(days=1)
    n = (end - start).days + 1
    return start - timedelta(days=n), start - timedelta(days=1)


def overlap_days(a_start: date, a_end: date, b_start: date, b_end: date) -> int:
    """Days two inclusive date ranges share."""
    return max(0, (min(a_end, b_end) - max(a_start, b_start)).days + 1)


@dataclass(frozen=True)
class ItemPeriod:
    """One campaign item on one pre-invoice: what was booked, what was computed, where to look.

    ``unit_price`` is the price of one unit of the item's metric (a CPM rate divided by 1,000);
    ``amount`` the computed amount of the item's lines on the pre-invoice; ``expected_quantity``
    the distributed quantity of a linear quantity item (else the booked quantity is pro-rated).
    ``rate_current`` / ``rate_prior`` convert the pre-invoice currency to the legal entity's
    currency at the end of this and of the prior period (``None`` when unknown or the same currency).
    """

    preinvoice_id: int
    item_id: str
    billing: str
    unit: str
    rate_type: str | None
    item_start: date
    item_end: date
    period_start: date
    period_end: date
    prior_start: date
    prior_end: date
    tolerance: Decimal
    tolerance_source: str
    currency: str
    amount: Decimal = ZERO
    unit_price: Decimal | None = None
    booked_quantity: Decimal | None = None
    expected_quantity: Decimal | None = None
    period_basis: str = "day_based"
    make_good: bool = False
    prior_amount: Decimal | None = None
    le_currency: str | None = None
    rate_current: Decimal | None = None
    rate_prior: Decimal | None = None
    description: str = ""
    booked: Decimal | None = None  # the booked amount for the period when the caller knows it better

    @property
    def metric(self) -> str:
        return METRICS.get(self.rate_type or "", "impressions")

    @property
    def active_days(self) -> int:
        return overlap_days(self.period_start, self.period_end, self.item_start, self.item_end)

    @property
    def prior_active_days(self) -> int:
        return overlap_days(self.prior_start, self.prior_end, self.item_start, self.item_end)

    @property
    def item_days(self) -> int:
        return overlap_days(self.item_start, self.item_end, self.item_start, self.item_end)

    @property
    def bills_delivery(self) -> bool:
        return self.billing == "delivery" and (self.rate_type or "") in METRICS

    def expected(self) -> Decimal | None:
        """The booked quantity for this period, or ``None`` when nothing quantitative was booked."""
        if self.expected_quantity is not None:
            return self.expected_quantity
        if self.booked_quantity is None or not (self.bills_delivery or self.unit == "quantity"):
            return None
        if self.item_days <= 0:
            return None
        return self.booked_quantity * self.active_days / self.item_days

    def booked_amount(self) -> Decimal:
        """What the item would bill at its booked quantity (Force on a variance bills this)."""
        if self.booked is not None:
            return self.booked
        exp = self.expected()
        if self.bills_delivery and exp is not None and self.unit_price is not None:
            return round_money(exp * self.unit_price, self.currency)
        return self.amount


@dataclass(frozen=True)
class Variance:
    """One finding beyond tolerance, with its evidence."""

    preinvoice_id: int
    item_id: str
    rule: str
    cause: str
    tolerance: Decimal
    tolerance_source: str
    figures: dict[str, str]
    days: tuple[date, ...]
    row_ids: tuple[int, ...]
    conversion_ids: tuple[int, ...]
    amount_at_stake: Decimal
    currency: str
    summary: str
    description: str = ""

    @property
    def key(self) -> str:
        return f"variance:{self.preinvoice_id}:{self.rule}:{self.item_id}"

    def evidence(self) -> dict[str, Any]:
        """JSON-able evidence: strings for decimals, ISO dates."""
        return {
            "rule": self.rule,
            "item_id": self.item_id,
            "item": self.description,
            "cause": self.cause,
            "tolerance": dec_str(self.tolerance),
            "tolerance_source": self.tolerance_source,
            "figures": dict(self.figures),
            "days": [d.isoformat() for d in self.days],
            "row_ids": list(self.row_ids),
            "conversion_ids": list(self.conversion_ids),
            "amount_at_stake": money_str(self.amount_at_stake, self.currency),
            "summary": self.summary,
        }


def dec_str(d: Decimal) -> str:
    """A decimal without exponent or trailing zeros (``0.100000`` → ``0.1``), stable across databases."""
    n = d.normalize()
    return f"{n:f}" if n != 0 else "0"


def money_str(d: Decimal, currency: str) -> str:
    return f"{round_money(d, currency):f}"


def _qty_str(d: Decimal) -> str:
    return dec_str(d.quantize(Decimal("0.01")))


def _pct(diff: Decimal, base: Decimal) -> str:
    if base == 0:
        return "n/a"
    return f"{(diff * 100 / base).quantize(Decimal('0.01')):f}"


@dataclass
class _Agg:
    """Per item-period aggregates (arrays indexed like the items)."""

    first_cur: npt.NDArray[np.float64]
    third_cur: npt.NDArray[np.float64]
    third_rows: npt.NDArray[np.float64]
    first_prior: npt.NDArray[np.float64]


def _day_numbers(col: pd.Series[Any]) -> npt.NDArray[np.int64]:
    if not pd.api.types.is_datetime64_any_dtype(col):
        col = pd.to_datetime(col)
    return np.asarray(col.to_numpy(dtype="datetime64[D]").astype(np.int64))


def _dn(d: date) -> int:
    return (d - _EPOCH).days


def _aggregate(items: Sequence[ItemPeriod], facts: pd.DataFrame) -> tuple[_Agg, dict[str, Any]]:  # noqa: PLR0915 - one pass over a pre-invoice's lines; each statement is one named finding
    """Vectorised sums per item-period. Items that occur in several item-periods (several periods
    checked at once) are handled in layers: each layer maps an item to at most one item-period."""
    n = len(items)
    agg = _Agg(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))
    ctx: dict[str, Any] = {}
    if n == 0 or facts.empty:
        return agg, ctx
    item_ids = sorted({it.item_id for it in items})
    cat = pd.Categorical(facts["item_id"], categories=item_ids)
    codes = np.asarray(cat.codes, dtype=np.int64)
    day = _day_numbers(facts["day"])
    first = np.asarray((facts["party"] == FIRST_PARTY).to_numpy(), dtype=bool)
    third = np.asarray((facts["party"] == THIRD_PARTY).to_numpy(), dtype=bool)
    values = np.stack([np.asarray(facts[c].to_numpy(), dtype=np.float64)
                       for c in ("impressions", "clicks", "conversions")])
    if "table" in facts.columns:
        is_cv = np.asarray((facts["table"] == "conversions").to_numpy(), dtype=bool)
    else:
        is_cv = np.zeros(len(facts), dtype=bool)
    code_of = {iid: i for i, iid in enumerate(item_ids)}
    # items counted from Conversion rows ignore first-party delivery rows' conversion counts
    uses_cv = np.zeros(len(item_ids), dtype=bool)
    if is_cv.any():
        uses_cv[np.unique(codes[is_cv & (codes >= 0)])] = True

    metric = np.array([_METRIC_CODES[it.metric] for it in items], dtype=np.int64)
    ps = np.array([_dn(it.period_start) for it in items], dtype=np.int64)
    pe = np.array([_dn(it.period_end) for it in items], dtype=np.int64)
    qs = np.array([_dn(it.prior_start) for it in items], dtype=np.int64)
    qe = np.array([_dn(it.prior_end) for it in items], dtype=np.int64)

    layers: list[npt.NDArray[np.int64]] = []
    for k, it in enumerate(items):
        c = code_of[it.item_id]
        for layer in layers:
            if layer[c] < 0:
                layer[c] = k
                break
        else:
            new = np.full(len(item_ids), -1, dtype=np.int64)
            new[c] = k
            layers.append(new)

    row_index = np.arange(len(facts))
    valid_code = codes >= 0
    for layer in layers:
        kk_all = np.where(valid_code, layer[np.where(valid_code, codes, 0)], -1)
        sel = kk_all >= 0
        kk = kk_all[sel]
        d = day[sel]
        m = metric[kk]
        v = values[m, row_index[sel]]
        f = first[sel]
        t = third[sel]
        cv = is_cv[sel]
        # a first-party delivery row's conversion count is replaced by the Conversion rows
        v = np.where(f & ~cv & (m == 2) & uses_cv[codes[sel]], 0.0, v)
        cur = (d >= ps[kk]) & (d <= pe[kk])
        pri = (d >= qs[kk]) & (d <= qe[kk])
        agg.first_cur += np.bincount(kk, weights=v * (cur & f), minlength=n)
        agg.third_cur += np.bincount(kk, weights=v * (cur & t), minlength=n)
        agg.third_rows += np.bincount(kk, weights=(cur & t).astype(np.float64), minlength=n)
        agg.first_prior += np.bincount(kk, weights=v * (pri & f), minlength=n)
    ctx.update(codes=codes, day=day, first=first, third=third, values=values, is_cv=is_cv, uses_cv=uses_cv,
               layers=layers, ids=np.asarray(facts["id"].to_numpy(), dtype=np.int64))
    return agg, ctx


@dataclass(frozen=True)
class _Rows:
    """The rows of one item-period: day, party, metric value, row id, table."""

    cur_first: dict[date, Decimal]
    cur_third: dict[date, Decimal]
    cur_ids: tuple[int, ...]
    cur_cv_ids: tuple[int, ...]
    cur_first_ids: tuple[int, ...]
    cur_first_cv_ids: tuple[int, ...]
    prior_ids: tuple[int, ...]
    prior_cv_ids: tuple[int, ...]


def _rows_for(items: Sequence[ItemPeriod], ctx: dict[str, Any], wanted: set[int]) -> dict[int, _Rows]:
    """Collect the rows of the flagged item-periods only (evidence), not of every item."""
    out: dict[int, _Rows] = {}
    if not ctx or not wanted:
        return {k: _Rows({}, {}, (), (), (), (), (), ()) for k in wanted}
    codes = ctx["codes"]
    valid = codes >= 0
    per_k: dict[int, npt.NDArray[np.int64]] = {}
    for layer in ctx["layers"]:
        kk_all = np.where(valid, layer[np.where(valid, codes, 0)], -1)
        flagged = np.isin(kk_all, np.fromiter(wanted, dtype=np.int64))
        idx = np.nonzero(flagged)[0]
        if idx.size == 0:
            continue
        ks = kk_all[idx]
        order = np.argsort(ks, kind="stable")
        idx, ks = idx[order], ks[order]
        bounds = np.flatnonzero(np.diff(ks)) + 1
        for part in np.split(idx, bounds):
            per_k[int(kk_all[part[0]])] = part
    for k in wanted:
        it = items[k]
        idx = per_k.get(k, np.zeros(0, dtype=np.int64))
        m = _METRIC_CODES[it.metric]
        ps, pe, qs, qe = (_dn(it.period_start), _dn(it.period_end), _dn(it.prior_start), _dn(it.prior_end))
        d = ctx["day"][idx]
        f = ctx["first"][idx]
        t = ctx["third"][idx]
        cv = ctx["is_cv"][idx]
        rid = ctx["ids"][idx]
        v = ctx["values"][m, idx]
        if m == 2 and idx.size and bool(ctx["uses_cv"][codes[idx[0]]]):
            v = np.where(f & ~cv, 0.0, v)
        cur = (d >= ps) & (d <= pe)
        pri = (d >= qs) & (d <= qe) & f
        span = pe - ps + 1

        def per_day(mask: npt.NDArray[np.bool_], d: npt.NDArray[np.int64] = d, v: npt.NDArray[np.float64] = v,
                    ps: int = ps, span: int = span) -> dict[date, Decimal]:
            off = d[mask] - ps
            sums = np.bincount(off, weights=v[mask], minlength=span)
            present = np.bincount(off, minlength=span) > 0
            return {_EPOCH + timedelta(days=ps + i): Decimal(int(sums[i])) for i in np.flatnonzero(present).tolist()}

        def ids(mask: npt.NDArray[np.bool_], rid: npt.NDArray[np.int64] = rid) -> tuple[int, ...]:
            return tuple(sorted(rid[mask].tolist()))

        out[k] = _Rows(per_day(cur & f), per_day(cur & t), ids(cur & ~cv), ids(cur & cv), ids(cur & f & ~cv),
                       ids(cur & f & cv), ids(pri & ~cv), ids(pri & cv))
    return out


def _running_days(it: ItemPeriod) -> list[date]:
    start = max(it.period_start, it.item_start)
    return [start + timedelta(days=i) for i in range(it.active_days)]


def _stake(diff: Decimal, it: ItemPeriod) -> Decimal:
    return round_money(abs(diff) * (it.unit_price or ZERO), it.currency)


def check_variances(items: Sequence[ItemPeriod], facts: pd.DataFrame) -> list[Variance]:
    """Every variance beyond tolerance of ``items`` against the delivery rows in ``facts``.

    Screening is vectorised in floats (sums of integer counts are exact in float64 up to 2**53);
    each candidate is then confirmed with exact ``Decimal`` arithmetic and gets its evidence.
    Sorted by pre-invoice, item and rule.
    """
    n = len(items)
    if n == 0:
        return []
    agg, ctx = _aggregate(items, facts)
    tol = np.array([float(it.tolerance) for it in items])
    active = np.array([it.active_days for it in items], dtype=np.float64)
    prior_active = np.array([it.prior_active_days for it in items], dtype=np.float64)
    exp_list = [it.expected() for it in items]
    has_exp = np.array([e is not None and e > 0 for e in exp_list])
    expected = np.array([float(e) if e is not None else 0.0 for e in exp_list])
    bills = np.array([it.bills_delivery for it in items])

    cand_delivery = has_exp & (active > 0) & (
        np.abs(agg.first_cur - expected) > tol * expected * (1 - _SLACK) - _SLACK)
    cand_party = (agg.third_rows > 0) & (
        np.abs(agg.first_cur - agg.third_cur) > tol * agg.first_cur * (1 - _SLACK) - _SLACK)
    cur_rate = agg.first_cur * prior_active
    prior_rate = agg.first_prior * active
    cand_prior = bills & (active > 0) & (prior_active > 0) & (agg.first_prior > 0) & (
        np.abs(cur_rate - prior_rate) > tol * prior_rate * (1 - _SLACK) - _SLACK)
    fx_possible = np.array([
        it.le_currency is not None and it.le_currency != it.currency and it.rate_current is not None
        and it.rate_prior is not None and it.prior_active_days > 0 and it.active_days > 0
        for it in items])

    wanted = set(np.flatnonzero(cand_delivery | cand_party | cand_prior | fx_possible).tolist())
    rows = _rows_for(items, ctx, wanted)

    out: list[Variance] = []
    for k in sorted(wanted):
        it = items[k]
        r = rows[k]
        first_cur = sum(r.cur_first.values(), ZERO)
        third_cur = sum(r.cur_third.values(), ZERO)
        running = _running_days(it)
        missing = tuple(d for d in running if d not in r.cur_first)
        if cand_delivery[k]:
            v = _delivery(it, exp_list[k], first_cur, missing, r)
            if v is not None:
                out.append(v)
        if cand_party[k]:
            v = _party(it, first_cur, third_cur, missing, r)
            if v is not None:
                out.append(v)
        prior_v = _prior(it, first_cur, Decimal(int(agg.first_prior[k])), missing, r) if cand_prior[k] else None
        if prior_v is not None:
            out.append(prior_v)
        elif fx_possible[k]:
            v = _fx(it, first_cur, Decimal(int(agg.first_prior[k])), r)
            if v is not None:
                out.append(v)
    out.sort(key=lambda v: (v.preinvoice_id, v.item_id, RULES.index(v.rule)))
    return out


def _delivery_cause(diff: Decimal, missing: tuple[date, ...], *, make_good: bool) -> str:
    """Likely cause of a delivery variance: a flagged make-good wins; a shortfall with days
    without data is a tracking gap; otherwise under- or over-delivery by the sign."""
    if make_good:
        return "make_good"
    if diff < 0 and missing:
        return "tracking_gap"
    return "under_delivery" if diff < 0 else "over_delivery"


def _delivery(it: ItemPeriod, exp: Decimal | None, delivered: Decimal, missing: tuple[date, ...],
              r: _Rows) -> Variance | None:
    if exp is None or exp <= 0:
        return None
    diff = delivered - exp
    if abs(diff) <= it.tolerance * exp:
        return None
    cause = _delivery_cause(diff, missing, make_good=it.make_good)
    days = missing if cause == "tracking_gap" else tuple(sorted(r.cur_first))
    figures = {
        "metric": it.metric,
        "delivered": _qty_str(delivered),
        "expected": _qty_str(exp),
        "booked_quantity": _qty_str(it.booked_quantity) if it.booked_quantity is not None else "",
        "difference": _qty_str(diff),
        "difference_pct": _pct(diff, exp),
        "running_days": str(it.active_days),
        "item_days": str(it.item_days),
        "days_with_data": str(len(r.cur_first)),
        "missing_days": str(len(missing)),
    }
    summary = (f"{it.description or it.item_id}: {_qty_str(delivered)} {it.metric} delivered vs "
               f"{_qty_str(exp)} booked for the period ({_pct(diff, exp)} %, tolerance "
               f"{_pct(it.tolerance, Decimal(1))} %)")
    if cause == "tracking_gap":
        summary += f"; no first-party data on {len(missing)} day(s)"
    return Variance(it.preinvoice_id, it.item_id, RULE_DELIVERY, cause, it.tolerance, it.tolerance_source,
                    figures, days, r.cur_first_ids, r.cur_first_cv_ids, _stake(diff, it), it.currency, summary,
                    it.description)


def _party(it: ItemPeriod, first: Decimal, third: Decimal, missing: tuple[date, ...], r: _Rows) -> Variance | None:
    diff = first - third
    if abs(diff) <= it.tolerance * first:
        return None
    # first-party days missing while the third party counted something: our tracking broke
    gap_days = tuple(d for d in missing if r.cur_third.get(d, ZERO) > 0)
    cause = "tracking_gap" if diff < 0 and gap_days else "party_discrepancy"
    if cause == "tracking_gap":
        days = gap_days
    else:
        all_days = sorted(set(r.cur_first) | set(r.cur_third))
        days = tuple(d for d in all_days if r.cur_first.get(d, ZERO) != r.cur_third.get(d, ZERO))
    figures = {
        "metric": it.metric,
        "first_party": _qty_str(first),
        "third_party": _qty_str(third),
        "difference": _qty_str(diff),
        "difference_pct": _pct(diff, first),
        "days_with_first_party": str(len(r.cur_first)),
        "days_with_third_party": str(len(r.cur_third)),
    }
    summary = (f"{it.description or it.item_id}: first party {_qty_str(first)} vs third party "
               f"{_qty_str(third)} {it.metric} ({_pct(diff, first)} % of first party, tolerance "
               f"{_pct(it.tolerance, Decimal(1))} %)")
    return Variance(it.preinvoice_id, it.item_id, RULE_PARTY, cause, it.tolerance, it.tolerance_source,
                    figures, days, r.cur_ids, r.cur_cv_ids, _stake(diff, it), it.currency, summary, it.description)


def _prior(it: ItemPeriod, cur: Decimal, prior: Decimal, missing: tuple[date, ...], r: _Rows) -> Variance | None:
    ad, pd_ = Decimal(it.active_days), Decimal(it.prior_active_days)
    if prior <= 0 or ad <= 0 or pd_ <= 0:
        return None
    cur_per_day = cur / ad
    prior_per_day = prior / pd_
    diff = cur_per_day - prior_per_day
    if abs(cur * pd_ - prior * ad) <= it.tolerance * prior * ad:
        return None
    cause = _delivery_cause(diff, missing, make_good=it.make_good)
    days = missing if cause == "tracking_gap" else tuple(sorted(r.cur_first))
    figures = {
        "metric": it.metric,
        "current": _qty_str(cur),
        "prior": _qty_str(prior),
        "current_per_day": _qty_str(cur_per_day),
        "prior_per_day": _qty_str(prior_per_day),
        "change_pct": _pct(diff, prior_per_day),
        "current_days": str(it.active_days),
        "prior_days": str(it.prior_active_days),
        "prior_period_start": it.prior_start.isoformat(),
        "prior_period_end": it.prior_end.isoformat(),
    }
    summary = (f"{it.description or it.item_id}: {_qty_str(cur_per_day)} {it.metric}/day vs "
               f"{_qty_str(prior_per_day)} in the prior period ({_pct(diff, prior_per_day)} %, tolerance "
               f"{_pct(it.tolerance, Decimal(1))} %)")
    if cause == "tracking_gap":
        summary += f"; no first-party data on {len(missing)} day(s)"
    return Variance(it.preinvoice_id, it.item_id, RULE_PRIOR, cause, it.tolerance, it.tolerance_source,
                    figures, days, r.cur_first_ids + r.prior_ids, r.cur_first_cv_ids + r.prior_cv_ids,
                    _stake(diff * ad, it), it.currency, summary, it.description)


def _fx(it: ItemPeriod, cur_qty: Decimal, prior_qty: Decimal, r: _Rows) -> Variance | None:
    """Quantity steady (the prior-period rule did not fire), amount in the legal entity's currency
    moved beyond tolerance: the exchange rate explains the change."""
    assert it.rate_current is not None and it.rate_prior is not None and it.le_currency is not None
    ad, pd_ = Decimal(it.active_days), Decimal(it.prior_active_days)
    per_day = it.billing == "delivery" or it.period_basis != "even"
    cur_doc = it.amount / ad if per_day else it.amount
    if it.prior_amount is not None:
        prior_doc = it.prior_amount / pd_ if per_day else it.prior_amount
    elif it.bills_delivery and it.unit_price is not None:
        prior_doc = prior_qty * it.unit_price / pd_
    else:
        prior_doc = cur_doc  # a linear item bills the same contract amount per day
    if prior_doc <= 0 or cur_doc <= 0:
        return None
    if abs(cur_doc - prior_doc) > it.tolerance * prior_doc:
        return None  # the amount itself moved: not explained by the rate
    le_cur = cur_doc * it.rate_current
    le_prior = prior_doc * it.rate_prior
    if abs(le_cur - le_prior) <= it.tolerance * le_prior:
        return None
    scale = ad if per_day else Decimal(1)
    figures = {
        "currency": it.currency,
        "legal_entity_currency": it.le_currency,
        "amount": money_str(cur_doc * scale, it.currency),
        "prior_amount": money_str(prior_doc * scale, it.currency),
        "rate_current": dec_str(it.rate_current),
        "rate_prior": dec_str(it.rate_prior),
        "le_amount": money_str(le_cur * scale, it.le_currency),
        "le_amount_at_prior_rate": money_str(cur_doc * it.rate_prior * scale, it.le_currency),
        "le_prior_amount": money_str(le_prior * scale, it.le_currency),
        "le_change_pct": _pct(le_cur - le_prior, le_prior),
        "amount_change_pct": _pct(cur_doc - prior_doc, prior_doc),
        "rate_change_pct": _pct(it.rate_current - it.rate_prior, it.rate_prior),
        "prior_period_start": it.prior_start.isoformat(),
        "prior_period_end": it.prior_end.isoformat(),
    }
    # at stake, in the pre-invoice currency: this period's amount times the relative rate move
    stake = round_money(abs(it.amount * (it.rate_current - it.rate_prior) / it.rate_current), it.currency)
    summary = (f"{it.description or it.item_id}: {it.le_currency} value moved "
               f"{_pct(le_cur - le_prior, le_prior)} % with the {it.currency}/{it.le_currency} rate "
               f"({dec_str(it.rate_prior)} → {dec_str(it.rate_current)}) while the {it.currency} amount is steady")
    return Variance(it.preinvoice_id, it.item_id, RULE_PRIOR, "fx_swing", it.tolerance, it.tolerance_source,
                    figures, (it.period_end, it.prior_end), r.cur_first_ids, r.cur_first_cv_ids, stake, it.currency,
                    summary, it.description)


# --------------------------------------------------------------------------- per pre-invoice


@dataclass(frozen=True)
class PreInvoiceFindings:
    """Everything found on one pre-invoice, ready to become one ``variance`` exception."""

    preinvoice_id: int
    currency: str
    variances: tuple[Variance, ...]
    booked_amount: Decimal
    computed_amount: Decimal

    @property
    def primary(self) -> Variance:
        """The finding with the most money at stake (ties: rule order, then item)."""
        return sorted(self.variances, key=lambda v: (-v.amount_at_stake, RULES.index(v.rule), v.item_id))[0]

    @property
    def amount_at_stake(self) -> Decimal:
        """Sum over items of each item's largest stake; if no finding has a price, the gap between
        the booked and the computed amount."""
        per_item: dict[str, Decimal] = {}
        for v in self.variances:
            per_item[v.item_id] = max(per_item.get(v.item_id, ZERO), v.amount_at_stake)
        total = sum(per_item.values(), ZERO)
        if total == 0:
            total = abs(self.booked_amount - self.computed_amount)
        return round_money(total, self.currency)

    def subject_hash(self) -> str:
        """What a decision on these findings binds to: the rules, items, causes and figures (not
        the time of the check), so an unchanged re-run keeps a decision and changed data reopens it."""
        return content_hash({
            "preinvoice_id": self.preinvoice_id,
            "findings": [{"rule": v.rule, "item": v.item_id, "cause": v.cause, "figures": v.figures,
                          "tolerance": dec_str(v.tolerance)} for v in self.variances],
        })

    def summary(self) -> str:
        p = self.primary
        more = len(self.variances) - 1
        return p.summary + (f" (+{more} more finding{'s' if more > 1 else ''})" if more else "")

    def evidence(self) -> dict[str, Any]:
        """The exception's evidence: the primary finding's fields at the top level, every finding
        under ``findings``, and ``booked_amount`` / ``computed_amount`` for the Force decision."""
        p = self.primary.evidence()
        return {
            **p,
            "preinvoice_id": self.preinvoice_id,
            "currency": self.currency,
            "booked_amount": money_str(self.booked_amount, self.currency),
            "computed_amount": money_str(self.computed_amount, self.currency),
            "amount_at_stake": money_str(self.amount_at_stake, self.currency),
            "findings": [v.evidence() for v in self.variances],
        }


def findings_by_preinvoice(
    items: Sequence[ItemPeriod], variances: Sequence[Variance], computed: dict[int, Decimal], currency: dict[int, str]
) -> dict[int, PreInvoiceFindings]:
    """Group variances per pre-invoice with its booked and computed amounts.

    ``computed`` is each pre-invoice's net; the booked amount replaces every delivery item's
    computed amount by its booked quantity for the period × unit price (other lines stay).
    """
    by_pi: dict[int, list[Variance]] = {}
    for v in variances:
        by_pi.setdefault(v.preinvoice_id, []).append(v)
    adjust: dict[int, Decimal] = {}
    for it in items:
        adjust[it.preinvoice_id] = adjust.get(it.preinvoice_id, ZERO) + it.booked_amount() - it.amount
    return {
        pid: PreInvoiceFindings(pid, currency[pid], tuple(vs), round_money(computed[pid] + adjust.get(pid, ZERO),
                                                                            currency[pid]),
                                round_money(computed[pid], currency[pid]))
        for pid, vs in by_pi.items()
    }
