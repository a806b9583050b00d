"""Exchange rates: parse the ECB reference-rate CSV, find the rate to lock at finalization.

A rate is ``rate`` units of ``quote`` per 1 ``base`` (ECB: base EUR, ``USD 1.0812``). An invoice in a
currency other than its legal entity's locks one rate (with its date and source) when it is
finalized. There is no fallback to 1.0: a missing rate is a check problem.

>>> rates = parse_ecb_csv("Date,USD,JPY,\\n2026-02-27,1.0812,162.5,\\n")
>>> find_rate(rates, "USD", "EUR", on=date(2026, 3, 1)).rate
Decimal('0.9248982612')
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from billing.errors import Invalid
from billing.money import is_currency, quantum

MAX_AGE_DAYS = 7  # ECB publishes on TARGET working days; a week covers weekends and Easter
MAX_AGE_LIMIT = 62  # the most a legal entity may allow (``fx_max_age_days``)

#: Which day's rate an invoice locks (per legal entity, scenario key ``fx_rule``); a campaign with an
#: agreed ``fx_rate`` uses that instead (rule ``agreed``).
FX_RULES = ("issue_date", "service_end")
RULE_TEXT = {
    "issue_date": "the rate of the issue date",
    "service_end": "the rate of the service period's last day",
    "agreed": "the rate agreed for the campaign",
}
RATE_PLACES = Decimal("0.0000000001")


@dataclass(frozen=True)
class Rate:
    day: date
    base: str
    quote: str
    rate: Decimal
    source: str = "ECB"


@dataclass(frozen=True)
class LockedRate:
    """``rate`` units of ``to`` per 1 ``from_`` as of ``day`` (what an invoice stores in ``fx``)."""

    from_: str
    to: str
    rate: Decimal
    day: date
    source: str
    rule: str | None = None  # how it was chosen (:data:`FX_RULES` or ``agreed``); None on older invoices

    def as_json(self) -> dict[str, str]:
        out = {"from": self.from_, "to": self.to, "rate": str(self.rate), "date": self.day.isoformat(),
               "source": self.source}
        if self.rule:
            out["rule"] = self.rule
        return out

    def involves(self, currency: str) -> bool:
        return currency in (self.from_, self.to)

    def text(self) -> str:
        """``1 PLN = 0.2325581395 EUR (ECB, 2026-10-30)`` — how documents and messages state the rate."""
        return f"1 {self.from_} = {self.rate} {self.to} ({self.source}, {self.day.isoformat()})"


def locked_rate(stored: Mapping[str, Any] | None) -> LockedRate | None:
    """The rate locked on an invoice, read from its stored ``fx`` JSON — the one reader every surface
    (documents, evidence packs, Slack, CLI JSON) goes through.

    The stored shape is :meth:`LockedRate.as_json` (``from``/``to``: ``rate`` units of ``to`` per 1
    ``from``), optionally with the totals converted to ``to``. Rows written in the older
    ``base``/``quote`` shape (``rate`` units of ``quote`` per 1 ``base``) read the same way.

    >>> locked_rate({"from": "PLN", "to": "EUR", "rate": "0.2325", "date": "2026-10-30", "source": "ECB"}).text()
    '1 PLN = 0.2325 EUR (ECB, 2026-10-30)'
    >>> locked_rate({"base": "EUR", "quote": "USD", "rate": "1.0812", "date": "2026-02-27", "source": "ECB"}).from_
    'EUR'
    """
    if not stored:
        return None
    from_ = stored.get("from") or stored.get("base")
    to = stored.get("to") or stored.get("quote")
    day = stored.get("date") or stored.get("day")
    if not from_ or not to or stored.get("rate") in (None, "") or not day:
        raise Invalid(f"the locked exchange rate is incomplete: {dict(stored)!r}", code="fx")
    try:
        rate = Decimal(str(stored["rate"]))
    except InvalidOperation as e:
        raise Invalid(f"the locked exchange rate {stored['rate']!r} is not a number", code="fx") from e
    return LockedRate(str(from_), str(to), rate, date.fromisoformat(str(day)[:10]), str(stored.get("source") or ""),
                      str(stored["rule"]) if stored.get("rule") else None)


def fx_json(stored: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The locked rate as every JSON surface shows it: :meth:`LockedRate.as_json` plus the converted
    totals (``net``, ``vat``, ``gross`` in ``to``) when the invoice stored them."""
    locked = locked_rate(stored)
    if locked is None or stored is None:
        return None
    totals = {k: str(stored[k]) for k in ("net", "vat", "gross") if stored.get(k) not in (None, "")}
    return {**locked.as_json(), **totals}


def _parse_day(text: str) -> date:
    t = text.strip()
    try:
        return date.fromisoformat(t)
    except ValueError:
        return datetime.strptime(t, "%d %B %Y").date()  # noqa: DTZ007 - a calendar date, no time


