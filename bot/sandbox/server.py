"""The sandbox's HTTP surface (one WSGI app):

- ``/api/<method>`` — the Slack Web API subset (:mod:`bot.sandbox.webapi`); billbot's ``SLACK_API_URL``;
- ``/upload/<file_id>`` — ``files.getUploadURLExternal``'s upload URL; ``/files/<id>/<name>`` — downloads;
- ``/response/<token>`` — ``response_url``s handed out with commands and interactions;
- ``/`` and ``/static/…`` — the single-page UI;
- ``/outbox``, ``/outbox/<mail>/<n>``, ``/sandbox/outbox`` — the mails billbot sent (:mod:`bot.sandbox.outbox`);
- ``/sandbox/…`` — the page's own JSON API: ``state`` (long-polled), ``command``, ``action``, ``submit``,
  ``close``, ``home``, ``say``. Those that reach billbot go through :class:`~bot.sandbox.forward.Forwarder`,
  signed.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox.calls import Call, decode_json_fields
from bot.sandbox.forward import Forwarder, new_bot_token, new_secret
from bot.sandbox.outbox import Outbox
from bot.sandbox.outbox import route as outbox_route
from bot.sandbox.webapi import WebApi
from bot.sandbox.workspace import BOT_USER, BOT_USER_ID, TEAM_ID, SandboxUser, SlackError, Workspace
from bot.sandbox.wsgi import RunningServer, serve_in_thread

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 20 * 1024 * 1024
LONG_POLL_SECONDS = 20.0
KEEP_CALLS = 2000  # the calls a sandbox session remembers (tests keep all)

StartResponse = Callable[..., Any]


class HttpError(Exception):
    def __init__(self, status: str, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise HttpError("400 Bad Request", "bad Content-Length") from None
    if length > MAX_BODY:
        raise HttpError("413 Payload Too Large")
    return environ["wsgi.input"].read(length) if length else b""


def _flatten(qs: dict[str, list[str]]) -> dict[str, Any]:
    return {k: v[0] if len(v) == 1 else v for k, v in qs.items()}


def _multipart(body: bytes, content_type: str) -> dict[str, Any]:
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            out[str(name)] = data if part.get_filename() else data.decode(errors="replace")
    return out


def api_params(environ: dict[str, Any], body: bytes) -> dict[str, Any]:
    """Web API arguments from the query string and a form, JSON or multipart body, as Slack accepts them."""
    params = _flatten(parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    ctype = environ.get("CONTENT_TYPE", "")
    if body:
        if ctype.startswith("application/json"):
            try:
                data = json.loads(body)
            except ValueError:
                raise HttpError("400 Bad Request", "invalid_json") from None
            if isinstance(data, dict):
                params.update(data)
        elif ctype.startswith("multipart/form-data"):
            params.update(_multipart(body, ctype))
        else:
            params.update(_flatten(parse_qs(body.decode(errors="replace"), keep_blank_values=True)))
    return params


def _token(environ: dict[str, Any], params: dict[str, Any]) -> str | None:
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    tok = params.pop("token", None)
    return str(tok) if tok else None


class SandboxApp:
    """The WSGI callable."""

    def __init__(self, ws: Workspace, api: WebApi, forwarder: Forwarder) -> None:
        self.ws = ws
        self.api = api
        self.forwarder = forwarder
        self.outbox: Outbox | None = None  # the local mail server, when the session started one

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if self.ws.closed:
                raise HttpError("503 Service Unavailable", "the sandbox has stopped")
            status, headers, body = self.route(method, path, environ)
        except sqlite3.ProgrammingError:
            if not self.ws.closed:
                raise
            # stopped while this request waited (a long-poll): no answer is useful any more
            status, headers, body = "503 Service Unavailable", [("Content-Type", "text/plain")], b"stopped"
        except HttpError as e:
            status, headers, body = e.status, [("Content-Type", "text/plain; charset=utf-8")], e.message.encode()
        except SlackError as e:
            status, headers, body = _json({"ok": False, "error": e.error, **e.extra})
        headers.append(("Cache-Control", "no-store"))
        start_response(status, headers)
        return [body]

    def _record(self, method: str, params: dict[str, Any], body: Any, environ: dict[str, Any]) -> None:
        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        self.api.log.record(Call(method, params, body, headers, str(environ.get("PATH_INFO", ""))))

    def web_api(self, name: str, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """``/api/<name>``: an injected HTTP fault, or the method's answer; recorded after it is answered."""
        raw = _read_body(environ)
        params = api_params(environ, raw)
        body = dict(params) if raw or params else {}
        if environ.get("CONTENT_TYPE", "").startswith("application/json") and raw:
            body = json.loads(raw)
        recorded = decode_json_fields(params)
        fault = self.api.faults.take(name)
        if fault is not None:
            status, retry_after = fault
            self._record(name + "#fault", recorded, body, environ)
            error = "ratelimited" if status == 429 else "fatal_error"
            code, headers, out = _json({"ok": False, "error": error})
            if status == 429:
                headers.append(("Retry-After", str(retry_after)))
            return f"{status} {HTTPStatus(status).phrase}", headers, out
        result = self.api.call(name, params, _token(environ, params))
        self._record(name, recorded, body, environ)
        return _json(result)

    def route(self, method: str, path: str, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        if path.startswith(("/outbox", "/sandbox/outbox")):
            found = outbox_route(self.outbox, method, path)
            if found is not None:
                return found
        if path.startswith("/api/"):
            return self.web_api(path[5:], environ)
        if path.startswith("/upload/") and method == "POST":
            raw = _read_body(environ)
            self.ws.upload_file(path[8:], raw)
            query = _flatten(parse_qs(environ.get("QUERY_STRING", "")))
            self._record("upload", {"file_id": path[8:], **query}, raw, environ)
            return "200 OK", [("Content-Type", "text/plain")], b"OK - " + str(len(raw)).encode()
        if path.startswith("/response/") and method == "POST":
            raw = _read_body(environ)
            try:
                data = json.loads(raw) if raw.strip().startswith(b"{") else api_params(environ, raw)
            except ValueError:
                raise HttpError("400 Bad Request", "invalid_json") from None
            answer = self.api.respond(path[10:], data)
            self._record("response_url", decode_json_fields(data), data, environ)
            return _json(answer)
        if path.startswith("/files/"):
            f = self.ws.file(path[7:].split("/", maxsplit=1)[0])
            ctype = mimetypes.guess_type(f["name"])[0] or "application/octet-stream"
            return "200 OK", [("Content-Type", ctype)], f["content"] or b""
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[8:])
        if path.startswith("/sandbox/"):
            return self.page_api(method, path[9:], environ)
        raise HttpError("404 Not Found", "not found")

    def _static(self, name: str) -> tuple[str, list[tuple[str, str]], bytes]:
        f = (STATIC / name).resolve()
        if STATIC not in f.parents or not f.is_file():
            raise HttpError("404 Not Found", "not found")
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        return "200 OK", [("Content-Type", ctype)], f.read_bytes()

    # --- the page's API --------------------------------------------------------------------------------------

    def page_api(self, method: str, name: str, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        if method == "GET" and name == "state":
            q = _flatten(parse_qs(environ.get("QUERY_STRING", "")))
            return _json(self.state(q))
        if method == "GET" and name == "users":
            self.ws.refresh_users()
            return _json({"users": [_user(u) for u in self.ws.users()]})
        if method != "POST":
            raise HttpError("405 Method Not Allowed")
        try:
            data = json.loads(_read_body(environ) or b"{}")
        except ValueError:
            raise HttpError("400 Bad Request", "invalid_json") from None
        user = str(data.get("user") or "")
        self.ws.user(user)  # unknown visitor → user_not_found
        if name == "command":
            out = self.forwarder.command(user, str(data["channel"]), str(data.get("text", "")))
        elif name == "action":
            out = self.forwarder.action(
                user,
                block_id=str(data["block_id"]),
                action_id=str(data["action_id"]),
                channel=data.get("channel"),
                message_ts=data.get("message_ts"),
                view_id=data.get("view_id"),
                selected=data.get("selected"),
                values=data.get("values") or {},
                shown=data.get("element") if isinstance(data.get("element"), dict) else None,
            )
        elif name == "submit":
            out = self.forwarder.submit(user, str(data["view_id"]), data.get("values") or {})
        elif name == "close":
            out = self.forwarder.close_view(user, str(data["view_id"]))
        elif name == "home":
            out = self.forwarder.home_opened(user)
        elif name == "say":
            self.ws.post_message(
                str(data["channel"]), text=str(data.get("text", "")), user=user, thread_ts=data.get("thread_ts")
            )
            return _json({"ok": True})
        else:
            raise HttpError("404 Not Found", "not found")
        return _json(out.as_dict())

    def state(self, q: dict[str, Any]) -> dict[str, Any]:
        """Everything the page shows for visitor ``user``: channels, the open channel (with the visitor's
        ephemerals), an open thread, their App Home and their top modal. Long-polls on ``since``."""
        since = q.get("since")
        if since is not None and str(since).lstrip("-").isdigit():
            self.ws.wait_for_change(int(since), min(float(q.get("wait") or LONG_POLL_SECONDS), LONG_POLL_SECONDS))
        version = self.ws.version
        user = str(q.get("user") or "")
        channels = [
            {"id": c["id"], "name": c["name"], "kind": c["kind"], "user_id": c["user_id"]}
            for c in self.ws.channels(("channel",))
        ]
        out: dict[str, Any] = {
            "version": version,
            "bot": _user(BOT_USER),
            "users": [_user(u) for u in self.ws.users()],
            "channels": channels,
            "user": user,
        }
        if not user:
            return out
        try:
            self.ws.user(user)
        except SlackError:
            out["user"] = ""
            return out
        dm = self.ws.open_im(user) if user != BOT_USER_ID else None
        out["dm"] = dm["id"] if dm else None
        channel = q.get("channel")
        if channel:
            try:
                msgs, _ = self.ws.history(str(channel), limit=200, viewer=user)
            except SlackError:
                msgs = []
            out["messages"] = list(reversed(msgs))
            thread = q.get("thread")
            if thread:
                try:
                    out["thread"] = self.ws.replies(str(channel), str(thread), viewer=user)
                except SlackError:
                    out["thread"] = []
        out["home"] = self.ws.home(user)
        stack = self.ws.modal_stack(user)
        out["modal"] = stack[-1] if stack else None
        out["modal_depth"] = len(stack)
        return out


def _user(u: SandboxUser) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "handle": u.handle,
        "email": u.email,
        "roles": list(u.roles),
        "is_bot": u.is_bot,
    }


