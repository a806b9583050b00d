"""Billing periods: parsing what operators type, and cutting a campaign into its billing periods.

A period is a closed date range ``[start, end]`` with a label. Operators write periods as
``2026-02`` (month), ``2026-W07`` (ISO week), ``2026-Q1`` (quarter), ``2026`` (year) or an explicit
range ``2026-02-01..2026-02-28``.

Campaigns are billed per ``payment_interval`` (weekly, monthly, quarterly, total). Weekly periods
start on the legal entity's ``start_of_week`` (0 = Monday … 6 = Sunday), not on the ISO Monday:

>>> [p.label for p in billing_periods(date(2019, 12, 1), date(2019, 12, 9), "weekly", start_of_week=6)]
['2019-12-01..2019-12-07', '2019-12-08..2019-12-14']
>>> [(p.start.day, p.end.day) for p in billing_periods(date(2019, 12, 1), date(2019, 12, 9), "weekly", 6)]
[(1, 7), (8, 9)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.errors import Invalid

INTERVALS = ("weekly", "monthly", "quarterly", "total")


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date
    label: str = ""

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise Invalid(f"period ends ({self.end}) before it starts ({self.start})", code="period")
        if not self.label:
            object.__setattr__(self, "label", f"{self.start.isoformat()}..{self.end.isoformat()}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, d: date) -> bool:
        return self.start <= d <= self.end

    def overlap_days(self, start: date, end: date) -> int:
        """Days of ``[start, end]`` that fall into this period (0 when disjoint)."""
        lo, hi = max(self.start, start), min(self.end, end)
        return max(0, (hi - lo).days + 1)


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$", re.IGNORECASE)
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$", re.IGNORECASE)
_YEAR = re.compile(r"^(\d{4})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*\.\.\s*(\d{4}-\d{2}-\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def month_end(year: int, month: int) -> date:
    nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return nxt - timedelta(days=1)


def month_period(year: int, month: int) -> Period:
    return Period(date(year, month, 1), month_end(year, month), f"{year:04d}-{month:02d}")


def quarter_period(year: int, quarter: int) -> Period:
    first = 3 * (quarter - 1) + 1
    return Period(date(year, first, 1), month_end(year, first + 2), f"{year:04d}-Q{quarter}")


def parse_period(text: str) -> Period:
    """Parse an operator's period.

    >>> parse_period("2026-02")
    Period(start=datetime.date(2026, 2, 1), end=datetime.date(2026, 2, 28), label='2026-02')
    >>> parse_period("2026-W07").start, parse_period("2026-Q1").end, parse_period("2026").end
    (datetime.date(2026, 2, 9), datetime.date(2026, 3, 31), datetime.date(2026, 12, 31))
    """
    t = (text or "").strip()
    try:
        if m := _MONTH.match(t):
            return month_period(int(m[1]), int(m[2]))
        if m := _WEEK.match(t):
            year, week = int(m[1]), int(m[2])
            start = date.fromisocalendar(year, week, 1)
            return Period(start, start + timedelta(days=6), f"{year:04d}-W{week:02d}")
        if m := _QUARTER.match(t):
            return quarter_period(int(m[1]), int(m[2]))
        if m := _YEAR.match(t):
            y = int(m[1])
            return Period(date(y, 1, 1), date(y, 12, 31), f"{y:04d}")
        if m := _RANGE.match(t):
            return Period(date.fromisoformat(m[1]), date.fromisoformat(m[2]))
        if _DAY.match(t):
            d = date.fromisoformat(t)
            return Period(d, d, t)
    except ValueError as e:
        raise Invalid(f"period {text!r}: {e}", code="period") from None
    raise Invalid(
        f"period {text!r} not understood (use 2026-02, 2026-W07, 2026-Q1, 2026 or 2026-02-01..2026-02-28)",
        code="period",
    )


def week_start(d: date, start_of_week: int) -> date:
    """The first day of the week containing ``d`` when weeks start on ``start_of_week`` (0 = Monday)."""
    return d - timedelta(days=(d.weekday() - start_of_week) % 7)


def _calendar_period(d: date, interval: str, start_of_week: int) -> Period:
    if interval == "weekly":
        ws = week_start(d, start_of_week)
        we = ws + timedelta(days=6)
        label = f"{ws:%G-W%V}" if start_of_week == 0 else f"{ws.isoformat()}..{we.isoformat()}"
        return Period(ws, we, label)
    if interval == "monthly":
        return month_period(d.year, d.month)
    if interval == "quarterly":
        return quarter_period(d.year, (d.month - 1) // 3 + 1)
    raise Invalid(f"unknown payment interval {interval!r} (expected one of {', '.join(INTERVALS)})", code="interval")


def billing_periods(start: date, end: date, interval: str, start_of_week: int = 0) -> list[Period]:
    """The billing periods of a campaign running ``start``..``end``, clipped to the campaign.

    Labels stay those of the calendar period (a campaign starting on Jan 10 has a period
    2026-01-10..2026-01-31 labelled ``2026-01``); ``total`` is one period spanning the campaign.
    """
    if end < start:
        raise Invalid(f"campaign ends ({end}) before it starts ({start})", code="period")
    if not 0 <= start_of_week <= 6:
        raise Invalid(f"start_of_week must be 0 (Monday) … 6 (Sunday), got {start_of_week}", code="period")
    if interval == "total":
        return [Period(start, end)]
    out: list[Period] = []
    d = start
    while d <= end:
        cal = _calendar_period(d, interval, start_of_week)
        out.append(Period(max(cal.start, start), min(cal.end, end), cal.label))
        d = cal.end + timedelta(days=1)
    return out


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone (``Europe/Berlin``), else ``ValueError`` naming it — for
    the settings and source validators that take a zone from configuration."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name
