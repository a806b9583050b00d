"""Server logs → billable events.

Reads the Apache/nginx *combined* log format and JSON lines (one object per line, e.g. from a
structured logger), line by line. A :class:`LogRule` says which requests are billable events — by
default a successful (2xx) ``POST /test-drive/bookings`` — where the campaign is (a query parameter
or JSON field, ``campaign``) and what identifies the event (``booking_id``). Requests the rule does not
match are counted as ``ignored``; lines that are neither format are quarantined. Repeated events are
deduplicated by ingest (same event id counts once).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from billing.errors import Invalid
from storage.sources.base import BadRow, Batch, make_frame

COMBINED = re.compile(
    r'^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<size>\S+)(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?\s*$'
)
TIME_KEYS = ("time", "timestamp", "@timestamp", "ts", "datetime")
PATH_KEYS = ("path", "url", "uri", "request_uri", "target")
NESTED_KEYS = ("query", "params", "body", "json", "data", "request")


class LogRule(BaseModel):
    """Which requests are billable events and how to read them (``--rule rule.yaml``).

    ```yaml
    method: POST
    path: /test-drive/bookings     # exact path; or `path_regex: '^/test-drive/.+/bookings$'`
    status: [200, 299]             # inclusive range of successful statuses
    campaign: campaign             # query parameter or JSON field with the campaign's external id
    event_id: booking_id           # query parameter or JSON field with the event id
    ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "POST"
    path: str | None = "/test-drive/bookings"
    path_regex: str | None = None
    status: tuple[int, int] = (200, 299)
    campaign: str = Field(default="campaign", min_length=1)
    event_id: str = Field(default="booking_id", min_length=1)

    @field_validator("path_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"bad regular expression: {e}") from None
        return v

    def matches(self, method: str, path: str, status: int) -> bool:
        if method.upper() != self.method.upper():
            return False
        if not (self.status[0] <= status <= self.status[1]):
            return False
        if self.path_regex is not None:
            return re.search(self.path_regex, path) is not None
        return self.path is None or path.rstrip("/") == self.path.rstrip("/")


def load_rule(path: Path | str | None) -> LogRule:
    if path is None:
        return LogRule()
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise Invalid(f"{p}: cannot read rule ({e})") from None
    if not isinstance(data, dict):
        raise Invalid(f"{p}: a rule is a mapping (method, path, status, campaign, event_id)")
    try:
        return LogRule(**data)
    except ValidationError as e:
        raise Invalid([f"{p}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]) from None


def _lookup(obj: dict[str, Any], dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _field(name: str, query: dict[str, list[str]], obj: dict[str, Any] | None) -> str | None:
    if name in query and query[name]:
        return query[name][0]
    if obj is not None:
        v = _lookup(obj, name)
        if v is None:
            for k in NESTED_KEYS:
                nested = obj.get(k)
                if isinstance(nested, dict):
                    v = _lookup(nested, name)
                    if v is not None:
                        break
        if v is not None and not isinstance(v, dict | list):
            return str(v)
    return None


def _parse_combined(line: str) -> tuple[str, str, str, int, dict[str, Any] | None] | None:
    m = COMBINED.match(line)
    if not m:
        return None
    parts = m.group("request").split()
    if len(parts) < 2:
        return None
    try:
        when = datetime.strptime(m.group("time"), "%d/%b/%Y:%H:%M:%S %z").isoformat()
    except ValueError:
        when = m.group("time")  # ingest quarantines it as an unparseable date
    return when, parts[0], parts[1], int(m.group("status")), None


def _parse_json(line: str) -> tuple[str, str, str, int, dict[str, Any] | None] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    when = next((obj[k] for k in TIME_KEYS if obj.get(k) is not None), "")
    if isinstance(when, int | float) and not isinstance(when, bool):
        when = datetime.fromtimestamp(when, UTC).isoformat()
    method = str(obj.get("method") or "")
    target = next((str(obj[k]) for k in PATH_KEYS if obj.get(k)), "")
    if not method and " " in target:  # "request": "POST /x HTTP/1.1"
        bits = target.split()
        method, target = bits[0], bits[1] if len(bits) > 1 else ""
    try:
        status = int(obj.get("status") or obj.get("status_code") or 0)
    except (TypeError, ValueError):
        status = 0
    return str(when), method, target, status, obj


def read_logs(path: Path | str, rule: LogRule | None = None) -> Batch:
    """Parse a log file into a ``conversions`` batch of billable events (kind ``event``)."""
    rule = rule or LogRule()
    p = Path(path)
    if not p.is_file():
        raise Invalid(f"{p}: no such file")
    rows: list[dict[str, Any]] = []
    bad: list[BadRow] = []
    ignored = 0
    with p.open(encoding="utf-8", errors="replace") as fh:
        for n, raw_line in enumerate(fh, start=1):
            line = raw_line.rstrip("\r\n")
            if not line.strip():
                continue
            loc = f"{p.name}:{n}"
            parsed = _parse_json(line) if line.lstrip().startswith("{") else _parse_combined(line)
            if parsed is None:
                bad.append(BadRow(loc, line, "unparseable log line (neither combined log format nor JSON)"))
                continue
            when, method, target, status, obj = parsed
            split = urlsplit(target)
            if not rule.matches(method, split.path, status):
                ignored += 1
                continue
            query = parse_qs(split.query)
            rows.append({
                "external_id": _field(rule.event_id, query, obj),
                "occurred_at": when,
                "status": "approved",
                "external_item": _field(rule.campaign, query, obj),
                "kind": "event",
                "_loc": loc,
                "_raw": line,
            })
    return Batch("conversions", make_frame("conversions", rows), bad=bad, ignored=ignored, label=f"log {p.name}")
