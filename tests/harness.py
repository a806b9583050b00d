"""Reusable pieces for driving billbot's real Slack endpoint over HTTP, as Slack does.

- :func:`sign` — Slack's request signature: ``v0=`` + HMAC-SHA256(secret, ``v0:{ts}:{body}``).
- :class:`AppServer` — billbot's WSGI app (``bot.app.create_wsgi``) on a threaded stdlib server,
  127.0.0.1, port 0; ``wait_idle()`` waits until the work after each ack is finished.
- :class:`SlackUser` — sends signed slash commands, button clicks, modal submissions and events.

The same flows run against any Web API fake (tests/fakes/slack_api.py, or the sandbox workspace):
point ``SLACK_API_URL`` at it before building the app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx


def sign(secret: str, body: str, ts: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a request body."""
    ts = int(time.time()) if ts is None else ts
    base = f"v0:{ts}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


class AppServer:
    """Serve a WSGI app on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, wsgi_app: Any) -> None:
        from bot.app import make_threaded_server

        self.wsgi = wsgi_app
        self.server = make_threaded_server("127.0.0.1", 0, wsgi_app)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="billbot-app",
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def events_url(self) -> str:
        return self.url + "/slack/events"

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the work after every ack has finished: Bolt's listener threads and the jobs
        they submitted (decisions; with ``BILLBOT_JOBS=inline`` those run inside the listener)."""
        from bot.app import wait_until_idle

        if not wait_until_idle(getattr(self.wsgi, "bolt_app", None), timeout):
            raise AssertionError("the app did not become idle")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Response:
    status: int
    text: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


class SlackUser:
    """One Slack user sending signed requests to the app (``user`` = Slack id)."""

    def __init__(self, app_url: str, signing_secret: str, user: str, *, team_id: str = "T0BILLBOT",
                 response_url: str | None = None) -> None:
        self.events_url = app_url.rstrip("/") + "/slack/events" if not app_url.endswith("/slack/events") else app_url
        self.secret = signing_secret
        self.user = user
        self.team_id = team_id
        self.response_url = response_url or "http://127.0.0.1:9/response"
        self._http = httpx.Client(timeout=10)
        self._trigger = 0

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ raw

    def post(self, body: str, content_type: str, *, ts: int | None = None, secret: str | None = None,
             headers: dict[str, str] | None = None) -> Response:
        h = {"Content-Type": content_type, **sign(secret or self.secret, body, ts), **(headers or {})}
        r = self._http.post(self.events_url, content=body.encode(), headers=h)
        return Response(r.status_code, r.text, dict(r.headers))

    def _trigger_id(self) -> str:
        self._trigger += 1
        return f"{self._trigger}.{int(time.time())}.trigger"

    # ------------------------------------------------------------------ Slack payloads

    def command(self, text: str, *, channel: str = "CBILLING", **kw: Any) -> Response:
        body = urlencode({
            "token": "legacy", "team_id": self.team_id, "team_domain": "billbot", "channel_id": channel,
            "channel_name": "billing", "user_id": self.user, "user_name": self.user.lower(), "command": "/billing",
            "text": text, "api_app_id": "A0BILLBOT", "response_url": self.response_url,
            "trigger_id": self._trigger_id(),
        })
        return self.post(body, "application/x-www-form-urlencoded", **kw)

    def interactive(self, payload: dict[str, Any], **kw: Any) -> Response:
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body, "application/x-www-form-urlencoded", **kw)

    def click(self, action_id: str, value: str, *, channel: str | None = None, message_ts: str | None = None,
              from_home: bool = False, **kw: Any) -> Response:
        """A ``block_actions`` click on a button of a channel message (or of the App Home)."""
        payload: dict[str, Any] = {
            "type": "block_actions", "api_app_id": "A0BILLBOT", "token": "legacy",
            "team": {"id": self.team_id, "domain": "billbot"},
            "user": {"id": self.user, "username": self.user.lower(), "team_id": self.team_id},
            "trigger_id": self._trigger_id(), "response_url": self.response_url,
            "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value,
                         "action_ts": f"{time.time():.6f}"}],
        }
        if from_home:
            payload["container"] = {"type": "view", "view_id": "VHOME"}
            payload["view"] = {"id": "VHOME", "type": "home"}
        else:
            payload["container"] = {"type": "message", "message_ts": message_ts, "channel_id": channel,
                                    "is_ephemeral": False}
            payload["channel"] = {"id": channel, "name": "billing-exceptions"}
            payload["message"] = {"ts": message_ts, "type": "message"}
        return self.interactive(payload, **kw)

    def submit_view(self, view: dict[str, Any], values: dict[str, dict[str, Any]], **kw: Any) -> Response:
        """A ``view_submission`` of a modal billbot opened (``view`` as sent to ``views.open``); a value
        is a text input's text, or a dict taken as the element's whole state (e.g. checkboxes)."""
        state = {"values": {block: {action: v if isinstance(v, dict) else {"type": "plain_text_input", "value": v}
                                    for action, v in actions.items()} for block, actions in values.items()}}
        payload = {
            "type": "view_submission", "team": {"id": self.team_id}, "api_app_id": "A0BILLBOT",
            "user": {"id": self.user, "username": self.user.lower(), "team_id": self.team_id},
            "trigger_id": self._trigger_id(),
            "view": {**view, "id": "VMODAL", "state": state, "type": "modal"},
        }
        return self.interactive(payload, **kw)

    def event(self, event: dict[str, Any], **kw: Any) -> Response:
        body = json.dumps({"type": "event_callback", "team_id": self.team_id, "api_app_id": "A0BILLBOT",
                           "event": event, "event_id": f"Ev{int(time.time() * 1e6)}",
                           "event_time": int(time.time())})
        return self.post(body, "application/json", **kw)

    def open_home(self, **kw: Any) -> Response:
        return self.event({"type": "app_home_opened", "user": self.user, "channel": "D" + self.user[1:],
                           "tab": "home", "event_ts": f"{time.time():.6f}"}, **kw)


def signed_user(users: dict[str, SlackUser], server: AppServer, api: Any, secret: str, slack_id: str) -> SlackUser:
    """``slack_id``'s signed client for ``server`` (made once, kept in ``users``), its response URL on the
    fake Web API ``api``."""
    if slack_id not in users:
        users[slack_id] = SlackUser(server.url, secret, slack_id, response_url=api.response_url(slack_id))
    return users[slack_id]


def shut_down(server: AppServer, users: dict[str, SlackUser]) -> None:
    """End a test's app: let the work after its acks finish, stop the server, close the users' clients,
    forget the Slack wiring and the cached Web API client."""
    from bot import runtime
    from bot.slack.client import _client

    server.wait_idle()
    server.stop()
    for u in users.values():
        u.close()
    runtime.reset()
    _client.cache_clear()


def stop_process(p: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM a process started by a test (a worker, a server) and wait for it; killed if it lingers."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
