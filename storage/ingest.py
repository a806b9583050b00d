"""Ingest: normalise source batches in pandas, deduplicate, upsert idempotently, quarantine bad rows.

Stages for every batch (one function each, called by :func:`ingest_batch`):

1. **normalise** — text to typed, canonical values: dates (several spellings) to ISO days, counts to
   integers, money to exact decimal strings (revenue is carried as integer micros while summing, so no
   float ever touches an amount), timestamps to UTC with the day taken in the source's time zone,
   currencies checked against ISO 4217 (``billing.money.is_currency``), external ids mapped to ours
   through the crosswalk (:class:`storage.models.ExternalId`).
2. **quarantine** — every row that fails a check becomes a :class:`QuarantineRow` with its location
   (``file:line`` / ``page:row``), raw text and reason. Nothing is silently dropped: the counts say
   ``inserted + updated + unchanged + quarantined + duplicates (+ ignored)`` for every row read.
3. **dedupe** — by the universal key (source, kind, external id): repeated events count once.
4. **upsert** — :func:`upsert`: ``INSERT … ON CONFLICT DO UPDATE … WHERE <values differ>`` so that
   unchanged rows are not touched and the counts tell inserted / updated / unchanged apart. On
   PostgreSQL rows go through ``COPY`` into a temporary staging table and one ``INSERT … SELECT``.

Re-ingesting the same data changes nothing and reports every row ``unchanged``.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Integer, Table, bindparam, insert, select, text
from sqlalchemy.orm import Session
from sqlalchemy.types import Date

from billing.money import is_currency
from storage.models import (
    Advertiser,
    Affiliate,
    Campaign,
    CampaignItem,
    Conversion,
    DeliveryFact,
    Employee,
    ExternalId,
    LegalEntity,
    QuarantineRow,
)
from storage.sources.base import BadRow, Batch
from storage.types import Money, UTCDateTime

MICROS = 1_000_000
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%m/%d/%Y", "%m/%d/%y", "%d.%m.%Y")
SQLITE_CHUNK = 400


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    duplicates: int = 0
    ignored: int = 0

    def add(self, other: Counts) -> Counts:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class IngestContext:
    """Where rows come from and how to read them."""

    source: str
    now: datetime
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    currency: str | None = None
    party: str = "first_party"
    legal_entity: str | None = None
    sync_run_id: int | None = None
    #: days further back than this from ``now`` are quarantined (a typo'd year, a stray old file)
    window_days: int = 400


@dataclass
class IngestResult:
    counts: Counts = field(default_factory=Counts)
    by_kind: dict[str, Counts] = field(default_factory=dict)
    max_day: date | None = None  # last day seen (stats), for watermarks and freshness
    max_occurred: str | None = None  # last event time seen, source-local "YYYY-MM-DD HH:MM:SS"

    def merge(self, kind: str, other: IngestResult) -> None:
        self.counts.add(other.counts)
        self.by_kind.setdefault(kind, Counts()).add(other.counts)
        if other.max_day is not None and (self.max_day is None or other.max_day > self.max_day):
            self.max_day = other.max_day
        if other.max_occurred and (self.max_occurred is None or other.max_occurred > self.max_occurred):
            self.max_occurred = other.max_occurred


# --------------------------------------------------------------------------- entry point


def ingest_batch(s: Session, batch: Batch, ctx: IngestContext) -> IngestResult:
    """Normalise, quarantine, dedupe and upsert one batch inside the caller's transaction."""
    if batch.kind == "stats":
        res = ingest_stats(s, batch.frame, ctx, revenue_micros=batch.revenue_micros, item_label=batch.item_label)
    elif batch.kind == "conversions":
        res = ingest_conversions(s, batch.frame, ctx)
    else:
        res = ingest_entities(s, batch.kind, batch.frame, ctx)
    res.counts.quarantined += quarantine(s, batch.bad, ctx)
    res.counts.ignored += batch.ignored
    return res


def load_crosswalk(s: Session, source: str, kind: str) -> dict[str, str]:
    rows = s.execute(select(ExternalId.external_id, ExternalId.our_id)
                     .where(ExternalId.source == source, ExternalId.kind == kind)).all()
    return {str(e): str(o) for e, o in rows}


