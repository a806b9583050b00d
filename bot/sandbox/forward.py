"""Clicks, modal submissions and ``/billing`` commands from the sandbox page → **signed** Slack payloads posted
to billbot's real ``/slack/events`` endpoint, exactly as Slack sends them:

- slash commands: a form body (``command``, ``text``, ``user_id``, ``channel_id``, ``response_url``, ``trigger_id``…);
- ``block_actions``: ``payload=<json>`` with ``actions``, ``container`` (``message_ts``/``view_id``), ``message``
  or ``view``, ``state.values``, ``trigger_id`` and, for messages, ``response_url``;
- ``view_submission`` / ``view_closed``: ``payload=<json>`` with the stored ``view`` (``callback_id``,
  ``private_metadata``, ``hash``) and ``view.state.values`` built from what the visitor typed.

Each request carries ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` (``v0=`` HMAC-SHA256 of
``v0:{timestamp}:{body}`` with the session's signing secret), so Bolt's signature check runs as in production.
Billbot's synchronous answers are applied the way Slack applies them (modal ``response_action``s, a command's
immediate reply).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.sandbox.webapi import WebApi
from bot.sandbox.workspace import APP_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID, SlackError, Workspace

SLACK_ACK_SECONDS = 3.0  # Slack shows the user an error when the app takes longer to answer


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request signature headers for ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


# --- payload builders (pure) ---------------------------------------------------------------------------------


def _user_obj(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "username": user["name"], "name": user["name"], "team_id": TEAM_ID}


def slash_command_form(
    *, user: dict[str, Any], channel: dict[str, Any], command: str, text: str, response_url: str, trigger_id: str
) -> dict[str, str]:
    return {
        "token": "sandbox-verification-token",
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel["id"],
        "channel_name": "directmessage" if channel.get("kind") == "im" else channel["name"],
        "user_id": user["id"],
        "user_name": user["name"],
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def find_element(blocks: list[dict[str, Any]], block_id: str, action_id: str) -> dict[str, Any] | None:
    """The interactive element ``action_id`` of block ``block_id`` (actions, section accessory, input)."""
    for b in blocks:
        if b.get("block_id") != block_id:
            continue
        candidates = list(b.get("elements", [])) + [b.get("accessory") or {}, b.get("element") or {}]
        for el in candidates:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return el
    return None


def _options(el: dict[str, Any]) -> list[dict[str, Any]]:
    opts = list(el.get("options", []))
    for group in el.get("option_groups", []):
        opts += group.get("options", [])
    return opts


def element_state(el: dict[str, Any], raw: Any) -> dict[str, Any]:
    """The ``state.values`` entry of one input element, from what the page sent (a string or a list)."""
    kind = el.get("type", "plain_text_input")
    out: dict[str, Any] = {"type": kind}
    values = raw if isinstance(raw, list) else ([] if raw in (None, "") else [raw])
    by_value = {o.get("value"): o for o in _options(el)}
    if kind in ("static_select", "radio_buttons", "external_select"):
        out["selected_option"] = by_value.get(values[0]) if values else None
    elif kind in ("checkboxes", "multi_static_select", "multi_external_select"):
        out["selected_options"] = [by_value[v] for v in values if v in by_value]
    elif kind == "datepicker":
        out["selected_date"] = values[0] if values else None
    elif kind == "timepicker":
        out["selected_time"] = values[0] if values else None
    elif kind == "users_select":
        out["selected_user"] = values[0] if values else None
    elif kind == "multi_users_select":
        out["selected_users"] = values
    elif kind in ("conversations_select", "channels_select"):
        out["selected_conversation" if kind == "conversations_select" else "selected_channel"] = (
            values[0] if values else None
        )
    else:  # plain_text_input, number_input, email/url inputs
        out["value"] = values[0] if values else None
    return out


def state_values(blocks: list[dict[str, Any]], raw: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``state.values`` for every input element in ``blocks``; ``raw`` is ``{block_id: {action_id: value}}``."""
    values: dict[str, Any] = {}
    for b in blocks:
        bid = b.get("block_id")
        els = [b["element"]] if b.get("type") == "input" and b.get("element") else []
        if b.get("type") == "actions":
            els = [e for e in b.get("elements", []) if e.get("type") != "button"]
        for el in els:
            aid = el.get("action_id")
            if bid and aid:
                got = raw.get(bid, {}).get(aid)
                if got is None and el.get("initial_value") is not None:
                    got = el["initial_value"]
                values.setdefault(bid, {})[aid] = element_state(el, got)
    return values


