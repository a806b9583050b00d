"""A local fake of the TUNE HasOffers Network API v3 (``GET /Apiv3/json``), for tests.

Speaks the real envelope (``{"request": …, "response": {"status", "httpStatus", "data", "errors",
"errorMessage"}}``), pages ``findAll`` (rows keyed by id, ``{"Advertiser": {…}}``) and reports (a list
of ``{"Stat": {…}}``) with ``page``/``limit``, honours report filters (``Stat.date`` BETWEEN,
``Stat.datetime`` GREATER_THAN_OR_EQUAL_TO, ``Stat.id`` EQUAL_TO) and ``fields[]``, and can be told to
misbehave: HTTP errors (429 with ``Retry-After``, 500, 503), slow pages, error envelopes.
Every request is recorded in :attr:`FakeTracker.calls`.

    with FakeTracker(token="t") as tracker:
        tracker.advertisers[17] = {"id": "17", "company": "Autohaus Elbe KG", "country": "DE", "status": "active"}
        tracker.fail("Report::getStats", page=2, status=500)
        …  # BILLBOT_SOURCE_TRACKER_URL = tracker.url
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    call: str  # "Target::Method"
    page: int | None = None  # None: any page
    status: int = 500
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0  # seconds before answering (a slow page)
    envelope_error: str | None = None  # answer 200 with status -1 and this message


@dataclass
class Call:
    target: str
    method: str
    params: dict[str, list[str]]
    status: int

    @property
    def name(self) -> str:
        return f"{self.target}::{self.method}"

    @property
    def page(self) -> int:
        return int(self.params.get("page", ["1"])[0])


class FakeTracker:
    def __init__(self, token: str = "network-token") -> None:
        self.token = token
        self.advertisers: dict[int, dict[str, Any]] = {}
        self.affiliates: dict[int, dict[str, Any]] = {}
        self.employees: dict[int, dict[str, Any]] = {}
        self.stats: list[dict[str, Any]] = []  # {"date", "offer_id", "affiliate_id", "impressions", …}
        self.conversions: list[dict[str, Any]] = []  # {"id", "datetime", "status", "offer_id", …}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    def fail(self, call: str, *, page: int | None = None, status: int = 500, times: int = 1,
             retry_after: str | None = None, delay: float = 0.0, envelope_error: str | None = None) -> None:
        with self._lock:
            self.faults.append(Fault(call, page, status, times, retry_after, delay, envelope_error))

    def called(self) -> list[str]:
        """Distinct "Target::Method" names that answered successfully, in first-call order."""
        out: list[str] = []
        for c in self.calls:
            if c.status == 200 and c.name not in out:
                out.append(c.name)
        return out

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeTracker:
        tracker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                tracker._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-tracker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeTracker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ protocol

    def _take_fault(self, name: str, page: int) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.call == name and (f.page is None or f.page == page) and f.times > 0:
                    f.times -= 1
                    return f
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        params = parse_qs(url.query, keep_blank_values=True)
        target = params.get("Target", [""])[0]
        method = params.get("Method", [""])[0]
        name = f"{target}::{method}"
        page = int(params.get("page", ["1"])[0] or 1)
        if url.path != "/Apiv3/json":
            return self._send(h, 404, {"error": "not found"}, Call(target, method, params, 404))
        fault = self._take_fault(name, page)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.envelope_error:
                return self._send(h, 200, self._error(params, fault.envelope_error), Call(target, method, params, 200))
            if not fault.delay:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                body = {"response": {"status": -1, "httpStatus": fault.status, "data": "",
                                     "errors": [{"err_code": 1, "err_msg": f"HTTP {fault.status}"}],
                                     "errorMessage": None}}
                return self._send(h, fault.status, body, Call(target, method, params, fault.status), headers)
        if params.get("NetworkToken", [""])[0] != self.token:
            return self._send(h, 200, self._error(params, "Invalid NetworkToken"), Call(target, method, params, 200))
        try:
            data = self._dispatch(target, method, params)
        except KeyError as e:
            return self._send(h, 200, self._error(params, str(e.args[0])), Call(target, method, params, 200))
        body = {"request": {k: v if len(v) > 1 else v[0] for k, v in params.items() if k != "NetworkToken"},
                "response": {"status": 1, "httpStatus": 200, "data": data, "errors": [], "errorMessage": None}}
        self._send(h, 200, body, Call(target, method, params, 200))

    @staticmethod
    def _error(params: dict[str, list[str]], message: str) -> dict[str, Any]:
        return {"request": {k: v[0] for k, v in params.items() if k != "NetworkToken"},
                "response": {"status": -1, "httpStatus": 200, "data": "",
                             "errors": [{"err_code": 1, "err_msg": message, "attribute_name": None}],
                             "errorMessage": message}}

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: dict[str, Any], call: Call,
              headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.calls.append(call)
        payload = json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def _dispatch(self, target: str, method: str, params: dict[str, list[str]]) -> dict[str, Any]:
        if method == "findAll" and target in ("Advertiser", "Affiliate", "Employee"):
            rows = {"Advertiser": self.advertisers, "Affiliate": self.affiliates, "Employee": self.employees}[target]
            items = [(str(k), {target: {"id": str(k), **v}}) for k, v in sorted(rows.items())]
            return self._paged(items, params, keyed=True)
        if target == "Report" and method in ("getStats", "getConversions"):
            fields = [f.removeprefix("Stat.") for f in params.get("fields[]", [])]
            if not fields:
                raise KeyError("fields is required")
            rows = self.stats if method == "getStats" else self.conversions
            selected = [r for r in rows if self._matches(r, params)]
            key = "date" if method == "getStats" else "datetime"
            selected.sort(key=lambda r: (str(r.get(key)), str(r.get("id", "")), str(r.get("offer_id")),
                                         str(r.get("affiliate_id"))))
            items = [(str(i), {"Stat": {f: _text(r.get(f)) for f in fields}}) for i, r in enumerate(selected)]
            return self._paged(items, params, keyed=False)
        raise KeyError(f"Method {target}::{method} does not exist")

    @staticmethod
    def _matches(row: dict[str, Any], params: dict[str, list[str]]) -> bool:
        for field in {k.split("[")[1].rstrip("]") for k in params if k.startswith("filters[")}:
            cond = params.get(f"filters[{field}][conditional]", ["EQUAL_TO"])[0]
            values = params.get(f"filters[{field}][values][]") or params.get(f"filters[{field}][values]") or []
            v = str(row.get(field.removeprefix("Stat."), ""))
            if cond == "BETWEEN" and not (values[0] <= v <= values[1]):
                return False
            if cond == "GREATER_THAN_OR_EQUAL_TO" and not v >= values[0]:
                return False
            if cond == "EQUAL_TO" and v not in values:
                return False
        return True

    @staticmethod
    def _paged(items: list[tuple[str, Any]], params: dict[str, list[str]], *, keyed: bool) -> dict[str, Any]:
        count = len(items)
        limit = int(params.get("limit", ["0"])[0] or 0) or max(count, 1)
        page = int(params.get("page", ["1"])[0] or 1)
        chunk = items[(page - 1) * limit: page * limit]
        data: Any = {k: v for k, v in chunk} if keyed else [v for _k, v in chunk]
        if keyed and not data:
            data = []  # HasOffers answers an empty findAll with a list
        return {"page": page, "current": len(chunk), "count": count, "pageCount": math.ceil(count / limit),
                "data": data}


def _text(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    return str(v)