# --------------------------------------------------------------------------- quarantine


def quarantine(s: Session, bad: Sequence[BadRow], ctx: IngestContext) -> int:
    """Store bad rows; a row already quarantined with the same location, reason and raw text is not
    stored twice (re-running an import changes nothing). Returns how many bad rows were seen."""
    if not bad:
        return 0
    known: set[tuple[str, str, str]] = set()
    locs = sorted({b.location for b in bad})
    for i in range(0, len(locs), SQLITE_CHUNK):
        q = select(QuarantineRow.location, QuarantineRow.reason, QuarantineRow.raw).where(
            QuarantineRow.source == ctx.source, QuarantineRow.location.in_(locs[i:i + SQLITE_CHUNK]))
        known.update((a, b, c) for a, b, c in s.execute(q).all())
    new: list[dict[str, Any]] = []
    for b in bad:
        k = (b.location[:500], b.reason, b.raw)
        if k in known:
            continue
        known.add(k)
        new.append({"source": ctx.source, "location": b.location[:500], "reason": b.reason, "raw": b.raw,
                    "sync_run_id": ctx.sync_run_id, "created_at": ctx.now})
    if new:
        s.execute(insert(QuarantineRow), new)
    return len(bad)


def _bad_rows(frame: pd.DataFrame, reasons: pd.Series) -> list[BadRow]:
    sel = reasons != ""
    if not sel.any():
        return []
    sub = frame.loc[sel]
    return [BadRow(str(loc), "" if raw is None else str(raw), str(r))
            for loc, raw, r in zip(sub["_loc"], sub["_raw"], reasons[sel], strict=True)]


class _Reasons:
    """The first reason per row wins; rows with a reason are quarantined."""

    def __init__(self, index: pd.Index) -> None:
        self.s = pd.Series("", index=index, dtype=object)

    def flag(self, mask: pd.Series, reason: pd.Series | str) -> None:
        m = mask & (self.s == "")
        if m.any():
            self.s[m] = reason[m] if isinstance(reason, pd.Series) else reason

    @property
    def ok(self) -> pd.Series:
        return self.s == ""


def _s(v: Any) -> str:
    """A cell as stripped text; None and NaN (pandas' missing value) are empty."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v).strip()


def _quoted(col: pd.Series) -> pd.Series:
    return col.map(lambda v: repr("" if v is None else str(v)))


# --------------------------------------------------------------------------- value parsing


def parse_day(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value if not isinstance(value, datetime) else value.date()
    text_ = str(value).strip()
    if not text_:
        return None
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text_, fmt).date()  # noqa: DTZ007 (a calendar day, no time)
        except ValueError:
            continue
    if len(text_) > 10 and text_[10] in "T ":
        return parse_day(text_[:10])
    return None


def _days(col: pd.Series) -> pd.Series:
    """Text → ISO day strings (None where unparseable). Parses each distinct value once."""
    col = col.fillna("").astype(str)
    table: dict[str, str | None] = {}
    for u in pd.unique(col):
        d = parse_day(u)
        table[str(u)] = d.isoformat() if d else None
    return col.map(table)


def _arrow_text(col: pd.Series) -> pa.Array:
    """A text column as a trimmed Arrow string array, missing values as ""."""
    arr = pa.array(col.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    return pc.utf8_trim_whitespace(pc.fill_null(arr, ""))


def _series(arr: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(arr.to_numpy(zero_copy_only=False), index=index)


def _counts(col: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Text → int64 (empty = 0); second value: True where the text is no whole number."""
    a = _arrow_text(col)
    empty = pc.equal(a, "")
    fmt = pc.match_substring_regex(a, r"^-?\d{1,18}(\.0*)?$")
    bad = pc.and_(pc.invert(empty), pc.invert(fmt))
    whole = pc.replace_substring_regex(pc.if_else(fmt, a, "0"), r"\.0*$", "")
    return _series(pc.cast(whole, pa.int64()), col.index), _series(bad, col.index).astype(bool)


