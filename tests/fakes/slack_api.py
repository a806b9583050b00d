"""A local fake of the Slack Web API, at its HTTP boundary (like bolt-python's mock web API server).

billbot's real ``WebClient`` talks to it through ``base_url`` — the same code path as real Slack.
It records every call (method, query params, JSON or form body), keeps the messages it was sent
(so ``chat.update`` is checked against a real ``ts``), answers the methods billbot uses, serves
``files_upload_v2``'s three-step upload and ``response_url`` POSTs, can inject 429s with
``Retry-After`` (``fail_next``) and Slack errors (``fail[method] = "error_code"``, until removed).
Channel names (``billing-managers``) are answered with a channel ID, as Slack does. Blocks and views
are checked with the sandbox's Block Kit validator (:mod:`bot.sandbox.blockkit`), as Slack checks them:
``invalid_blocks`` / ``invalid_arguments`` with the problems in ``response_metadata``.

    with FakeSlackAPI(users={"U1": {"name": "ann", "real_name": "Ann", "email": "ann@x"}}) as api:
        client = make_client("xoxb-test", api.url)
        ...
        api.wait_for("chat.postMessage")
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from bot.sandbox.blockkit import validate_blocks, validate_view

JSON_FIELDS = ("blocks", "view", "attachments", "files", "metadata")
MAX_BLOCKS = 50


@dataclass
class Call:
    method: str  # "chat.postMessage", "response_url", "upload"
    params: dict[str, Any]  # query string + body merged (JSON-ish fields decoded)
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


def _flatten(qs: dict[str, list[str]]) -> dict[str, Any]:
    return {k: v[0] if len(v) == 1 else v for k, v in qs.items()}


def _decode_json_fields(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for k in JSON_FIELDS:
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                pass
    return out


class FakeSlackAPI:
    def __init__(self, users: dict[str, dict[str, Any]] | None = None, *, team_id: str = "T0BILLBOT") -> None:
        self.users: dict[str, dict[str, Any]] = dict(users or {})
        self.team_id = team_id
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self._faults: dict[str, list[tuple[int, int]]] = {}
        self.fail: dict[str, str] = {}  # method → Slack error code, answered (and recorded) until removed
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.handlers: dict[str, Callable[[Call], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._ephemeral,
            "chat.delete": self._delete,
            "chat.getPermalink": self._permalink,
            "views.open": self._view,
            "views.update": self._view,
            "views.push": self._view,
            "views.publish": self._view,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlackAPI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                fake._handle(self, self.rfile.read(length) if length else b"")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-slack",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL for ``WebClient(base_url=…)`` / ``SLACK_API_URL``."""
        return f"{self.base}/api/"

    def response_url(self, name: str = "r") -> str:
        return f"{self.base}/response/{name}"

    # ------------------------------------------------------------------ test controls

    def fail_next(self, method: str, *, status: int = 429, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` get ``status`` (429 with ``Retry-After``)."""
        with self._lock:
            self._faults.setdefault(method, []).extend([(status, retry_after)] * times)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, n: int = 1, *, timeout: float = 10.0,
                 where: Callable[[Call], bool] | None = None) -> list[Call]:
        """Wait until at least ``n`` calls of ``method`` (matching ``where``) were recorded."""
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

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self._lock:
            return self.messages[(channel, ts)]

    # ------------------------------------------------------------------ HTTP

    def _handle(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        url = urlparse(h.path)
        query = _flatten(parse_qs(url.query))
        ctype = (h.headers.get("content-type") or "").split(";")[0].strip()
        headers = {k.lower(): v for k, v in h.headers.items()}
        if url.path.startswith("/upload/"):
            call = Call("upload", {"file_id": url.path.rsplit("/", 1)[-1], **query}, raw, headers, url.path)
            self._record(call)
            with self._lock:
                self.uploads[call.params["file_id"]] = raw
            return self._send(h, 200, {"ok": True}, text="OK - " + str(len(raw)))
        body: Any
        if ctype == "application/json":
            body = json.loads(raw or b"{}")
        elif raw:
            body = _flatten(parse_qs(raw.decode("utf-8"), keep_blank_values=True))
        else:
            body = {}
        params = _decode_json_fields({**query, **(body if isinstance(body, dict) else {})})
        if url.path.startswith("/response/"):
            call = Call("response_url", params, body, headers, url.path)
            self._record(call)
            return self._send(h, 200, {"ok": True}, text="ok")
        if not url.path.startswith("/api/"):
            return self._send(h, 404, {"ok": False, "error": "unknown_path"})
        method = url.path[len("/api/"):]
        call = Call(method, params, body, headers, url.path)
        with self._lock:
            fault = self._faults.get(method, []).pop(0) if self._faults.get(method) else None
        if fault is not None:
            status, retry_after = fault
            self._record(Call(method + "#fault", params, body, headers, url.path))
            return self._send(h, status, {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"},
                              extra={"Retry-After": str(retry_after)} if status == 429 else None)
        with self._lock:
            error = self.fail.get(method)
        handler = self.handlers.get(method)
        if error is not None:
            result = {"ok": False, "error": error}
        else:
            result = handler(call) if handler is not None else {"ok": True}
        self._record(call)
        return self._send(h, 200, result)

    def _record(self, call: Call) -> None:
        with self._cv:
            self.calls.append(call)
            self._cv.notify_all()

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], *, text: str | None = None,
              extra: dict[str, str] | None = None) -> None:
        data = (text if text is not None else json.dumps(payload)).encode()
        h.send_response(status)
        h.send_header("content-type", "text/plain" if text is not None else "application/json; charset=utf-8")
        h.send_header("content-length", str(len(data)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    # ------------------------------------------------------------------ methods

    def _ts(self) -> str:
        n = next(self._seq)
        return f"{1_700_000_000 + n}.{n:06d}"

    def _auth_test(self, call: Call) -> dict[str, Any]:
        return {"ok": True, "url": "https://billbot-test.slack.com/", "team": "billbot test", "user": "billbot",
                "team_id": self.team_id, "user_id": "UBILLBOT", "bot_id": "BBILLBOT"}

    @staticmethod
    def _invalid_blocks(call: Call) -> dict[str, Any] | None:
        blocks = call.params.get("blocks")
        if blocks is None:
            return None
        if isinstance(blocks, list) and len(blocks) > MAX_BLOCKS:
            return {"ok": False, "error": "invalid_blocks"}
        problems = validate_blocks(blocks)
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems,
                    "response_metadata": {"messages": problems}}
        return None

    def _post_message(self, call: Call) -> dict[str, Any]:
        channel = str(call.params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if (invalid := self._invalid_blocks(call)) is not None:
            return invalid
        if channel.startswith("U"):  # a DM to a user lands in their IM channel
            channel = "D" + channel[1:]
        elif not (channel[:1] in "CDG" and channel.isupper()):  # a channel name: Slack answers with its ID
            channel = "C" + channel.upper().replace("-", "")[:10]
        ts = self._ts()
        msg = {"ts": ts, "channel": channel, "text": call.params.get("text"), "blocks": call.params.get("blocks"),
               "thread_ts": call.params.get("thread_ts"), "replies": []}
        with self._lock:
            self.messages[(channel, ts)] = msg
            parent = self.messages.get((channel, str(call.params.get("thread_ts"))))
            if parent is not None:
                parent["replies"].append(msg)
        return {"ok": True, "channel": channel, "ts": ts, "message": {k: msg[k] for k in ("ts", "text", "blocks")}}

    def _update(self, call: Call) -> dict[str, Any]:
        channel, ts = str(call.params.get("channel")), str(call.params.get("ts"))
        if (invalid := self._invalid_blocks(call)) is not None:
            return invalid
        with self._lock:
            msg = self.messages.get((channel, ts))
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            msg.update(text=call.params.get("text"), blocks=call.params.get("blocks"))
        return {"ok": True, "channel": channel, "ts": ts, "text": call.params.get("text")}

    def _delete(self, call: Call) -> dict[str, Any]:
        with self._lock:
            self.messages.pop((str(call.params.get("channel")), str(call.params.get("ts"))), None)
        return {"ok": True}

    def _permalink(self, call: Call) -> dict[str, Any]:
        channel, ts = call.params.get("channel"), str(call.params.get("message_ts"))
        return {"ok": True, "channel": channel,
                "permalink": f"https://billbot-test.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def _ephemeral(self, call: Call) -> dict[str, Any]:
        if (invalid := self._invalid_blocks(call)) is not None:
            return invalid
        return {"ok": True, "message_ts": self._ts()}

    def _view(self, call: Call) -> dict[str, Any]:
        view = call.params.get("view") or {}
        if isinstance(view, dict) and len(view.get("blocks") or []) > 100:
            return {"ok": False, "error": "invalid_arguments"}
        problems = validate_view(view)
        if problems:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
        view_id = str(call.params.get("view_id") or f"V{next(self._seq):08d}")
        stored = {**(view if isinstance(view, dict) else {}), "id": view_id}
        with self._lock:
            self.views[view_id] = stored
        return {"ok": True, "view": stored}

    def _users_info(self, call: Call) -> dict[str, Any]:
        uid = str(call.params.get("user"))
        u = self.users.get(uid)
        if u is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {
            "id": uid, "name": u.get("name", uid.lower()), "real_name": u.get("real_name", u.get("name", uid)),
            "tz": u.get("tz", "Europe/Berlin"),
            "profile": {"real_name": u.get("real_name", u.get("name", uid)), "email": u.get("email"),
                        "display_name": u.get("name", uid)},
        }}

    def _conversations_open(self, call: Call) -> dict[str, Any]:
        users = str(call.params.get("users") or "")
        return {"ok": True, "channel": {"id": "D" + users.split(",", maxsplit=1)[0][1:]}}

    def _conversations_info(self, call: Call) -> dict[str, Any]:
        return {"ok": True, "channel": {"id": call.params.get("channel"), "name": call.params.get("channel")}}

    def _upload_url(self, call: Call) -> dict[str, Any]:
        file_id = f"F{next(self._seq):08d}"
        return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, call: Call) -> dict[str, Any]:
        files = call.params.get("files") or []
        return {"ok": True, "files": [{"id": f.get("id"), "title": f.get("title")} for f in files]}
