"""TUNE HasOffers Network API v3 connector.

Calls ``GET {url}/Apiv3/json?NetworkToken=…&Target=…&Method=…&page=N&limit=L``. Every answer is the
envelope ``{"request": {…}, "response": {"status": 1, "httpStatus": 200, "data": {…}, "errors": [],
"errorMessage": null}}``; ``status: -1`` carries ``errors: [{"err_code", "err_msg"}]``. Paged methods
answer ``data = {"page", "current", "count", "pageCount", "data"}`` where ``findAll`` keys rows by id
(``{"17": {"Advertiser": {…}}}``) and reports give a list of ``{"Stat": {…}}``.

Transport rules: explicit timeouts; 429 and 5xx (and timeouts / connection errors) are retried with
exponential backoff, honouring ``Retry-After``; an error envelope is not retried (it will not heal).

Incremental watermark (``SourceState.watermark``): ``stats=<last synced Stat.date>;conv=<last
conversion Stat.datetime>`` in the network's time zone. Stats are re-pulled from the watermark day
itself (the last day may have been incomplete); upserts make the overlap free.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from storage.sources.base import Batch, BatchKind, ProgressFn, SourceConfig, SourceError, make_frame, register

STATS_FIELDS = ("Stat.date", "Stat.offer_id", "Stat.affiliate_id", "Stat.impressions", "Stat.clicks",
                "Stat.conversions", "Stat.payout", "Stat.revenue")
CONVERSION_FIELDS = ("Stat.id", "Stat.datetime", "Stat.status", "Stat.offer_id", "Stat.affiliate_id",
                     "Stat.payout", "Stat.revenue", "Stat.currency")
ID_CHUNK = 100  # Stat.id values per re-check request

Params = list[tuple[str, str | int | float | bool | None]]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class HasOffersClient:
    """A small, strict HTTP client for the Network API. ``sleep`` and ``backoff`` are injectable so
    tests wait out rate limits without real waiting."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0, max_attempts: int = 5,
                 backoff: float = 0.5, max_wait: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/Apiv3/json") else base + "/Apiv3/json"
        self.token = token or ""
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), transport=transport)
        self.calls: list[str] = []  # "Target::Method" per request, for logs

    def close(self) -> None:
        self.http.close()

    def call(self, target: str, method: str, params: Params) -> dict[str, Any]:
        """One request; returns ``response.data``. Raises :class:`SourceError` when it cannot."""
        query: Params = [("NetworkToken", self.token), ("Target", target), ("Method", method), *params]
        what = f"{target}::{method}" + "".join(f" {k}={v}" for k, v in params if k == "page")
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            self.calls.append(f"{target}::{method}")
            try:
                r = self.http.get(self.endpoint, params=query)
            except httpx.TimeoutException:
                problem = "timed out"
                wait = None
            except httpx.TransportError as e:
                problem = f"connection failed ({type(e).__name__})"
                wait = None
            else:
                if r.status_code == 429 or r.status_code >= 500:
                    problem = f"HTTP {r.status_code}"
                    wait = _retry_after(r.headers.get("Retry-After"))
                elif r.status_code >= 400:
                    raise SourceError(f"{what}: HTTP {r.status_code} {r.text[:200]}")
                else:
                    return self._unwrap(what, r)
            if attempt == self.max_attempts:
                break
            delay = wait if wait is not None else self.backoff * 2 ** (attempt - 1)
            self.sleep(min(delay, self.max_wait))
        raise SourceError(f"{what}: {problem} after {self.max_attempts} attempts")

    @staticmethod
    def _unwrap(what: str, r: httpx.Response) -> dict[str, Any]:
        try:
            body = r.json()
            resp = body["response"]
        except (ValueError, KeyError, TypeError):
            raise SourceError(f"{what}: not a HasOffers envelope: {r.text[:200]!r}") from None
        if resp.get("status") != 1:
            errs = resp.get("errors") or []
            msg = "; ".join(str(e.get("err_msg") or e) for e in errs if isinstance(e, dict))
            msg = msg or str(resp.get("errorMessage") or f"status {resp.get('status')}")
            raise SourceError(f"{what}: API error: {msg}")
        data = resp.get("data")
        return data if isinstance(data, dict) else {"data": data}

    def pages(self, target: str, method: str, params: Params, *, limit: int,
              on_page: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, Any]]:
        """Yield ``(page, data.data)`` for every page, 1 … pageCount."""
        page = 1
        while True:
            data = self.call(target, method, [*params, ("page", str(page)), ("limit", str(limit))])
            count = int(data.get("pageCount") or 1)
            if on_page is not None:
                on_page(page, count)
            yield page, data.get("data")
            if page >= count:
                return
            page += 1


