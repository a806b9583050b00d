"""The edge of ``POST /slack/events``: what a request must be before Bolt sees it.

In this order, each refusal a short plain-text reason and never a Slack call:

1. size — a body over :data:`MAX_BODY` (1 MiB) gets 413 from its ``Content-Length``, unread;
2. signature — Slack's ``v0`` HMAC over ``v0:{timestamp}:{body}`` with ``SLACK_SIGNING_SECRET``
   (slack_sdk's :class:`SignatureVerifier`), the timestamp a number within five minutes; else 401.
   Nothing of an unverified body is ever looked at, so no error message goes to a channel it names;
3. shape — a signed body that is not one of Slack's payloads (form fields, the ``payload`` JSON
   object, non-empty ``actions`` of objects, a ``view`` object, a ``user`` with an id) gets 400
   with what is wrong, instead of failing inside Bolt with a 500;
4. workspace — a request from a team (or Enterprise Grid organisation) other than the installed one
   gets 403. It is counted (:attr:`Edge.foreign`), not audited: strangers cannot fill the audit log.

Bolt verifies the signature again behind this; that costs one HMAC.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB; Slack's payloads are a few KiB
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: () → (team_id, enterprise_id) of the installed workspace (auth.test); None while it cannot be told
InstalledTeam = Callable[[], tuple[str | None, str | None] | None]


class Refusal(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _bad(reason: str) -> Refusal:
    return Refusal("400 Bad Request", reason)


def _dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{name}: must be an object")
    return value


def _user_id(user: Any, name: str = "user") -> str:
    uid = _dict(user, name).get("id")
    if not isinstance(uid, str) or not uid:
        raise _bad(f"{name}.id: missing")
    return uid


def _check_interactive(payload: dict[str, Any]) -> None:
    kind = payload.get("type")
    if not isinstance(kind, str):
        raise _bad("payload.type: missing")
    _user_id(payload.get("user"))
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions:
            raise _bad("payload.actions: must be a non-empty list")
        for i, a in enumerate(actions):
            if not isinstance(_dict(a, f"payload.actions[{i}]").get("action_id"), str):
                raise _bad(f"payload.actions[{i}].action_id: missing")
        for name in ("container", "channel", "message", "view"):
            if payload.get(name) is not None:
                _dict(payload[name], f"payload.{name}")
    if kind in ("view_submission", "view_closed"):
        view = _dict(payload.get("view"), "payload.view")
        if not isinstance(view.get("private_metadata", ""), str):
            raise _bad("payload.view.private_metadata: must be text")
        if view.get("state") is not None and not isinstance(_dict(view["state"], "payload.view.state").get(
                "values", {}), dict):
            raise _bad("payload.view.state.values: must be an object")
        if not isinstance(view.get("callback_id", ""), str):
            raise _bad("payload.view.callback_id: must be text")


def parse_body(body: bytes, content_type: str) -> tuple[dict[str, Any], str | None, str | None]:
    """The request's fields (checked as described in the module docstring) and its team and
    enterprise ids. Raises :class:`Refusal` (400)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("body: not UTF-8") from None
    if content_type.startswith("application/json"):
        try:
            data = json.loads(text)
        except ValueError:
            raise _bad("body: not JSON") from None
        data = _dict(data, "body")
        if not isinstance(data.get("type"), str):
            raise _bad("type: missing")
        if data["type"] == "event_callback":
            _dict(data.get("event"), "event")
        return data, _text(data.get("team_id")), _text(data.get("enterprise_id"))
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise _bad(f"content type {content_type or '(none)'}: not a Slack payload")
    try:
        form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True, strict_parsing=bool(text)).items()}
    except ValueError:
        raise _bad("body: not a form") from None
    if "payload" in form:
        try:
            payload = json.loads(form["payload"])
        except ValueError:
            raise _bad("payload: not JSON") from None
        payload = _dict(payload, "payload")
        _check_interactive(payload)
        team = payload.get("team")
        team_id = _text(team.get("id")) if isinstance(team, dict) else None
        user = payload["user"]
        team_id = team_id or _text(user.get("team_id"))
        enterprise = payload.get("enterprise")
        ent = _text(enterprise.get("id")) if isinstance(enterprise, dict) else _text(payload.get("enterprise_id"))
        return payload, team_id, ent
    if "command" in form:
        if not form.get("user_id"):
            raise _bad("user_id: missing")
        return form, form.get("team_id") or None, form.get("enterprise_id") or None
    if form.get("ssl_check"):
        return form, None, None
    raise _bad("body: neither a command nor a payload")


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


class Edge:
    """WSGI middleware in front of Bolt's ``/slack/events`` (see the module docstring)."""

    def __init__(self, app: WSGIApp, *, secret: str, installed_team: InstalledTeam, path: str) -> None:
        self.app = app
        self.verifier = SignatureVerifier(secret)
        self.installed_team = installed_team
        self.path = path
        self.foreign: Counter[str] = Counter()  # refused requests per foreign team id
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        try:
            body = self._checked(environ)
        except Refusal as r:
            data = (r.reason + "\n").encode()
            start_response(r.status, [("content-type", "text/plain; charset=utf-8"),
                                      ("content-length", str(len(data)))])
            return [data]
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _checked(self, environ: dict[str, Any]) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise _bad("Content-Length: not a number") from None
        if length > MAX_BODY:
            raise Refusal("413 Content Too Large", f"body: over {MAX_BODY} bytes")
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        ts = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        sig = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not (ts.isascii() and ts.isdigit() and len(ts) <= 12) or not sig:
            raise Refusal("401 Unauthorized", "signature: missing or malformed")
        try:
            text = body.decode("utf-8")  # Slack sends UTF-8; slack_sdk's verifier decodes bytes itself
        except UnicodeDecodeError:
            raise _bad("body: not UTF-8") from None
        if not self.verifier.is_valid(body=text, timestamp=ts, signature=sig):
            raise Refusal("401 Unauthorized", "signature: invalid or expired")
        _fields, team, enterprise = parse_body(body, environ.get("CONTENT_TYPE") or "")
        self._check_team(team, enterprise)
        return body

    def _check_team(self, team: str | None, enterprise: str | None) -> None:
        if team is None and enterprise is None:
            return  # url_verification, ssl_check: no workspace named, nothing to act on
        installed = self.installed_team()
        if installed is None:
            raise Refusal("503 Service Unavailable", "workspace: cannot tell the installed workspace (auth.test)")
        inst_team, inst_ent = installed
        if team is not None and team == inst_team:
            return
        if enterprise is not None and enterprise == inst_ent:
            return
        with self._lock:
            self.foreign[team or enterprise or "?"] += 1
            count = self.foreign[team or enterprise or "?"]
        if count == 1 or count % 100 == 0:
            log.warning("refused %d request(s) from workspace %s (installed: %s)", count, team or enterprise,
                        inst_team)
        raise Refusal("403 Forbidden", "workspace: not the one billbot is installed in")


def installed_team_of(client: Any, configured: str | None = None) -> InstalledTeam:
    """The installed workspace: ``configured`` (``SLACK_TEAM_ID``) or asked once of ``auth.test``."""
    cache: list[tuple[str | None, str | None]] = []
    lock = threading.Lock()

    def installed() -> tuple[str | None, str | None] | None:
        if configured:
            return configured, None
        with lock:
            if not cache:
                try:
                    r = client.auth_test()
                except Exception as e:  # Slack unreachable: refuse this request, ask again on the next
                    log.warning("auth.test failed: %s", e)
                    return None
                cache.append((_text(r.get("team_id")), _text(r.get("enterprise_id"))))
            return cache[0]

    return installed