def action_obj(el: dict[str, Any], block_id: str, selected: Any = None) -> dict[str, Any]:
    act: dict[str, Any] = {
        "type": el.get("type", "button"),
        "action_id": el.get("action_id"),
        "block_id": block_id,
        "action_ts": f"{time.time():.6f}",
    }
    if act["type"] == "button":
        act["text"] = el.get("text")
        if "value" in el:
            act["value"] = el["value"]
        if el.get("style"):
            act["style"] = el["style"]
    elif act["type"] == "overflow":
        act["selected_option"] = {o.get("value"): o for o in el.get("options", [])}.get(selected)
    else:
        act.update({k: v for k, v in element_state(el, selected).items() if k != "type"})
    return act


# --- the forwarder -------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one forwarded request, for the page."""

    ok: bool
    status: int = 0
    elapsed_ms: float = 0.0
    message: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "message": self.message,
            "errors": self.errors,
        }


Sender = Callable[[bytes, dict[str, str]], tuple[int, bytes]]


class Forwarder:
    """Builds, signs and posts Slack payloads for the visitor's actions; applies billbot's synchronous answers."""

    def __init__(
        self,
        workspace: Workspace,
        api: WebApi,
        *,
        events_url: str,
        signing_secret: str,
        public_url: str,
        timeout: float = 15.0,
        sender: Sender | None = None,
    ) -> None:
        self.ws = workspace
        self.api = api
        self.events_url = events_url
        self.signing_secret = signing_secret
        self.public_url = public_url  # "http://127.0.0.1:PORT/" of the sandbox (for response URLs)
        self.timeout = timeout
        self._sender = sender or self._http_send
        self._client: httpx.Client | None = None

    def shutdown(self) -> None:
        if self._client is not None:
            self._client.close()

    def _http_send(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, trust_env=False)
        r = self._client.post(self.events_url, content=body, headers=headers)
        return r.status_code, r.content

    def post(self, body: bytes, content_type: str) -> tuple[int, bytes, float]:
        headers = {"Content-Type": content_type, **sign(self.signing_secret, body)}
        started = time.monotonic()
        try:
            status, content = self._sender(body, headers)
        except httpx.HTTPError as e:
            return 0, f"billbot is not reachable: {e}".encode(), (time.monotonic() - started) * 1000
        return status, content, (time.monotonic() - started) * 1000

    def post_payload(self, payload: dict[str, Any]) -> tuple[int, bytes, float]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded")

    def _response_url(self, kind: str, **kw: Any) -> str:
        return f"{self.public_url}response/{self.ws.new_response_url_token(kind, **kw)}"

    def _user(self, user_id: str) -> dict[str, Any]:
        u = self.ws.user(user_id)
        return {"id": u.id, "name": u.handle}

    @staticmethod
    def _failed(status: int, content: bytes, elapsed: float) -> Outcome:
        text = content.decode(errors="replace")[:300] if status == 0 else f"billbot answered HTTP {status}"
        return Outcome(ok=False, status=status, elapsed_ms=elapsed, message=text)

    @staticmethod
    def _slow(out: Outcome) -> Outcome:
        if out.ok and out.elapsed_ms > SLACK_ACK_SECONDS * 1000:
            out.message = (out.message + " " if out.message else "") + (
                f"(billbot took {out.elapsed_ms / 1000:.1f} s to acknowledge; Slack gives up after 3 s)"
            )
        return out

    # --- slash command -------------------------------------------------------------------------------------

    def command(self, user_id: str, channel_ref: str, line: str) -> Outcome:
        """``/billing run 2026-02`` typed by ``user_id`` in ``channel_ref``."""
        line = line.strip()
        if not line.startswith("/"):
            raise SlackError("not_a_command")
        command, _, text = line.partition(" ")
        ch = self.ws.channel(channel_ref, create=False)
        user = self._user(user_id)
        form = slash_command_form(
            user=user,
            channel=ch,
            command=command,
            text=text.strip(),
            response_url=self._response_url("command", user=user_id, channel=ch["id"]),
            trigger_id=self.ws.new_trigger(user_id),
        )
        status, content, elapsed = self.post(urlencode(form).encode(), "application/x-www-form-urlencoded")
        if status != 200:
            out = self._failed(status, content, elapsed)
            self.ws.post_ephemeral(
                ch["id"],
                user_id,
                text=f'{command} failed with the error "dispatch_failed" ({out.message})',
                subtype="slackbot",
                from_user="USLACKBOT",
            )
            return out
        self._apply_message_ack(content, ch["id"], user_id)
        return self._slow(Outcome(ok=True, status=status, elapsed_ms=elapsed))

    def _apply_message_ack(self, content: bytes, channel: str, user_id: str) -> None:
        """A command's immediate answer: JSON message (``response_type``) or plain text, shown like Slack does."""
        if not content.strip():
            return
        try:
            body = json.loads(content)
        except ValueError:
            body = {"text": content.decode(errors="replace")}
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return
        if body.get("response_type") == "in_channel":
            self.ws.post_message(channel, text=body.get("text") or "", blocks=body.get("blocks"))
        else:
            self.ws.post_ephemeral(channel, user_id, text=body.get("text") or "", blocks=body.get("blocks"))

    # --- Events API ----------------------------------------------------------------------------------------

    def event(self, event: dict[str, Any]) -> Outcome:
        """An Events API callback (JSON body), e.g. ``app_home_opened`` when the visitor opens the App Home."""
        now = time.time()
        body = {
            "token": "sandbox-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": {**event, "event_ts": f"{now:.6f}"},
            "type": "event_callback",
            "event_id": "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(now),
            "authorizations": [
                {"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True, "is_enterprise_install": False}
            ],
            "is_ext_shared_channel": False,
        }
        status, content, elapsed = self.post(json.dumps(body).encode(), "application/json")
        if status != 200:
            return self._failed(status, content, elapsed)
        return self._slow(Outcome(ok=True, status=status, elapsed_ms=elapsed))

    def home_opened(self, user_id: str) -> Outcome:
        dm = self.ws.open_im(user_id)
        event: dict[str, Any] = {"type": "app_home_opened", "user": user_id, "channel": dm["id"], "tab": "home"}
        home = self.ws.home(user_id)
        if home is not None:
            event["view"] = home
        return self.event(event)

    # --- block_actions -------------------------------------------------------------------------------------

    def action(
        self,
        user_id: str,
        *,
        block_id: str,
        action_id: str,
        channel: str | None = None,
        message_ts: str | None = None,
        view_id: str | None = None,
        selected: Any = None,
        values: dict[str, dict[str, Any]] | None = None,
        shown: dict[str, Any] | None = None,
    ) -> Outcome:
        """A click (or selection) on an element of a message (``channel`` + ``message_ts``) or a view.

        ``shown`` is the element as the page rendered it. Slack delivers a click on what its client shows even
        when the message changed since (decided by someone else, refreshed): the app then answers — billbot with
        "Already approved by …". So an element the stored message no longer has is taken as ``shown``, or by its
        ``action_id`` under a new block id; only a click on nothing known is ``action_not_found``."""
        user = self._user(user_id)
        trigger = self.ws.new_trigger(user_id)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": _user_obj(user),
            "api_app_id": APP_ID,
            "token": "sandbox-verification-token",
            "trigger_id": trigger,
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
        }
        if view_id:
            view = self.ws.view(view_id)
            if self.ws.view_owner(view_id) != user_id:
                raise SlackError("not_your_view")
            view["state"]["values"] = state_values(view["blocks"], values or {})
            blocks = view["blocks"]
            payload.update(container={"type": "view", "view_id": view_id}, view=view)
        elif channel and message_ts:
            ch = self.ws.channel(channel, create=False)
            eph = self.ws.ephemeral(message_ts)
            msg = eph if eph is not None else self.ws.message(ch["id"], message_ts)
            if eph is not None and eph.get("ephemeral_for") != user_id:
                raise SlackError("message_not_found")
            blocks = msg.get("blocks") or []
            payload.update(
                container={
                    "type": "message",
                    "message_ts": message_ts,
                    "channel_id": ch["id"],
                    "is_ephemeral": eph is not None,
                    **({"thread_ts": msg["thread_ts"]} if msg.get("thread_ts") else {}),
                },
                channel={"id": ch["id"], "name": ch["name"] if ch["kind"] != "im" else "directmessage"},
                state={"values": state_values(blocks, values or {})},
                response_url=self._response_url(
                    "message", user=user_id, channel=ch["id"], message_ts=message_ts, ephemeral=eph is not None
                ),
            )
            if eph is None:
                payload["message"] = {k: v for k, v in msg.items() if k != "ephemeral_for"}
        else:
            raise SlackError("invalid_arguments")
        el = find_element(blocks, block_id, action_id) or _stale_element(blocks, action_id, shown)
        if el is None:
            raise SlackError("action_not_found")
        payload["actions"] = [action_obj(el, block_id, selected)]
        status, content, elapsed = self.post_payload(payload)
        if status != 200:
            return self._failed(status, content, elapsed)
        return self._slow(Outcome(ok=True, status=status, elapsed_ms=elapsed))

    # --- view_submission / view_closed ---------------------------------------------------------------------

    def submit(self, user_id: str, view_id: str, values: dict[str, dict[str, Any]]) -> Outcome:
        """The visitor pressed a modal's submit button; apply billbot's ``response_action``."""
        if self.ws.view_owner(view_id) != user_id:
            raise SlackError("not_your_view")
        view = self.ws.view(view_id)
        view["state"]["values"] = state_values(view["blocks"], values)
        # Slack checks required inputs itself before the app sees anything
        missing = {
            b["block_id"]: "Please complete this required field."
            for b in view["blocks"]
            if b.get("type") == "input"
            and not b.get("optional")
            and _empty(view["state"]["values"].get(b["block_id"], {}))
        }
        if missing:
            return Outcome(ok=False, status=0, message="required fields are empty", errors=missing)
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": _user_obj(self._user(user_id)),
            "api_app_id": APP_ID,
            "token": "sandbox-verification-token",
            "trigger_id": self.ws.new_trigger(user_id),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        status, content, elapsed = self.post_payload(payload)
        if status != 200:
            return self._failed(status, content, elapsed)
        body: dict[str, Any] = {}
        if content.strip():
            try:
                parsed = json.loads(content)
                body = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                body = {}
        action = body.get("response_action")
        if action == "errors":
            errors = {str(k): str(v) for k, v in (body.get("errors") or {}).items()}
            return Outcome(
                ok=False, status=status, elapsed_ms=elapsed, message="billbot refused the input", errors=errors
            )
        if action == "update":
            self.ws.update_view(body["view"], view_id=view_id)
        elif action == "push":
            self.ws.push_modal(user_id, body["view"])
        elif action == "clear":
            self.ws.close_modal(view_id, all_=True)
        else:
            self.ws.close_modal(view_id)
        return self._slow(Outcome(ok=True, status=status, elapsed_ms=elapsed))

    def close_view(self, user_id: str, view_id: str) -> Outcome:
        """The visitor closed a modal; billbot hears of it only if the view asked (``notify_on_close``)."""
        if self.ws.view_owner(view_id) != user_id:
            raise SlackError("not_your_view")
        view = self.ws.view(view_id)
        self.ws.close_modal(view_id)
        if not view.get("notify_on_close"):
            return Outcome(ok=True)
        payload = {
            "type": "view_closed",
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": _user_obj(self._user(user_id)),
            "api_app_id": APP_ID,
            "token": "sandbox-verification-token",
            "view": view,
            "is_cleared": False,
        }
        status, content, elapsed = self.post_payload(payload)
        return Outcome(ok=status == 200, status=status, elapsed_ms=elapsed)


def _stale_element(blocks: list[dict[str, Any]], action_id: str, shown: dict[str, Any] | None) -> dict[str, Any] | None:
    """The element a click on an outdated rendering meant: as the page showed it, else the one with the same
    ``action_id`` (block ids the sandbox generated change with every ``chat.update``)."""
    if isinstance(shown, dict) and shown.get("action_id") == action_id and isinstance(shown.get("type"), str):
        return shown
    for b in blocks:
        candidates = list(b.get("elements", [])) + [b.get("accessory") or {}, b.get("element") or {}]
        for el in candidates:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return el
    return None


def _empty(entry: dict[str, Any]) -> bool:
    if not entry:
        return True
    for v in entry.values():
        for key, got in v.items():
            if key != "type" and got not in (None, "", []):
                return False
    return True


def new_secret() -> str:
    """A signing secret for one sandbox session (Slack's are 32 hex characters)."""
    return secrets.token_hex(16)


def new_bot_token() -> str:
    return f"xoxb-sandbox-{secrets.randbelow(10**12)}-{secrets.token_hex(12)}"
