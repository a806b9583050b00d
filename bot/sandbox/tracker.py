"""The demo tracker: a small local HasOffers (TUNE) Network API v3 for the demo — a fixture, not a network.

Like the sandbox workspace stands in for Slack, this stands in for an ad tracker so that ``billbot
cycle`` (and ``make run``) pull the demo's search clicks through billbot's real connector
(:mod:`storage.sources.hasoffers`) over HTTP, exactly as from a real network. It serves the JSON file
``billbot demo`` writes (:func:`storage.demo.demo_files`, ``var/demo/tracker.json``) on 127.0.0.1 only:

- ``GET /Apiv3/json?NetworkToken=…&Target=…&Method=…``, answered in the real envelope
  ``{"request": {…}, "response": {"status": 1, "httpStatus": 200, "data": {…}, "errors": [],
  "errorMessage": null}}``; a wrong token or an unknown method answers ``status: -1`` with ``errors``;
- ``Report::getStats`` and ``Report::getConversions``: ``fields[]`` (required), ``groups[]`` (numeric
  fields summed per group), ``filters[Stat.x][conditional]`` (``EQUAL_TO``, ``NOT_EQUAL_TO``,
  ``GREATER_THAN[_OR_EQUAL_TO]``, ``LESS_THAN[_OR_EQUAL_TO]``, ``BETWEEN``) with
  ``filters[Stat.x][values][]``, ``sort[Stat.x]=asc|desc``, paged with ``page``/``limit`` as
  ``{"page", "current", "count", "pageCount", "data": [{"Stat": {…}}]}`` — what a partial sync calls
  (stats, and the re-check of pending conversions by ``Stat.id``);
- ``Advertiser|Affiliate|Employee::findAll``, paged, rows keyed by id (what a standard sync adds).

Nothing here is used in production; tests use their own fake (``tests/fakes/tracker.py``), which can
also misbehave on purpose.

    with DemoTracker.from_file("var/demo/tracker.json") as tracker:
        ...  # BILLBOT_SOURCE_TRACKER_URL=tracker.url, _TOKEN=tracker.token, _KIND=hasoffers
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox.wsgi import RunningServer, serve_in_thread

StartResponse = Callable[..., Any]

NUMERIC = ("impressions", "clicks", "conversions", "payout", "revenue", "sale_amount")
ENTITIES = {"Advertiser": "advertisers", "Affiliate": "affiliates", "Employee": "employees"}
MAX_LIMIT = 100_000


class ApiError(Exception):
    """Answered as an error envelope (``status: -1``), as the real API does."""


class DemoTracker:
    """A HasOffers Network API v3 over the demo's data, on a free local port (``port=0``) by default."""

    def __init__(self, data: dict[str, Any], *, token: str | None = None) -> None:
        self.token = str(token if token is not None else data.get("token") or "")
        self.stats: list[dict[str, Any]] = list(data.get("stats") or [])
        self.conversions: list[dict[str, Any]] = list(data.get("conversions") or [])
        self.entities: dict[str, dict[str, Any]] = {t: dict(data.get(k) or {}) for t, k in ENTITIES.items()}
        self.calls: list[str] = []  # "Target::Method page=N" per answered request
        self._cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._server: RunningServer | None = None

    @classmethod
    def from_file(cls, path: Path | str, *, token: str | None = None) -> DemoTracker:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), token=token)

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, host: str = "127.0.0.1", port: int = 0) -> DemoTracker:
        self._server = serve_in_thread(self.wsgi, host=host, port=port, name="demo-tracker")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> DemoTracker:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The network's base URL (the connector appends ``/Apiv3/json``)."""
        if self._server is None:
            raise RuntimeError("the demo tracker is not running")
        return self._server.url.rstrip("/")

    # ------------------------------------------------------------------ HTTP

    def wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/Apiv3/json":
            return _send(start_response, "404 Not Found", {"error": "not found"})
        if environ.get("REQUEST_METHOD") not in ("GET", "POST"):
            return _send(start_response, "405 Method Not Allowed", {"error": "use GET"})
        params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        request = {k: v if len(v) > 1 else v[0] for k, v in params.items() if k != "NetworkToken"}
        try:
            if params.get("NetworkToken", [""])[0] != self.token:
                raise ApiError("Invalid NetworkToken")
            data = self.call(params)
        except ApiError as e:
            return _send(start_response, "200 OK", {"request": request, "response": {
                "status": -1, "httpStatus": 200, "data": "", "errorMessage": str(e),
                "errors": [{"err_code": 1, "err_msg": str(e), "attribute_name": None}]}})
        return _send(start_response, "200 OK", {"request": request, "response": {
            "status": 1, "httpStatus": 200, "data": data, "errors": [], "errorMessage": None}})

    def call(self, params: dict[str, list[str]]) -> dict[str, Any]:
        """Answer one API call (``params`` as ``parse_qs`` gives them); raises :class:`ApiError`."""
        target = params.get("Target", [""])[0]
        method = params.get("Method", [""])[0]
        page = _int(params, "page", 1)
        limit = min(_int(params, "limit", 0), MAX_LIMIT)
        if page < 1 or limit < 0:
            raise ApiError("page and limit must be positive")
        with self._lock:
            self.calls.append(f"{target}::{method} page={page}")
        if method == "findAll" and target in ENTITIES:
            rows = self.entities[target]
            ordered = sorted(rows.items(), key=_id_order)
            return _paged(ordered, page, limit, wrap=lambda k, v: (str(k), {target: {"id": str(k), **v}}), keyed=True)
        if target == "Report" and method in ("getStats", "getConversions"):
            return _paged(self._report(method, params), page, limit, wrap=lambda _n, r: ("", {"Stat": r}),
                          keyed=False)
        raise ApiError(f"Method {target}::{method} does not exist")

    # ------------------------------------------------------------------ reports

    def _report(self, method: str, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        """Filtered, grouped, sorted rows with the requested fields — computed once per query and
        cached, so paging through a big report does not redo it for every page."""
        key = (method, *sorted((k, tuple(v)) for k, v in params.items() if k not in ("page", "limit", "NetworkToken")))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        fields = [f.removeprefix("Stat.") for f in params.get("fields[]", [])]
        if not fields:
            raise ApiError("fields is required")
        rows = [r for r in (self.stats if method == "getStats" else self.conversions) if _matches(r, params)]
        groups = [g.removeprefix("Stat.") for g in params.get("groups[]", [])]
        if groups:
            rows = _group(rows, groups)
        sorts = [(k[5:-1].removeprefix("Stat."), v[0].lower() == "desc") for k, v in params.items()
                 if k.startswith("sort[") and k.endswith("]")]
        for col, desc in reversed(sorts):  # stable sorts, last key first: the first sort[] is the primary one
            rows = sorted(rows, key=_sort_key(col), reverse=desc)
        out = [{f: _text(r.get(f)) for f in fields} for r in rows]
        with self._lock:
            self._cache[key] = out
        return out


def _send(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body, ensure_ascii=False).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


def _int(params: dict[str, list[str]], name: str, default: int) -> int:
    try:
        return int(params.get(name, [str(default)])[0] or default)
    except ValueError:
        raise ApiError(f"{name} must be a number") from None


def _id_order(kv: tuple[Any, Any]) -> tuple[int, str]:
    k = str(kv[0])
    return (int(k), k) if k.isdigit() else (1 << 62, k)


def _text(v: Any) -> Any:
    return v if v is None or isinstance(v, str) else str(v)


def _sort_key(col: str) -> Callable[[dict[str, Any]], tuple[int, float, str]]:
    return lambda row: _sortable(row.get(col))


def _sortable(v: Any) -> tuple[int, float, str]:
    """Numbers by value, everything else (dates, ids with letters) as text after them."""
    t = "" if v is None else str(v)
    try:
        return (0, float(t), t)
    except ValueError:
        return (1, 0.0, t)


def _compare(v: str, cond: str, values: list[str]) -> bool:
    if cond == "EQUAL_TO":
        return v in values
    if cond == "NOT_EQUAL_TO":
        return v not in values
    if cond == "BETWEEN":
        if len(values) != 2:
            raise ApiError("BETWEEN needs two values")
        return values[0] <= v <= values[1]
    if not values:
        raise ApiError(f"{cond} needs a value")
    ops: dict[str, Callable[[str, str], bool]] = {
        "GREATER_THAN": lambda a, b: a > b, "GREATER_THAN_OR_EQUAL_TO": lambda a, b: a >= b,
        "LESS_THAN": lambda a, b: a < b, "LESS_THAN_OR_EQUAL_TO": lambda a, b: a <= b,
    }
    if cond not in ops:
        raise ApiError(f"unknown conditional {cond!r}")
    return ops[cond](v, values[0])


def _matches(row: dict[str, Any], params: dict[str, list[str]]) -> bool:
    """Dates and datetimes compare as ISO text, ids as given (the API's own rules for these fields)."""
    for name in {k[len("filters["):].split("]", 1)[0] for k in params if k.startswith("filters[")}:
        cond = params.get(f"filters[{name}][conditional]", ["EQUAL_TO"])[0].upper()
        values = params.get(f"filters[{name}][values][]") or params.get(f"filters[{name}][values]") or []
        if not _compare(str(row.get(name.removeprefix("Stat."), "")), cond, values):
            return False
    return True


def _group(rows: list[dict[str, Any]], groups: list[str]) -> list[dict[str, Any]]:
    """One row per distinct value of ``groups``; numeric fields summed (two decimals for money)."""
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in rows:
        k = tuple(str(r.get(g, "")) for g in groups)
        acc = out.get(k)
        if acc is None:
            out[k] = dict(r)
            continue
        for f in NUMERIC:
            if f in r or f in acc:
                acc[f] = _add(acc.get(f), r.get(f))
    return list(out.values())


def _add(a: Any, b: Any) -> str:
    total = Decimal(str(a or 0)) + Decimal(str(b or 0))
    return str(total) if "." not in f"{a}{b}" else str(total.quantize(Decimal("0.01")))


def _paged(items: Sequence[Any], page: int, limit: int, *, wrap: Callable[..., tuple[str, Any]],
           keyed: bool) -> dict[str, Any]:
    """Page ``page`` of ``items``, each wrapped as the API answers it (only the page's items: wrapping the
    whole report for every page made paging through it quadratic)."""
    count = len(items)
    size = limit or max(count, 1)
    chunk = [wrap(*item) if keyed else wrap(None, item) for item in items[(page - 1) * size: page * size]]
    data: Any = dict(chunk) if keyed else [v for _k, v in chunk]
    if keyed and not data:
        data = []  # the API answers an empty findAll with a list
    return {"page": page, "current": len(chunk), "count": count, "pageCount": max(1, math.ceil(count / size)),
            "data": data}