def parse_watermark(value: str | None) -> dict[str, str]:
    """``"stats=2026-02-10;conv=2026-02-10 13:00:00"`` → ``{"stats": …, "conv": …}``."""
    out: dict[str, str] = {}
    for part in (value or "").split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def format_watermark(parts: dict[str, str]) -> str | None:
    items = [f"{k}={parts[k]}" for k in ("stats", "conv") if parts.get(k)]
    return ";".join(items) or None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return str(v)


@register("hasoffers")
class HasOffersSource:
    """Standard sync: employees, advertisers, affiliates, stats, new conversions and a re-check of the
    pending ones. Partial sync: stats and the re-check of pending conversions only."""

    ENTITIES: tuple[tuple[BatchKind, str], ...] = (
        ("employees", "Employee"), ("advertisers", "Advertiser"), ("affiliates", "Affiliate"))

    def __init__(self, config: SourceConfig, *, client: HasOffersClient | None = None) -> None:
        self.config = config
        self.client = client or HasOffersClient(config.url or "", config.token, timeout=config.timeout_s)

    # -------------------------------------------------------------- batches

    def fetch(self, *, mode: str, watermark: str | None, pending_ids: list[str], now: datetime,
              on_progress: ProgressFn | None = None) -> Iterator[Batch]:
        wm = parse_watermark(watermark)
        today = now.astimezone(self.config.tz).date()
        start = date.fromisoformat(wm["stats"]) if "stats" in wm else today - timedelta(days=self.config.lookback_days)
        if mode == "standard":
            for kind, target in self.ENTITIES:
                yield self._entities(kind, target, on_progress)
        yield self._stats(start, today, on_progress)
        if mode == "standard":
            since = wm.get("conv") or f"{start.isoformat()} 00:00:00"
            yield self._conversions_since(since, today, on_progress)
        if pending_ids:
            yield self._recheck(pending_ids, start, today, on_progress)

    def advance_watermark(self, old: str | None, *, max_day: date | None, max_occurred: str | None) -> str | None:
        wm = parse_watermark(old)
        if max_day is not None and max_day.isoformat() > wm.get("stats", ""):
            wm["stats"] = max_day.isoformat()
        if max_occurred and max_occurred > wm.get("conv", ""):
            wm["conv"] = max_occurred
        return format_watermark(wm)

    def _progress(self, on_progress: ProgressFn | None, label: str) -> Callable[[int, int], None] | None:
        if on_progress is None:
            return None
        return lambda page, count: on_progress(label, page, count)

    def _entities(self, kind: BatchKind, target: str, on_progress: ProgressFn | None) -> Batch:
        rows: list[dict[str, Any]] = []
        for page, data in self.client.pages(target, "findAll", [], limit=self.config.page_limit,
                                            on_page=self._progress(on_progress, f"{target}::findAll")):
            items = data.values() if isinstance(data, dict) else (data or [])
            for n, item in enumerate(items, start=1):
                obj = item.get(target, item) if isinstance(item, dict) else {}
                name: str | None
                if kind == "employees":
                    name = " ".join(p for p in (obj.get("first_name"), obj.get("last_name")) if p)
                else:
                    name = obj.get("company")
                rows.append({"external_id": _text(obj.get("id")), "name": _text(name), "email": _text(obj.get("email")),
                             "status": _text(obj.get("status")), "country": _text(obj.get("country")),
                             "currency": _text(obj.get("currency")),
                             "_loc": f"{target}::findAll page {page}:{n}", "_raw": _raw(obj)})
        return Batch(kind, make_frame(kind, rows), label=f"{target}::findAll")

    def _report(self, method: str, *, fields: tuple[str, ...], params: Params, on_progress: ProgressFn | None,
                rows_out: list[dict[str, Any]], convert: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        base: Params = [("fields[]", f) for f in fields] + params
        for page, data in self.client.pages("Report", method, base, limit=self.config.page_limit,
                                            on_page=self._progress(on_progress, f"Report::{method}")):
            items = data.values() if isinstance(data, dict) else (data or [])
            for n, item in enumerate(items, start=1):
                stat = item.get("Stat", item) if isinstance(item, dict) else {}
                row = convert(stat)
                row["_loc"] = f"Report::{method} page {page}:{n}"
                row["_raw"] = _raw(stat)
                rows_out.append(row)

    def _stats(self, start: date, end: date, on_progress: ProgressFn | None) -> Batch:
        params: Params = [
            ("groups[]", "Stat.date"), ("groups[]", "Stat.offer_id"), ("groups[]", "Stat.affiliate_id"),
            ("filters[Stat.date][conditional]", "BETWEEN"),
            ("filters[Stat.date][values][]", start.isoformat()), ("filters[Stat.date][values][]", end.isoformat()),
            ("data_start", start.isoformat()), ("data_end", end.isoformat()),
            ("sort[Stat.date]", "asc"),
        ]
        rows: list[dict[str, Any]] = []
        cur = self.config.currency

        def conv(st: dict[str, Any]) -> dict[str, Any]:
            return {"day": _text(st.get("date")), "external_item": _text(st.get("offer_id")),
                    "affiliate": _text(st.get("affiliate_id")), "impressions": _text(st.get("impressions")),
                    "clicks": _text(st.get("clicks")), "conversions": _text(st.get("conversions")),
                    "revenue": _text(st.get("revenue")), "currency": _text(st.get("currency")) or cur}

        self._report("getStats", fields=STATS_FIELDS, params=params, on_progress=on_progress, rows_out=rows,
                     convert=conv)
        return Batch("stats", make_frame("stats", rows), label="Report::getStats", item_label="offer")

    def _conv_row(self, st: dict[str, Any]) -> dict[str, Any]:
        return {"external_id": _text(st.get("id")), "occurred_at": _text(st.get("datetime")),
                "status": _text(st.get("status")), "external_item": _text(st.get("offer_id")),
                "affiliate": _text(st.get("affiliate_id")), "payout": _text(st.get("payout")),
                "revenue": _text(st.get("revenue")), "currency": _text(st.get("currency")) or self.config.currency,
                "kind": "conversion"}

    def _conversions_since(self, since: str, end: date, on_progress: ProgressFn | None) -> Batch:
        params: Params = [
            ("filters[Stat.datetime][conditional]", "GREATER_THAN_OR_EQUAL_TO"),
            ("filters[Stat.datetime][values]", since),
            ("data_start", since[:10]), ("data_end", end.isoformat()),
            ("sort[Stat.datetime]", "asc"),
        ]
        rows: list[dict[str, Any]] = []
        self._report("getConversions", fields=CONVERSION_FIELDS, params=params, on_progress=on_progress,
                         rows_out=rows, convert=self._conv_row)
        return Batch("conversions", make_frame("conversions", rows), label="Report::getConversions")

    def _recheck(self, ids: list[str], start: date, end: date, on_progress: ProgressFn | None) -> Batch:
        rows: list[dict[str, Any]] = []
        for i in range(0, len(ids), ID_CHUNK):
            params: Params = [("filters[Stat.id][conditional]", "EQUAL_TO")]
            params += [("filters[Stat.id][values][]", x) for x in ids[i:i + ID_CHUNK]]
            self._report("getConversions", fields=CONVERSION_FIELDS, params=params, on_progress=on_progress,
                         rows_out=rows, convert=self._conv_row)
        return Batch("conversions", make_frame("conversions", rows), label="Report::getConversions (pending re-check)")


class _Raw:
    """A row as the API gave it, written out as JSON text only when asked (``str``): only quarantined
    rows are, and a month's stats are tens of thousands of rows."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __str__(self) -> str:
        import json

        text = json.dumps(self.obj, sort_keys=True, ensure_ascii=False, default=str)
        return re.sub(r"\s+", " ", text)[:4000]


def _raw(obj: Any) -> _Raw:
    return _Raw(obj)