def _json(data: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    return "200 OK", [("Content-Type", "application/json; charset=utf-8")], json.dumps(data).encode()


@dataclass
class SandboxServer:
    """A running sandbox: its workspace, Web API, forwarder and HTTP server."""

    workspace: Workspace
    api: WebApi
    forwarder: Forwarder
    http: RunningServer
    app: SandboxApp | None = None

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def api_url(self) -> str:
        """What billbot's ``SLACK_API_URL`` must be."""
        return self.http.url + "api/"

    @property
    def bot_token(self) -> str:
        return self.api.bot_token

    @property
    def signing_secret(self) -> str:
        return self.forwarder.signing_secret

    def set_events_url(self, url: str) -> None:
        self.forwarder.events_url = url

    def attach_outbox(self, outbox: Outbox) -> None:
        """Show ``outbox``'s mails on the Outbox page; it is stopped with the sandbox."""
        if self.app is not None:
            self.app.outbox = outbox

    def stop(self) -> None:
        self.http.stop()
        outbox = self.app.outbox if self.app is not None else None
        if outbox is not None:
            outbox.stop()
        self.forwarder.shutdown()
        self.workspace.close()


def start_sandbox(
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    db_path: str | Path = ":memory:",
    events_url: str = "",
    signing_secret: str | None = None,
    bot_token: str | None = None,
    users_provider: Callable[[], Iterable[SandboxUser]] | None = None,
    workspace: Workspace | None = None,
    deterministic: bool = False,
    open_ids: bool = False,
    team_id: str = TEAM_ID,
    keep_calls: int | None = KEEP_CALLS,
) -> SandboxServer:
    """Start a sandbox on ``host:port`` (0 = a free port). Secrets are generated when not given; the caller
    gives billbot ``bot_token``, ``signing_secret`` and ``api_url`` of the returned server.

    ``deterministic`` and ``open_ids`` make it the test suite's Slack stand-in (see :mod:`bot.sandbox.workspace`);
    with :attr:`WebApi.log` and :attr:`WebApi.faults` tests read what billbot called and inject failures
    (``keep_calls=None`` keeps every call; by default only the last :data:`KEEP_CALLS`)."""
    ws = workspace or Workspace(
        db_path, users_provider=users_provider, deterministic=deterministic, open_ids=open_ids, team_id=team_id
    )
    api = WebApi(ws, bot_token=bot_token or new_bot_token(), keep_calls=keep_calls)
    fwd = Forwarder(ws, api, events_url=events_url, signing_secret=signing_secret or new_secret(), public_url="")
    app = SandboxApp(ws, api, fwd)
    http = serve_in_thread(app, host=host, port=port, name="sandbox")
    api.base_url = http.url
    fwd.public_url = http.url
    log.info("sandbox workspace at %s", http.url)
    return SandboxServer(workspace=ws, api=api, forwarder=fwd, http=http, app=app)
