"""Exchange rates: import the ECB reference-rate CSV, list rates, load the rates a check needs, and
convert amounts for reports (:class:`Converter`, the one rule every total in a reporting currency uses)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from billing.fx import MAX_AGE_DAYS, LockedRate, Rate, convert, find_rate, locked_rate, parse_ecb_csv
from billing.money import ZERO
from billing.signatures import sha256_hex
from bot.workflows import audit
from storage.db import Database
from storage.models import ExchangeRate, LegalEntity


@dataclass(frozen=True)
class ImportResult:
    inserted: int
    updated: int
    unchanged: int
    first_day: date | None
    last_day: date | None


def import_ecb_csv(
    db: Database, *, text: str, actor: str, key: Ed25519PrivateKey | None, now: datetime, source: str = "ECB",
    file_name: str | None = None,
) -> ImportResult:
    """Upsert every rate of an ECB CSV (base EUR) in one transaction, with one audit record.
    Re-importing the same file changes nothing; a corrected rate for a day replaces the old one."""
    rates = parse_ecb_csv(text, source=source)
    if not rates:
        return ImportResult(0, 0, 0, None, None)
    lo, hi = min(r.day for r in rates), max(r.day for r in rates)
    ins = upd = same = 0
    with db.transaction() as s:
        have = {(x.day, x.base, x.quote): x for x in s.execute(
            select(ExchangeRate).where(ExchangeRate.source == source, ExchangeRate.day >= lo,
                                       ExchangeRate.day <= hi)).scalars()}
        new = []
        for r in rates:
            row = have.get((r.day, r.base, r.quote))
            if row is None:
                new.append({"day": r.day, "base": r.base, "quote": r.quote, "rate": r.rate, "source": source})
                ins += 1
            elif row.rate != r.rate:
                row.rate = r.rate
                upd += 1
            else:
                same += 1
        if new:
            s.execute(insert(ExchangeRate), new)
        if ins or upd:
            audit.record(s, key=key, actor=actor, action="fx.imported", subject_type="exchange_rates",
                         subject_id=source, now=now,
                         payload={"file": file_name, "sha256": sha256_hex(text), "inserted": ins, "updated": upd,
                                  "from": lo.isoformat(), "to": hi.isoformat()})
    return ImportResult(ins, upd, same, lo, hi)


@dataclass(frozen=True)
class RateView:
    day: date
    base: str
    quote: str
    rate: Decimal
    source: str


def list_rates(db: Database, *, quote: str | None = None, since: date | None = None,
               limit: int = 1000) -> list[RateView]:
    with db.read() as s:
        q = select(ExchangeRate)
        if quote:
            q = q.where(ExchangeRate.quote == quote.upper())
        if since:
            q = q.where(ExchangeRate.day >= since)
        q = q.order_by(ExchangeRate.day.desc(), ExchangeRate.base, ExchangeRate.quote).limit(limit)
        return [RateView(r.day, r.base, r.quote, r.rate, r.source) for r in s.execute(q).scalars()]


def rates_around(s: Session, on: date, *, since: date | None = None) -> list[Rate]:
    """Every stored rate that :func:`billing.fx.invoice_rate` may use for invoices issued up to ``on``
    whose service periods end on or after ``since`` (the FX rule ``service_end`` looks up the rate of
    that day): from ``since`` (else ``on``) minus the largest maximum age of any legal entity."""
    age = max(MAX_AGE_DAYS, int(s.execute(select(func.max(LegalEntity.fx_max_age_days))).scalar() or 0))
    lo = min(since or on, on) - timedelta(days=age)
    q = select(ExchangeRate).where(ExchangeRate.day <= on, ExchangeRate.day >= lo)
    return [Rate(r.day, r.base, r.quote, r.rate, r.source) for r in s.execute(q).scalars()]


# --------------------------------------------------------------------------- amounts in a reporting currency


@dataclass(frozen=True)
class Converted:
    """A sum in the reporting currency and the currencies that could not be converted (no rate)."""

    currency: str
    amount: Decimal
    missing: tuple[str, ...] = ()


class Converter:
    """Amounts into the reporting currency ``to`` as of ``on`` — the one rule of run reports, the digest,
    receivables aging and the App Home: an invoice's amount at the rate locked on it when that rate joins
    its currency and ``to`` (either way round), anything else at the latest stored rate on or before ``on``
    (:func:`billing.fx.find_rate`: direct, inverse or crossed), each amount half-up to ``to``'s minor unit
    (:func:`billing.fx.convert`). An amount without a rate is named, never converted at 1.0."""

    def __init__(self, s: Session, to: str, on: date) -> None:
        self.to, self.on = to, on
        self.rates: Sequence[Rate] = rates_around(s, on)
        self._latest: dict[str, LockedRate | None] = {}

    def latest(self, currency: str) -> LockedRate | None:
        if currency not in self._latest:
            self._latest[currency] = find_rate(self.rates, currency, self.to, on=self.on)
        return self._latest[currency]

    def rate(self, currency: str) -> Decimal | None:
        found = self.latest(currency)
        return None if found is None else found.rate

    def amount(self, value: Decimal, currency: str, fx: Mapping[str, Any] | None = None) -> Decimal | None:
        """``value`` in ``currency`` expressed in the reporting currency (``fx``: the invoice's locked
        rate, as stored on it); None when there is no rate."""
        if currency == self.to:
            return value
        lock = locked_rate(fx)
        if lock is not None and lock.from_ == currency and lock.to == self.to:
            return convert(value, lock)
        if lock is not None and lock.from_ == self.to and lock.to == currency:
            return convert(value, LockedRate(currency, self.to, 1 / lock.rate, lock.day, lock.source))
        found = self.latest(currency)
        return None if found is None else convert(value, found)

    def total(self, totals: Mapping[str, Decimal]) -> Converted:
        """Per-currency sums (no locked rates) in the reporting currency."""
        return self.sum((value, cur, None) for cur, value in totals.items())

    def sum(self, amounts: Iterable[tuple[Decimal, str, Mapping[str, Any] | None]]) -> Converted:
        """``(value, currency, fx)`` amounts converted one by one and added up."""
        total, missing = ZERO, set()
        for value, cur, fx in amounts:
            got = self.amount(value, cur, fx)
            if got is None:
                missing.add(cur)
            else:
                total += got
        return Converted(self.to, total, tuple(sorted(missing)))
