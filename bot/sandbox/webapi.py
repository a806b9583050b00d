"""The subset of the Slack Web API billbot calls, answered from a :class:`~bot.sandbox.workspace.Workspace`.

Requests arrive as slack_sdk sends them (query string, form body or JSON body; ``Authorization: Bearer``),
answers are Slack's ``{"ok": true, …}`` / ``{"ok": false, "error": "…"}`` with HTTP 200, so billbot's
``WebClient`` cannot tell the sandbox from Slack. ``response_url`` posts are handled here too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bot.sandbox.blockkit import validate_blocks, validate_view
from bot.sandbox.calls import CallLog, Faults
from bot.sandbox.workspace import (
    APP_ID,
    BOT_ID,
    BOT_USER,
    BOT_USER_ID,
    TEAM_DOMAIN,
    SlackError,
    Workspace,
)

MAX_TEXT = 40_000

Handler = Callable[["WebApi", dict[str, Any]], dict[str, Any]]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = fn
        return fn

    return register


def _json_arg(params: dict[str, Any], key: str) -> Any:
    """Block Kit arguments come as JSON values (JSON body) or JSON strings (form body)."""
    v = params.get(key)
    if isinstance(v, str) and v.strip():
        try:
            return json.loads(v)
        except ValueError:
            raise SlackError("invalid_arguments", response_metadata={"messages": [f"{key}: not JSON"]}) from None
    return None if v is None or v == "" else v


def _bool(v: Any) -> bool:
    return v is True or str(v).lower() in ("1", "true", "yes")


def _required(params: dict[str, Any], key: str, error: str | None = None) -> str:
    v = params.get(key)
    if v in (None, ""):
        raise SlackError(error or "invalid_arguments", response_metadata={"messages": [f"missing {key}"]})
    return str(v)


def _check_blocks(blocks: Any) -> None:
    if blocks is None:
        return
    problems = validate_blocks(blocks)
    if problems:
        raise SlackError("invalid_blocks", errors=problems, response_metadata={"messages": problems})


def _message_content(params: dict[str, Any], *, require: bool = True) -> tuple[str, Any, Any]:
    text = params.get("text") or ""
    blocks = _json_arg(params, "blocks")
    attachments = _json_arg(params, "attachments")
    if require and not text and not blocks and not attachments:
        raise SlackError("no_text")
    if len(text) > MAX_TEXT:
        raise SlackError("msg_too_long")
    _check_blocks(blocks)
    return str(text), blocks, attachments


class WebApi:
    """Dispatches ``/api/<method>`` calls. ``bot_token`` is the only accepted token (generated per session) —
    any token is, when the workspace takes caller-chosen ids (``open_ids``, the test suite's stand-in).

    :attr:`log` records every request (the server fills it), :attr:`faults` holds injected failures."""

    def __init__(
        self, workspace: Workspace, *, bot_token: str, base_url: str = "", keep_calls: int | None = None
    ) -> None:
        self.ws = workspace
        self.bot_token = bot_token
        self.base_url = base_url  # "http://127.0.0.1:PORT/" — for upload URLs and file links
        self.log = CallLog(keep_calls)
        self.faults = Faults()
        self.usergroups: dict[str, list[str]] = {}  # Slack user group id (S…) → its members' user ids

    def call(self, name: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        fn = METHODS.get(name)
        if fn is None:
            return {"ok": False, "error": "unknown_method"}
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.bot_token and not self.ws.open_ids:
            return {"ok": False, "error": "invalid_auth"}
        if (error := self.faults.error(name)) is not None:
            return {"ok": False, "error": error}
        try:
            return {"ok": True, **fn(self, params)}
        except SlackError as e:
            return {"ok": False, "error": e.error, **e.extra}

    # --- response_url ---------------------------------------------------------------------------------------

    def respond(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        """A POST to a ``response_url`` we handed out with a slash command or an interaction.

        Slack's rules: ``delete_original`` deletes the message the interaction came from; ``replace_original``
        replaces it; otherwise a new message is posted — ephemeral to the user unless
        ``response_type: in_channel``. Slash commands have no original message.
        """
        try:
            target = self.ws.use_response_url(token)
            text, blocks, attachments = _message_content(body, require=not _bool(body.get("delete_original")))
            if target is None:  # a URL the workspace did not hand out (open_ids): the call is only recorded
                return {"ok": True}
            channel, ts, ephemeral = target["channel"], target["message_ts"], bool(target["ephemeral"])
            user = target["user_id"]
            if _bool(body.get("delete_original")) and ts:
                if ephemeral:
                    self.ws.delete_ephemeral(ts)
                else:
                    self.ws.delete_message(channel, ts)
            elif _bool(body.get("replace_original")) and ts:
                if ephemeral:
                    self.ws.replace_ephemeral(ts, text=text, blocks=blocks)
                else:
                    self.ws.update_message(channel, ts, text=text, blocks=blocks or [], attachments=attachments)
            elif not channel:
                raise SlackError("channel_not_found")  # an interaction in a modal has no channel to answer in
            elif body.get("response_type") == "in_channel":
                self.ws.post_message(
                    channel, text=text, blocks=blocks, attachments=attachments, thread_ts=body.get("thread_ts")
                )
            else:
                self.ws.post_ephemeral(
                    channel, user, text=text, blocks=blocks, attachments=attachments, thread_ts=body.get("thread_ts")
                )
        except SlackError as e:
            return {"ok": False, "error": e.error, **e.extra}
        return {"ok": True}


# --- auth / users --------------------------------------------------------------------------------------------


@method("auth.test")
def auth_test(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": f"{api.base_url or 'http://127.0.0.1/'}",
        "team": "billbot sandbox",
        "user": BOT_USER.handle,
        "team_id": api.ws.team_id,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "is_enterprise_install": False,
    }


@method("users.info")
def users_info(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    return {"user": api.ws.user(_required(params, "user", "user_not_found")).as_slack()}


def _page(items: list[Any], params: dict[str, Any], default: int = 100) -> tuple[list[Any], dict[str, Any]]:
    """Cursor pagination as Slack does it: ``limit`` + opaque ``cursor`` (here: the offset)."""
    try:
        limit = max(1, min(int(params.get("limit") or default), 1000))
        start = int(str(params.get("cursor") or "0").removeprefix("off:") or 0)
    except ValueError:
        raise SlackError("invalid_cursor") from None
    page = items[start : start + limit]
    nxt = f"off:{start + limit}" if start + limit < len(items) else ""
    return page, {"next_cursor": nxt}


@method("usergroups.users.list")
def usergroups_users_list(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    """The members of a user group (routing rules name approver groups); an unknown group as Slack says it."""
    group = _required(params, "usergroup", "no_such_subteam")
    if group not in api.usergroups:
        raise SlackError("no_such_subteam")
    return {"users": list(api.usergroups[group])}


@method("users.list")
def users_list(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    members = [u.as_slack() for u in [BOT_USER, *api.ws.users()]]
    page, meta = _page(members, params, default=200)
    return {"members": page, "cache_ts": 0, "response_metadata": meta}


# --- chat ----------------------------------------------------------------------------------------------------


@method("chat.postMessage")
def chat_post_message(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    channel = _required(params, "channel", "channel_not_found")
    text, blocks, attachments = _message_content(params)
    ch, msg = api.ws.post_message(
        channel,
        text=text,
        blocks=blocks,
        attachments=attachments,
        thread_ts=params.get("thread_ts") or None,
        reply_broadcast=_bool(params.get("reply_broadcast")),
    )
    return {"channel": ch, "ts": msg["ts"], "message": msg}


@method("chat.update")
def chat_update(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    channel = _required(params, "channel", "channel_not_found")
    ts = _required(params, "ts", "message_not_found")
    text, blocks, attachments = _message_content(params, require=False)
    ch, msg = api.ws.update_message(
        channel,
        ts,
        text=params.get("text") if "text" in params else None,
        blocks=blocks,
        attachments=attachments,
    )
    return {"channel": ch, "ts": ts, "text": msg["text"], "message": msg}


@method("chat.postEphemeral")
def chat_post_ephemeral(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    channel = _required(params, "channel", "channel_not_found")
    user = _required(params, "user", "user_not_in_channel")
    text, blocks, attachments = _message_content(params)
    try:
        if not api.ws.open_ids:  # open_ids: users the workspace does not know are in every channel
            api.ws.user(user)
    except SlackError:
        raise SlackError("user_not_in_channel") from None
    _, ts = api.ws.post_ephemeral(
        channel, user, text=text, blocks=blocks, attachments=attachments, thread_ts=params.get("thread_ts") or None
    )
    return {"message_ts": ts}


@method("chat.getPermalink")
def chat_get_permalink(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    channel = _required(params, "channel", "channel_not_found")
    ts = _required(params, "message_ts", "message_not_found")
    ch = api.ws.channel(channel, create=False)
    if not api.ws.open_ids:
        api.ws.message(ch["id"], ts)  # message_not_found
    base = api.base_url or "http://127.0.0.1/"
    return {"channel": ch["id"], "permalink": f"{base}archives/{ch['id']}/p{ts.replace('.', '')}"}


@method("chat.delete")
def chat_delete(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    channel = _required(params, "channel", "channel_not_found")
    ts = _required(params, "ts", "message_not_found")
    return {"channel": api.ws.delete_message(channel, ts), "ts": ts}


# --- conversations -------------------------------------------------------------------------------------------


@method("conversations.open")
def conversations_open(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("channel"):
        ch = api.ws.channel(str(params["channel"]), create=False)
    else:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if len(users) != 1:
            # group DMs are not part of what billbot does
            raise SlackError("users_list_not_supplied" if not users else "not_supported")
        ch = api.ws.open_im(users[0])
    if _bool(params.get("return_im")):
        return {"channel": api.ws.channel_as_slack(ch), "already_open": False}
    return {"channel": {"id": ch["id"]}}


@method("conversations.list")
def conversations_list(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    types = str(params.get("types") or "public_channel").split(",")
    kinds = [k for t, k in (("public_channel", "channel"), ("private_channel", "private"), ("im", "im")) if t in types]
    chans = [api.ws.channel_as_slack(c) for c in api.ws.channels(kinds)]
    page, meta = _page(chans, params)
    return {"channels": page, "response_metadata": meta}


@method("conversations.info")
def conversations_info(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    return {"channel": api.ws.channel_as_slack(api.ws.channel(_required(params, "channel"), create=False))}


@method("conversations.history")
def conversations_history(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    try:
        limit = max(1, min(int(params.get("limit") or 100), 999))
    except ValueError:
        raise SlackError("invalid_limit") from None
    msgs, more = api.ws.history(
        _required(params, "channel", "channel_not_found"),
        limit=limit,
        latest=params.get("latest") or None,
        oldest=params.get("oldest") or None,
        inclusive=_bool(params.get("inclusive")),
    )
    return {"messages": msgs, "has_more": more, "response_metadata": {"next_cursor": ""}}


@method("conversations.replies")
def conversations_replies(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    msgs = api.ws.replies(
        _required(params, "channel", "channel_not_found"), _required(params, "ts", "thread_not_found")
    )
    page, meta = _page(msgs, params, default=1000)
    return {"messages": page, "has_more": bool(meta["next_cursor"]), "response_metadata": meta}


# --- views ---------------------------------------------------------------------------------------------------


def _view_arg(params: dict[str, Any]) -> dict[str, Any]:
    view = _json_arg(params, "view")
    problems = validate_view(view)
    if problems:
        raise SlackError("invalid_arguments", response_metadata={"messages": problems})
    assert isinstance(view, dict)
    return view


@method("views.open")
def views_open(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    view = _view_arg(params)
    if view.get("type") != "modal":
        raise SlackError("invalid_arguments", response_metadata={"messages": ["views.open opens modals"]})
    user = api.ws.use_trigger(_required(params, "trigger_id", "invalid_trigger_id"))
    return {"view": api.ws.open_modal(user, view)}


@method("views.push")
def views_push(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    view = _view_arg(params)
    user = api.ws.use_trigger(_required(params, "trigger_id", "invalid_trigger_id"))
    return {"view": api.ws.push_modal(user, view)}


@method("views.update")
def views_update(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    view = _view_arg(params)
    return {
        "view": api.ws.update_view(
            view,
            view_id=params.get("view_id") or None,
            external_id=params.get("external_id") or None,
            hash=params.get("hash") or None,
        )
    }


@method("views.publish")
def views_publish(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    view = _view_arg(params)
    if view.get("type") != "home":
        raise SlackError("invalid_arguments", response_metadata={"messages": ["views.publish publishes home tabs"]})
    user = _required(params, "user_id", "user_not_found")
    return {"view": api.ws.publish_home(user, view, hash=params.get("hash") or None)}


# --- files (files_upload_v2: getUploadURLExternal → POST upload_url → completeUploadExternal) ----------------


@method("files.getUploadURLExternal")
def files_get_upload_url(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    name = _required(params, "filename")
    try:
        length = int(_required(params, "length"))
    except ValueError:
        raise SlackError("invalid_arguments") from None
    fid = api.ws.new_file(name, length)
    return {"upload_url": f"{api.base_url}upload/{fid}", "file_id": fid}


@method("files.completeUploadExternal")
def files_complete_upload(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    files = _json_arg(params, "files")
    if not isinstance(files, list) or not files:
        raise SlackError("invalid_arguments", response_metadata={"messages": ["files: a JSON list"]})
    channel = params.get("channel_id") or (str(params.get("channels") or "").split(",")[0] or None)
    shown = api.ws.complete_upload(
        files,
        channel=channel,
        initial_comment=params.get("initial_comment") or None,
        thread_ts=params.get("thread_ts") or None,
        base_url=api.base_url,
    )
    return {"files": shown}


@method("team.info")
def team_info(api: WebApi, params: dict[str, Any]) -> dict[str, Any]:
    return {"team": {"id": api.ws.team_id, "name": "billbot sandbox", "domain": TEAM_DOMAIN}}
