"""What the sandbox's Web API was asked, and the faults it is told to answer with.

:class:`CallLog` records every request (Web API methods, ``upload`` posts of ``files_upload_v2``,
``response_url`` posts) in order, with its decoded arguments, raw body and headers; tests and the page's log read
it, :meth:`CallLog.wait_for` waits for a call made by another thread or process.

:class:`Faults` makes the sandbox answer like Slack in a bad moment: the next calls of a method get an HTTP
status (429 with ``Retry-After``, 5xx — an outage), or a method answers a Slack error (``{"ok": false,
"error": …}``) until the error is removed. Calls answered with a status are recorded as ``"<method>#fault"``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JSON_FIELDS = ("blocks", "view", "attachments", "files", "metadata")


@dataclass
class Call:
    method: str  # "chat.postMessage", "response_url", "upload", "chat.postMessage#fault"
    params: dict[str, Any]  # query string + body merged (JSON fields decoded)
    body: Any  # the JSON or form body as received (raw bytes for uploads)
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""
    at: float = field(default_factory=time.monotonic)

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def __contains__(self, key: object) -> bool:
        return key in self.params

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


def decode_json_fields(params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with Block Kit arguments sent as JSON strings (form bodies) decoded."""
    out = dict(params)
    for k in JSON_FIELDS:
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                pass
    return out


class CallLog:
    """Every request the sandbox answered, oldest first; with ``keep``, only the last ``keep`` (a long sandbox
    session uploads many PDFs — their bodies are recorded too)."""

    def __init__(self, keep: int | None = None) -> None:
        self.calls: list[Call] = []
        self.keep = keep
        self._cv = threading.Condition()

    def record(self, call: Call) -> None:
        with self._cv:
            self.calls.append(call)
            if self.keep is not None and len(self.calls) > self.keep:
                del self.calls[: len(self.calls) - self.keep]
            self._cv.notify_all()

    def reset(self) -> None:
        with self._cv:
            self.calls.clear()

    def calls_to(self, method: str) -> list[Call]:
        with self._cv:
            return [c for c in self.calls if c.method == method]

    def wait_for(
        self, method: str, n: int = 1, *, timeout: float = 10.0, where: Callable[[Call], bool] | None = None
    ) -> list[Call]:
        """Wait until at least ``n`` calls of ``method`` (matching ``where``) were recorded; return them."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                found = [c for c in self.calls if c.method == method and (where is None or where(c))]
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [c.method for c in self.calls]
                    raise AssertionError(f"expected {n} call(s) of {method}, got {len(found)}; calls: {seen}")
                self._cv.wait(left)


class Faults:
    """Injected failures, per Web API method."""

    def __init__(self) -> None:
        self._next: dict[str, list[tuple[int, int]]] = {}
        self.errors: dict[str, str] = {}  # method → Slack error code, answered until removed
        self._lock = threading.Lock()

    def fail_next(self, method: str, *, status: int = 429, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` get HTTP ``status`` (429 comes with ``Retry-After``)."""
        with self._lock:
            self._next.setdefault(method, []).extend([(status, retry_after)] * times)

    def take(self, method: str) -> tuple[int, int] | None:
        """The HTTP fault (status, retry_after) to answer this call of ``method`` with, if any."""
        with self._lock:
            pending = self._next.get(method)
            return pending.pop(0) if pending else None

    def error(self, method: str) -> str | None:
        return self.errors.get(method)