def _micros(col: pd.Series, *, already_micros: bool) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Text amounts → exact integer micros (nullable Int64) without ever passing through a float.
    Returns (micros, bad_format, negative). At most 6 decimals (the Money column's scale)."""
    a = _arrow_text(col)
    empty = pc.equal(a, "")
    fmt = pc.match_substring_regex(a, r"^-?\d{1,18}$" if already_micros else r"^-?\d{1,13}(\.\d{1,6})?$")
    bad = pc.and_(pc.invert(empty), pc.invert(fmt))
    safe = pc.if_else(fmt, a, "0")
    if already_micros:
        micros = pc.cast(safe, pa.int64())
    else:
        dec = pc.cast(safe, pa.decimal128(24, 6))
        micros = pc.cast(pc.multiply(dec, pa.scalar(Decimal(MICROS), pa.decimal128(7, 0))), pa.int64())
    out = _series(micros, col.index).astype("Int64").where(_series(fmt, col.index).astype(bool), None)
    negative = out.fillna(0) < 0
    return out, _series(bad, col.index).astype(bool), negative


def micros_to_text(m: pd.Series) -> pd.Series:
    """Exact canonical decimal text from integer micros: 12500000 → "12.5", 0 → "0" (None stays None)."""
    mask = m.isna().to_numpy()
    v = m.fillna(0).to_numpy(dtype=np.int64)
    words = np.empty(2 * len(v), dtype=np.int64)
    words[0::2] = v
    words[1::2] = np.where(v < 0, -1, 0)  # two's complement high word of the 128-bit unscaled value
    dec = pa.Array.from_buffers(pa.decimal128(38, 6), len(v), [None, pa.py_buffer(words)])
    txt = pc.replace_substring_regex(pc.replace_substring_regex(pc.cast(dec, pa.string()), r"0+$", ""), r"\.$", "")
    out = pd.Series(txt.to_numpy(zero_copy_only=False), index=m.index, dtype=object)
    out[mask] = None
    return out


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    txt = str(value).strip()
    if not txt:
        return None
    try:
        d = Decimal(txt)
    except InvalidOperation:
        raise ValueError(f"not an amount: {txt!r}") from None
    if not d.is_finite():
        raise ValueError(f"not an amount: {txt!r}")
    return d


def _canon(d: Decimal | None) -> str | None:
    if d is None:
        return None
    q = d.quantize(Decimal("0.000001"))
    t = format(q, "f")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    return "0" if t in ("-0", "") else t


# --------------------------------------------------------------------------- stats


def ingest_stats(s: Session, frame: pd.DataFrame, ctx: IngestContext, *, revenue_micros: bool = False,
                 item_label: str = "line item") -> IngestResult:
    """Daily delivery rows → :class:`DeliveryFact` per (item, day, source, party).

    Rows of the same item and day (several affiliates, or several external ids mapped to one item)
    are summed; an exact repeat of a (day, external item, affiliate) row counts once.
    """
    res = IngestResult()
    n = len(frame)
    if n == 0:
        return res
    label = item_label
    f = frame.reset_index(drop=True)
    why = _Reasons(f.index)

    day = _days(f["day"])
    why.flag(day.isna(), "unparseable date " + _quoted(f["day"]))
    ext = f["external_item"].fillna("").astype(str).str.strip()
    why.flag(ext == "", f"no {label} id")
    counts = {}
    for c in ("impressions", "clicks", "conversions"):
        v, bad = _counts(f[c])
        why.flag(bad, f"not a whole number: {c} " + _quoted(f[c]))
        why.flag(v < 0, f"negative {c} " + v.astype(str))
        counts[c] = v
    rev, rbad, rneg = _micros(f["revenue"], already_micros=revenue_micros)
    why.flag(rbad, "not an amount: revenue " + _quoted(f["revenue"]))
    why.flag(rneg, "negative revenue " + _quoted(f["revenue"]))
    cur_txt = f["currency"].fillna("").astype(str).str.strip().str.upper()
    uniq = {u: (u == "" or is_currency(u)) for u in pd.unique(cur_txt)}
    why.flag(~cur_txt.map(uniq).astype(bool), "unknown currency " + _quoted(f["currency"]))
    xwalk = load_crosswalk(s, ctx.source, "item")
    item = ext.map(xwalk)
    why.flag(item.isna(), f"unknown {label} " + _quoted(f["external_item"]))

    _flag_days(s, why, day, item, ctx=ctx, label=label)
    res.counts.quarantined = quarantine(s, _bad_rows(f, why.s), ctx)

    ok = why.ok
    kept_days = day[ok].dropna()
    if len(kept_days):  # "data until" and watermarks follow stored rows only, never past today
        res.max_day = date.fromisoformat(str(kept_days.max()))
    g = pd.DataFrame({
        "item_id": item[ok], "day": day[ok], "ext": ext[ok],
        "affiliate": f.loc[ok, "affiliate"].fillna("").astype(str),
        "impressions": counts["impressions"][ok], "clicks": counts["clicks"][ok],
        "conversions": counts["conversions"][ok], "rev": rev[ok],
        "currency": cur_txt[ok].where(cur_txt[ok] != "", ctx.currency or ""),
    })
    if g.empty:
        return res
    dup = g.duplicated(["day", "ext", "affiliate"], keep="last")
    if dup.any():
        res.counts.duplicates = int(dup.sum())
        g = g[~dup]
    if g.duplicated(["item_id", "day"]).any():
        by = g.groupby(["item_id", "day"], sort=False)
        summed = by.agg(impressions=("impressions", "sum"), clicks=("clicks", "sum"),
                        conversions=("conversions", "sum"), currency=("currency", "first"))
        summed["rev"] = by["rev"].sum(min_count=1)  # vectorized; no revenue on any row stays no revenue
        g = summed.reset_index()
    rows = pd.DataFrame({
        "item_id": g["item_id"].to_numpy(), "day": g["day"].to_numpy(),
        "impressions": g["impressions"].to_numpy(dtype="int64"), "clicks": g["clicks"].to_numpy(dtype="int64"),
        "conversions": g["conversions"].to_numpy(dtype="int64"),
        "revenue": micros_to_text(g["rev"].astype("Int64")).to_numpy(),
        "currency": g["currency"].where(g["currency"] != "", None).to_numpy(),
    })
    done = upsert(s, _table(DeliveryFact), rows, key=("item_id", "day", "source", "party"),
               compare=("impressions", "clicks", "conversions", "revenue", "currency"),
               const={"source": ctx.source, "party": ctx.party},
               touch={"sync_run_id": ctx.sync_run_id, "updated_at": ctx.now})
    res.counts.add(done)
    return res


def _flights(s: Session, items: list[str]) -> dict[str, tuple[date, date]]:
    """Each campaign item's flight: its own dates, else its campaign's."""
    out: dict[str, tuple[date, date]] = {}
    for i in range(0, len(items), SQLITE_CHUNK):
        chunk = items[i:i + SQLITE_CHUNK]
        q = (select(CampaignItem.id, CampaignItem.start, CampaignItem.end, Campaign.start, Campaign.end)
             .join(Campaign, Campaign.id == CampaignItem.campaign_id).where(CampaignItem.id.in_(chunk)))
        for iid, istart, iend, cstart, cend in s.execute(q):
            out[str(iid)] = (istart or cstart, iend or cend)
    return out


def _flag_days(s: Session, why: _Reasons, day: pd.Series, item: pd.Series, *, ctx: IngestContext, label: str) -> None:
    """Days that cannot be delivery: in the future, further back than the window, outside the item's flight."""
    today = ctx.now.astimezone(ctx.tz).date()
    oldest = today - timedelta(days=ctx.window_days)
    iso = day.fillna("")
    why.flag((iso != "") & (iso > today.isoformat()), "day " + iso + f" is in the future (today is {today})")
    why.flag((iso != "") & (iso < oldest.isoformat()),
             "day " + iso + f" is more than {ctx.window_days} days back (before {oldest})")
    mapped = [str(x) for x in pd.unique(item.dropna())]
    if not mapped:
        return
    flights = _flights(s, mapped)
    start = item.map(lambda x: flights[x][0].isoformat() if x in flights else "")
    end = item.map(lambda x: flights[x][1].isoformat() if x in flights else "9999-12-31")
    outside = (iso != "") & item.notna() & ((iso < start) | (iso > end))
    why.flag(outside, "day " + iso + f" is outside the flight of {label} " + item.fillna("") + " (" + start + " – "
             + end + ")")


# --------------------------------------------------------------------------- conversions / events

STATUSES = ("approved", "pending", "rejected")


def ingest_conversions(s: Session, frame: pd.DataFrame, ctx: IngestContext) -> IngestResult:  # noqa: C901, PLR0915 - set-based ingest: one pass per conversion state transition, kept together for speed
    """Conversions (tracker) and billable events (logs) → :class:`Conversion`, one per (source, id).

    Tracker conversions: a repeat of the same id keeps the latest status. Events (``kind='event'``):
    the first occurrence counts and later repeats — in the same file or a later one — change nothing.
    """
    res = IngestResult()
    if frame.empty:
        return res
    xwalk = load_crosswalk(s, ctx.source, "item")
    good: list[dict[str, Any]] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    for rec in frame.to_dict("records"):
        kind = _s(rec.get("kind")) or "conversion"
        what = "event" if kind == "event" else "conversion"
        loc, raw = _s(rec.get("_loc")), rec.get("_raw")  # the raw text is made only for a bad row
        ext_id = _s(rec.get("external_id"))
        when_txt = _s(rec.get("occurred_at"))
        try:
            when = datetime.fromisoformat(when_txt.replace("Z", "+00:00")) if when_txt else None
        except ValueError:
            when = None
        local = None
        if when is not None:
            local = when.replace(tzinfo=ctx.tz) if when.tzinfo is None else when.astimezone(ctx.tz)
            stamp = local.strftime("%Y-%m-%d %H:%M:%S")
            if res.max_occurred is None or stamp > res.max_occurred:
                res.max_occurred = stamp
        status = _s(rec.get("status")).lower()
        ext_item = _s(rec.get("external_item"))
        reason = ""
        try:
            payout = _decimal(_s(rec.get("payout")))
            revenue = _decimal(_s(rec.get("revenue")))
        except ValueError as e:
            reason = str(e)
            payout = revenue = None
        currency = _s(rec.get("currency")).upper() or None
        if reason:
            pass
        elif not ext_id:
            reason = f"no {what} id"
        elif local is None:
            reason = f"unparseable date {when_txt!r}"
        elif status not in STATUSES:
            reason = f"unknown status {rec.get('status')!r} (expected approved, pending or rejected)"
        elif (payout is not None and payout < 0) or (revenue is not None and revenue < 0):
            reason = f"negative amount (payout {rec.get('payout')}, revenue {rec.get('revenue')})"
        elif currency is not None and not is_currency(currency):
            reason = f"unknown currency {rec.get('currency')!r}"
        elif not ext_item:
            reason = "no campaign" if kind == "event" else "no offer id"
        elif ext_item not in xwalk:
            reason = f"unknown {'campaign' if kind == 'event' else 'offer'} {ext_item!r}"
        if reason:
            bad.append(BadRow(loc, _s(raw), reason))
            continue
        assert local is not None
        if (payout is not None or revenue is not None) and currency is None:
            currency = ctx.currency
        aff = _s(rec.get("affiliate"))
        row = {"external_id": ext_id, "kind": kind, "item_id": xwalk[ext_item],
               "affiliate_id": f"{ctx.source}-{aff}" if aff else None, "day": local.date().isoformat(),
               "occurred_at": local.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"),
               "status": status, "payout": _canon(payout), "revenue": _canon(revenue), "currency": currency}
        if ext_id in seen:
            res.counts.duplicates += 1
            if kind == "event":
                continue  # the first booking counts; a repeat is the same booking
            good[seen[ext_id]] = row
        else:
            seen[ext_id] = len(good)
            good.append(row)
    res.counts.quarantined = quarantine(s, bad, ctx)
    if good:
        rows = pd.DataFrame(good)
        events = rows["kind"] == "event"
        for sub, update in ((rows[~events], True), (rows[events], False)):
            if not sub.empty:
                res.counts.add(upsert(
                    s, _table(Conversion), sub.reset_index(drop=True), key=("source", "external_id"),
                    compare=("kind", "item_id", "affiliate_id", "day", "occurred_at", "status", "payout", "revenue",
                             "currency"),
                    const={"source": ctx.source}, touch={"sync_run_id": ctx.sync_run_id, "updated_at": ctx.now},
                    update=update))
    return res


# --------------------------------------------------------------------------- entities


def ingest_entities(s: Session, kind: str, frame: pd.DataFrame, ctx: IngestContext) -> IngestResult:
    """Employees, advertisers and affiliates from a tracker, ids ``<source>-<external id>`` unless the
    crosswalk already maps the external id (e.g. to an advertiser from the scenario file). Rows owned
    by another source (or by the scenario) are linked, never overwritten."""
    res = IngestResult()
    if frame.empty:
        return res
    xkind = {"employees": "employee", "advertisers": "advertiser", "affiliates": "affiliate"}[kind]
    xwalk = load_crosswalk(s, ctx.source, xkind)
    bad: list[BadRow] = []
    rows: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    seen: set[str] = set()
    le = s.get(LegalEntity, ctx.legal_entity) if (kind == "advertisers" and ctx.legal_entity) else None
    for rec in frame.to_dict("records"):
        loc, raw = _s(rec.get("_loc")), rec.get("_raw")  # the raw text is made only for a bad row
        ext = _s(rec.get("external_id"))
        if not ext:
            bad.append(BadRow(loc, _s(raw), f"no {xkind} id"))
            continue
        if ext in seen:
            res.counts.duplicates += 1
            continue
        our = xwalk.get(ext) or f"{ctx.source}-{ext}"[:64]
        name = _s(rec.get("name"))
        if kind == "employees":
            rows.append({"id": our, "name": name or _s(rec.get("email")) or f"Employee {ext}",
                         "email": _s(rec.get("email")) or None})
        elif kind == "affiliates":
            rows.append({"id": our, "name": name or f"Affiliate {ext}", "status": _s(rec.get("status")) or None})
        else:
            if not ctx.legal_entity:
                bad.append(BadRow(loc, _s(raw), f"no legal entity for advertisers of source {ctx.source!r} "
                                            f"(set BILLBOT_SOURCE_<NAME>_LEGAL_ENTITY)"))
                continue
            if le is None:
                bad.append(BadRow(loc, _s(raw), f"unknown legal entity {ctx.legal_entity!r}"))
                continue
            cur = (_s(rec.get("currency")) or ctx.currency or le.currency).upper()
            if not is_currency(cur):
                bad.append(BadRow(loc, _s(raw), f"unknown currency {rec.get('currency')!r}"))
                continue
            country = _s(rec.get("country")).upper()
            rows.append({"id": our, "name": name or f"Advertiser {ext}", "legal_entity_id": le.id, "currency": cur,
                         "country": country if len(country) == 2 else le.country})
        seen.add(ext)
        links.append({"external_id": ext, "our_id": our})
    res.counts.quarantined = quarantine(s, bad, ctx)
    if rows:
        table = _table({"employees": Employee, "advertisers": Advertiser, "affiliates": Affiliate}[kind])
        compare = {"employees": ("name", "email"), "advertisers": ("name", "country"),
                   "affiliates": ("name", "status")}[kind]
        res.counts.add(upsert(s, table, pd.DataFrame(rows), key=("id",), compare=compare,
                              const={"source": ctx.source}, only_if_same=("source",)))
        upsert(s, _table(ExternalId), pd.DataFrame(links), key=("source", "kind", "external_id"),
               compare=("our_id",), const={"source": ctx.source, "kind": xkind})
    return res


# --------------------------------------------------------------------------- upsert

_stage_seq = itertools.count(1)


def _table(model: type[Any]) -> Table:
    t = model.__table__
    assert isinstance(t, Table)
    return t


def upsert(s: Session, table: Table, rows: pd.DataFrame, *, key: Sequence[str], compare: Sequence[str],
           const: Mapping[str, Any] | None = None, touch: Mapping[str, Any] | None = None,
           only_if_same: Sequence[str] = (), update: bool = True) -> Counts:
    """Idempotent bulk upsert; returns inserted / updated / unchanged.

    ``rows`` holds canonical text/int values (ISO days, naive-UTC timestamps, exact decimal strings);
    ``const`` columns are the same for every row (``source``, ``party``); ``touch`` columns are written
    on insert and on a real update only (``updated_at``, ``sync_run_id``). An existing row is updated
    only when a ``compare`` column differs (``IS DISTINCT FROM``) and — with ``only_if_same`` — when it
    belongs to the same owner; ``update=False`` keeps the first version (``DO NOTHING``).
    """
    const = dict(const or {})
    touch = dict(touch or {})
    if rows.empty:
        return Counts()
    if s.get_bind().dialect.name == "postgresql":
        return _upsert_pg(s, table, rows, key=key, compare=compare, const=const, touch=touch,
                          only_if_same=only_if_same, update=update)
    return _upsert_sqlite(s, table, rows, key=key, compare=compare, const=const, touch=touch,
                          only_if_same=only_if_same, update=update)


def _scalar_defaults(table: Table, given: set[str]) -> dict[str, Any]:
    """Python-side scalar defaults of NOT NULL columns we do not fill (text SQL skips ORM defaults)."""
    out: dict[str, Any] = {}
    for c in table.columns:
        if c.name in given or c.primary_key or c.nullable:
            continue
        if c.default is not None and getattr(c.default, "is_scalar", False):
            out[c.name] = c.default.arg  # type: ignore[attr-defined]
    return out


def _upsert_pg(s: Session, table: Table, rows: pd.DataFrame, *, key: Sequence[str], compare: Sequence[str],
               const: dict[str, Any], touch: dict[str, Any], only_if_same: Sequence[str], update: bool) -> Counts:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = list(rows.columns)
    const = {**_scalar_defaults(table, set(cols) | set(const) | set(touch)), **const}
    stage = f"_stage_{table.name}_{next(_stage_seq)}"
    q = '", "'.join(cols)
    s.execute(text(f'CREATE TEMP TABLE "{stage}" ON COMMIT DROP AS SELECT "{q}" FROM "{table.name}" WITH NO DATA'))
    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(rows, preserve_index=False), buf,
                    pacsv.WriteOptions(include_header=False, quoting_style="needed", batch_size=65536))
    raw = s.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f'COPY "{stage}" ("{q}") FROM STDIN (FORMAT csv)') as cp:
        view = buf.getbuffer()
        for i in range(0, len(view), 1 << 20):
            cp.write(view[i:i + (1 << 20)])
    extra = {**const, **touch}
    params = {f"p{i}": v for i, v in enumerate(extra.values())}
    binds = [bindparam(f"p{i}", v, type_=table.c[name].type) for i, (name, v) in enumerate(extra.items())]
    ins_cols = cols + list(extra)
    select_list = ", ".join([f'st."{c}"' for c in cols] + [f":p{i}" for i in range(len(extra))])
    t = f'"{table.name}"'
    keys = ", ".join(f'"{k}"' for k in key)
    if update:
        sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in [*compare, *touch])
        mine = ", ".join(f't."{c}"' for c in compare)
        theirs = ", ".join(f'EXCLUDED."{c}"' for c in compare)
        cond = f"({mine}) IS DISTINCT FROM ({theirs})"
        cond += "".join(f' AND t."{c}" IS NOT DISTINCT FROM EXCLUDED."{c}"' for c in only_if_same)
        action = f"DO UPDATE SET {sets} WHERE {cond}"
    else:
        action = "DO NOTHING"
    sql = (f'WITH up AS (INSERT INTO {t} AS t ({", ".join(chr(34) + c + chr(34) for c in ins_cols)}) '
           f'SELECT {select_list} FROM "{stage}" st ON CONFLICT ({keys}) {action} RETURNING (xmax = 0) AS ins) '
           f"SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM up")
    inserted, updated = s.execute(text(sql).bindparams(*binds), params).one()
    s.execute(text(f'DROP TABLE "{stage}"'))
    total = len(rows)
    return Counts(inserted=int(inserted), updated=int(updated), unchanged=total - int(inserted) - int(updated))