def parse_ecb_csv(text: str, *, source: str = "ECB", base: str = "EUR") -> list[Rate]:
    """Parse the ECB file (``eurofxref.csv`` or ``eurofxref-hist.csv``): a ``Date,USD,JPY,…`` header,
    one row per day, ``N/A`` or empty cells for currencies not quoted that day. Every bad cell is
    reported with its line, not only the first one."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows = [r for r in reader if any(c.strip() for c in r)]
    if not rows or rows[0][0].strip().lower() != "date":
        raise Invalid("not an ECB rates file: the first column must be 'Date'", code="fx_file")
    header = [h.strip().upper() for h in rows[0]]
    problems: list[str] = []
    for col, code in enumerate(header[1:], start=1):
        if code and not is_currency(code):
            problems.append(f"header column {col + 1}: unknown currency {code!r}")
    out: list[Rate] = []
    for lineno, row in enumerate(rows[1:], start=2):
        try:
            day = _parse_day(row[0])
        except ValueError:
            problems.append(f"line {lineno}: bad date {row[0]!r}")
            continue
        for col, cell in enumerate(row[1:], start=1):
            code = header[col] if col < len(header) else ""
            value = cell.strip()
            if not code or not value or value.upper() == "N/A":
                continue
            try:
                rate = Decimal(value)
            except InvalidOperation:
                problems.append(f"line {lineno}, {code}: not a rate {value!r}")
                continue
            if not rate.is_finite() or rate <= 0:
                problems.append(f"line {lineno}, {code}: rate must be positive, got {value!r}")
                continue
            out.append(Rate(day, base, code, rate, source))
    if problems:
        raise Invalid(problems, code="fx_file")
    return out


def find_rate(
    rates: Iterable[Rate], from_: str, to: str, *, on: date, max_age_days: int = MAX_AGE_DAYS
) -> LockedRate | None:
    """The most recent rate ``from_`` → ``to`` published on or before ``on`` (at most
    ``max_age_days`` old): direct, inverse, or crossed through a common base (e.g. GBP→USD via EUR)."""
    if from_ == to:
        return LockedRate(from_, to, Decimal(1), on, "identity")
    oldest = on - timedelta(days=max_age_days)
    by_day: dict[date, dict[tuple[str, str], Rate]] = {}
    for r in rates:
        if oldest <= r.day <= on:
            by_day.setdefault(r.day, {})[(r.base, r.quote)] = r
    for day in sorted(by_day, reverse=True):
        found = _on_day(by_day[day], from_, to)
        if found is not None:
            value, source = found
            return LockedRate(from_, to, value.quantize(RATE_PLACES, rounding=ROUND_HALF_UP), day, source)
    return None


def _on_day(table: dict[tuple[str, str], Rate], from_: str, to: str) -> tuple[Decimal, str] | None:
    if (r := table.get((from_, to))) is not None:
        return r.rate, r.source
    if (r := table.get((to, from_))) is not None:
        return 1 / r.rate, r.source
    for (b, q), r1 in table.items():  # cross: b→from_ and b→to on the same day
        if q == from_ and (r2 := table.get((b, to))) is not None:
            return r2.rate / r1.rate, r1.source
    return None


def rate_day(rule: str, *, issue: date, service_end: date | None) -> date:
    """The day whose rate an invoice locks under ``rule``: its issue date, or the last day of its service
    period (the agreed month-end rate, also when the run is days later); the issue date when it has none.

    >>> rate_day("service_end", issue=date(2026, 4, 5), service_end=date(2026, 3, 31))
    datetime.date(2026, 3, 31)
    """
    if rule not in FX_RULES:
        raise Invalid(f"unknown FX rule {rule!r} (one of {', '.join(FX_RULES)})", code="fx")
    if rule == "service_end" and service_end is not None:
        return min(service_end, issue)
    return issue


def agreed_rate(from_: str, to: str, rate: Decimal, *, day: date, campaign: str) -> LockedRate:
    """A fixed rate agreed for a campaign (``rate`` units of ``to`` per 1 ``from_``), locked as it is."""
    if not rate.is_finite() or rate <= 0:
        raise Invalid(f"campaign {campaign}: the agreed exchange rate must be positive, got {rate}", code="fx")
    return LockedRate(from_, to, rate.quantize(RATE_PLACES, rounding=ROUND_HALF_UP), day,
                      f"agreed, campaign {campaign}", "agreed")


def invoice_rate(
    rates: Iterable[Rate], from_: str, to: str, *, rule: str, issue: date, service_end: date | None,
    max_age_days: int = MAX_AGE_DAYS, agreed: LockedRate | None = None,
) -> LockedRate | None:
    """The rate an invoice in ``from_`` locks for its seller's currency ``to``: the campaign's agreed
    rate if there is one, else the published rate of :func:`rate_day` (at most ``max_age_days`` older).

    >>> rates = [Rate(date(2026, 3, 31), "EUR", "PLN", Decimal("4.30")),
    ...          Rate(date(2026, 4, 3), "EUR", "PLN", Decimal("4.40"))]
    >>> r = invoice_rate(rates, "PLN", "EUR", rule="service_end", issue=date(2026, 4, 5),
    ...                  service_end=date(2026, 3, 31))
    >>> r.day, r.rule
    (datetime.date(2026, 3, 31), 'service_end')
    """
    if from_ == to:
        return LockedRate(from_, to, Decimal(1), issue, "identity")
    if agreed is not None:
        return agreed
    found = find_rate(rates, from_, to, on=rate_day(rule, issue=issue, service_end=service_end),
                      max_age_days=max_age_days)
    return replace(found, rule=rule) if found is not None else None


def missing_rate_text(from_: str, to: str, *, rule: str, on: date, max_age_days: int) -> str:
    """Why no rate was found, naming the currencies, the day, the rule and the age allowed.

    >>> missing_rate_text("PLN", "EUR", rule="issue_date", on=date(2026, 3, 31), max_age_days=7)[:60]
    'missing exchange rate PLN→EUR for 2026-03-31 (FX rule issue_'
    """
    oldest = on - timedelta(days=max_age_days)
    return (f"missing exchange rate {from_}→{to} for {on.isoformat()} (FX rule {rule}: {RULE_TEXT.get(rule, rule)}, "
            f"at most {max_age_days} days older): no rate published {oldest.isoformat()}..{on.isoformat()}")


def convert(amount: Decimal, locked: LockedRate) -> Decimal:
    """``amount`` in ``locked.from_`` expressed in ``locked.to``, half-up to its minor unit."""
    return (amount * locked.rate).quantize(quantum(locked.to), rounding=ROUND_HALF_UP)
