"""Exchange rates: import the ECB reference-rate CSV, list rates, and load the rates a check needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from billing.fx import MAX_AGE_DAYS, Rate, parse_ecb_csv
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