def _typed(table: Table, name: str, v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    typ = table.c[name].type
    if isinstance(typ, UTCDateTime):
        d = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
        return d if d.tzinfo else d.replace(tzinfo=UTC)
    if isinstance(typ, Date):
        return v if isinstance(v, date) else date.fromisoformat(str(v))
    if isinstance(typ, Money):
        return v if isinstance(v, Decimal) else Decimal(str(v))
    if isinstance(typ, Integer):
        return int(v)
    return v.item() if isinstance(v, np.generic) else v


def _bound(table: Table, name: str, values: list[Any], dialect: Any) -> list[Any]:
    """``values`` of column ``name`` as SQLAlchemy would hand them to the driver (the column type's own
    bind processing: ISO dates, ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC timestamps, exact decimal text), each
    distinct value converted once — a month's rows repeat their days, items and currencies."""
    proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
    memo: dict[Any, Any] = {}
    out: list[Any] = []
    for v in values:
        try:
            out.append(memo[v])
            continue
        except (KeyError, TypeError):
            pass
        t = _typed(table, name, v)
        b = proc(t) if proc is not None and t is not None else t
        try:
            memo[v] = b
        except TypeError:  # unhashable: converted every time
            pass
        out.append(b)
    return out


def _upsert_sqlite(s: Session, table: Table, rows: pd.DataFrame, *, key: Sequence[str], compare: Sequence[str],
                   const: dict[str, Any], touch: dict[str, Any], only_if_same: Sequence[str],
                   update: bool) -> Counts:
    """One ``INSERT … ON CONFLICT`` statement executed for all rows by the driver (``executemany``) with
    the values bound as SQLAlchemy binds them (:func:`_bound`): the same rows, without building a
    parameter dictionary per row and converting each value twice."""
    s.flush()  # the ORM's pending rows first: the statements below bypass it
    dialect = s.get_bind().dialect
    cols = list(rows.columns)
    extra = {**_scalar_defaults(table, set(cols) | set(const) | set(touch)), **const, **touch}
    columns = [_bound(table, c, rows[c].tolist(), dialect) for c in cols]
    fixed = [_bound(table, c, [v], dialect)[0] for c, v in extra.items()]
    records = [(*values, *fixed) for values in zip(*columns, strict=True)]
    names = [*cols, *extra]
    pos = {c: i for i, c in enumerate(names)}
    raw = s.connection().connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        # which keys exist already (inside BEGIN IMMEDIATE nobody else writes meanwhile), compared as stored
        vary = [k for k in key if k not in const]
        where_fixed = "".join(f' AND "{k}" = ?' for k in key if k in const)
        fixed_args = [fixed[pos[k] - len(cols)] for k in key if k in const]
        existing: set[tuple[Any, ...]] = set()
        firsts = sorted({r[pos[vary[0]]] for r in records}, key=str)
        sel = ", ".join(f'"{k}"' for k in vary)
        for i in range(0, len(firsts), SQLITE_CHUNK):
            chunk = firsts[i:i + SQLITE_CHUNK]
            cur.execute(f'SELECT {sel} FROM "{table.name}" WHERE "{vary[0]}" IN ({", ".join("?" * len(chunk))})'
                        f"{where_fixed}", [*chunk, *fixed_args])
            existing.update(tuple(row) for row in cur.fetchall())
        n_existing = sum(1 for r in records if tuple(r[pos[k]] for k in vary) in existing)
        targets = ", ".join(f'"{k}"' for k in key)
        if update:
            sets = ", ".join(f'"{c}" = excluded."{c}"' for c in [*compare, *touch])
            cond = " OR ".join(f'"{table.name}"."{c}" IS NOT excluded."{c}"' for c in compare)
            cond = f"({cond})" + "".join(f' AND "{table.name}"."{c}" IS excluded."{c}"' for c in only_if_same)
            action = f"DO UPDATE SET {sets} WHERE {cond}"
        else:
            action = "DO NOTHING"
        cur.executemany(f'INSERT INTO "{table.name}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
                        f'VALUES ({", ".join("?" * len(names))}) ON CONFLICT ({targets}) {action}', records)
        changed = cur.rowcount  # rows inserted or updated (an unchanged row is no change)
    finally:
        cur.close()
    inserted = len(records) - n_existing
    updated = changed - inserted
    return Counts(inserted=inserted, updated=updated, unchanged=len(records) - changed)
