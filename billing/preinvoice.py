"""Pre-invoices: one draft per campaign and billing period, built from the campaign's items.

Pure: the workflow passes campaign specs and delivered figures in, and gets line drafts out.

Rules (DESIGN.md "Domain rules"):
- linear items are distributed over *all* billing periods of the campaign (so the remainder lands on
  the campaign's last period), then each period takes its share;
- delivery items bill the period's first-party delivery (see :mod:`billing.delivery`);
- recreating a period keeps manual lines (``bonus``, ``discount``, ``manual``) and lines a person
  edited (``edited``): :func:`merge_lines` replaces only untouched item lines;
- approval binds to :func:`content_hash` of the canonical lines, so any change of content voids it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from billing.delivery import DayFigures, delivery_line, sum_days
from billing.distribution import distribute_item, unit_price
from billing.money import ZERO
from billing.periods import Period, billing_periods
from billing.signatures import content_hash as _hash

MANUAL_KINDS = ("bonus", "discount", "manual")
LINE_KINDS = ("item", *MANUAL_KINDS)


@dataclass(frozen=True)
class ItemSpec:
    id: str
    description: str
    position: int = 0
    billing: str = "linear"  # linear | delivery
    unit: str = "amount"  # amount | quantity
    basis: str = "day_based"  # day_based | even
    amount: Decimal | None = None
    rate_type: str | None = None
    rate: Decimal | None = None
    booked_quantity: Decimal | None = None
    start: date | None = None  # None: the campaign's dates
    end: date | None = None


@dataclass(frozen=True)
class CampaignSpec:
    id: str
    name: str
    advertiser_id: str
    currency: str
    payment_interval: str
    start: date
    end: date
    start_of_week: int = 0
    items: tuple[ItemSpec, ...] = ()

    def item_dates(self, item: ItemSpec) -> tuple[date, date]:
        return item.start or self.start, item.end or self.end

    def periods(self) -> list[Period]:
        return list(_periods(self.start, self.end, self.payment_interval, self.start_of_week))


@lru_cache(maxsize=4096)
def _periods(start: date, end: date, interval: str, start_of_week: int) -> tuple[Period, ...]:
    """Memoised :func:`billing_periods` (pure; asked for again and again for the same campaign
    when a thousand pre-invoices are built and checked)."""
    return tuple(billing_periods(start, end, interval, start_of_week))


@dataclass(frozen=True)
class LineDraft:
    """A pre-invoice line as data. ``id`` is set for lines read back from storage."""

    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    item_id: str | None = None
    kind: str = "item"
    computation: Mapping[str, Any] = field(default_factory=dict)
    edited: bool = False
    id: int | None = None


@dataclass(frozen=True)
class PeriodDraft:
    campaign_id: str
    period: Period
    lines: tuple[LineDraft, ...]


def canonical_number(d: Decimal) -> str:
    """Canonical decimal text: the same number always gives the same text (``7000.00`` = ``7E+3``)."""
    n = d.normalize()
    return format(n, "f") if n != 0 else "0"


def canonical_line(line: LineDraft) -> dict[str, Any]:
    return {
        "item": line.item_id, "kind": line.kind, "description": line.description,
        "quantity": canonical_number(line.quantity), "unit": line.unit, "unit_price": canonical_number(line.unit_price),
        "amount": canonical_number(line.amount),
    }


def content_hash(
    *, campaign_id: str | None, period_start: date, period_end: date, currency: str, lines: Sequence[LineDraft],
    overrides: Mapping[str, Any] | None = None,
) -> str:
    """What an approval binds to: the campaign (None for a one-off), period, currency, the canonical
    lines in order and the header overrides (only when there are any, so older hashes stay valid)."""
    doc: dict[str, Any] = {
        "campaign": campaign_id, "period": [period_start.isoformat(), period_end.isoformat()],
        "currency": currency, "lines": [canonical_line(x) for x in lines],
    }
    if overrides:
        doc["overrides"] = dict(overrides)
    return _hash(doc)


def net_of(lines: Sequence[LineDraft]) -> Decimal:
    return sum((x.amount for x in lines), ZERO)


def _linear_line(item: ItemSpec, share_amount: Decimal, share_qty: Decimal | None, days: int) -> LineDraft:
    comp: dict[str, Any] = {"billing": "linear", "unit": item.unit, "basis": item.basis, "days": days}
    if item.unit == "quantity" and share_qty is not None:
        comp["booked_quantity"] = str(item.booked_quantity)
        if item.rate is not None:
            price = item.rate if item.rate_type == "cpm" else unit_price(item.rate, item.rate_type)
            qty = share_qty / 1000 if item.rate_type == "cpm" else share_qty
            unit = "1,000 impressions" if item.rate_type == "cpm" else "units"
            comp["rate_type"] = item.rate_type
            comp["quantity"] = str(share_qty)
            return LineDraft(item.description, qty, unit, price, share_amount, item.id, "item", comp)
        comp["quantity"] = str(share_qty)
        # enough places that quantity × price rounds back to the amount (EN 16931 BT-131 recomputed)
        places = max(6, len(str(abs(int(share_qty)))) + 3)
        price = (share_amount / share_qty).quantize(Decimal(1).scaleb(-places)) if share_qty else ZERO
        return LineDraft(item.description, share_qty, "units", price, share_amount, item.id, "item", comp)
    comp["item_amount"] = str(item.amount)
    return LineDraft(item.description, Decimal(1), "lump sum", share_amount, share_amount, item.id, "item", comp)


def draft_campaign(
    campaign: CampaignSpec,
    wanted: Callable[[Period], bool],
    delivery: Mapping[str, Sequence[DayFigures]],
) -> list[PeriodDraft]:
    """Line drafts for every billing period of ``campaign`` that ``wanted`` selects.

    ``delivery`` maps a delivery item's id to its daily first-party figures (any days; each period
    sums the days it contains). Items not running in a period get no line there.
    """
    periods = campaign.periods()
    picked = [i for i, p in enumerate(periods) if wanted(p)]
    if not picked:
        return []
    lines: dict[int, list[LineDraft]] = {i: [] for i in picked}
    for item in sorted(campaign.items, key=lambda x: (x.position, x.id)):
        start, end = campaign.item_dates(item)
        if item.billing == "delivery":
            for i in picked:
                p = periods[i]
                if not p.overlap_days(start, end):
                    continue
                lo, hi = max(p.start, start), min(p.end, end)
                dl = delivery_line(rate_type=item.rate_type or "", rate=item.rate or ZERO,
                                   delivered=sum_days(delivery.get(item.id, ()), lo, hi), currency=campaign.currency)
                lines[i].append(LineDraft(item.description, dl.quantity, dl.unit, dl.unit_price, dl.amount,
                                          item.id, "item", dl.computation))
            continue
        shares = distribute_item(
            unit=item.unit, basis=item.basis, start=start, end=end, periods=periods, currency=campaign.currency,
            amount=item.amount, booked_quantity=item.booked_quantity, rate=item.rate, rate_type=item.rate_type,
        )
        for i in picked:
            sh = shares[i]
            if sh.days:
                lines[i].append(_linear_line(item, sh.amount, sh.quantity, sh.days))
    return [PeriodDraft(campaign.id, periods[i], tuple(lines[i])) for i in picked]


def booked_share(campaign: CampaignSpec, item: ItemSpec, period: Period) -> Decimal:
    """The booked amount of a delivery item for ``period``, pro rata by days over the campaign's
    periods (used when an approver forces billing of the booked amount over a variance)."""
    start, end = campaign.item_dates(item)
    periods = campaign.periods()
    if item.rate_type == "flat":
        return item.rate or ZERO
    total_qty = item.booked_quantity or ZERO
    total = (total_qty * unit_price(item.rate or ZERO, item.rate_type)) if item.amount is None else item.amount
    shares = distribute_item(unit="amount", basis="day_based", start=start, end=end, periods=periods,
                             currency=campaign.currency, amount=total.quantize(Decimal("0.01")))
    for sh in shares:
        if sh.period.start <= period.end and sh.period.end >= period.start:
            return sh.amount
    return ZERO


def is_preserved(line: LineDraft) -> bool:
    """Lines a recomputation must keep: manual kinds and anything a person edited."""
    return line.kind in MANUAL_KINDS or line.edited


def merge_lines(existing: Sequence[LineDraft], computed: Sequence[LineDraft]) -> list[LineDraft]:
    """The lines of a recomputed pre-invoice, in order.

    For every computed item line: the existing edited line for that item if there is one (kept as
    the person left it), else the computed line (carrying the existing line's ``id`` so storage can
    update in place). Then every other preserved line (manual kinds, edited lines of items that no
    longer exist), in their old order. Untouched item lines without a computed line are dropped.
    """
    by_item: dict[str, LineDraft] = {}
    for x in existing:
        if x.kind == "item" and x.item_id is not None and x.item_id not in by_item:
            by_item[x.item_id] = x
    used: set[int] = set()
    out: list[LineDraft] = []
    for c in computed:
        old = by_item.get(c.item_id or "")
        if old is not None and old.edited:
            out.append(old)
        else:
            out.append(replace(c, id=old.id if old is not None else None))
        if old is not None:
            used.add(id(old))
    for x in existing:
        if id(x) not in used and is_preserved(x):
            out.append(x)
    return out
