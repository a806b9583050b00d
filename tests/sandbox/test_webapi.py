"""The sandbox's Web API subset, driven through slack_sdk's WebClient (the client billbot uses)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from slack_sdk.errors import SlackApiError

from bot.sandbox import SandboxServer, SandboxUser, start_sandbox
from bot.sandbox.workspace import BOT_USER_ID, Workspace
from bot.slack.client import make_client

PEOPLE = [
    SandboxUser("U02APPROVER", "Arne Approver", "arne@example.com", ("approver",)),
    SandboxUser("U03FINANCE", "Fiona Finance", None, ("approver", "finance_manager")),
]


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    sb = start_sandbox(users_provider=lambda: PEOPLE)
    yield sb
    sb.stop()


@pytest.fixture
def client(sandbox: SandboxServer):  # type: ignore[no-untyped-def]
    return make_client(sandbox.bot_token, sandbox.api_url)


def error_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SlackApiError) as e:
        call()
    return str(e.value.response["error"])


SECTION = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Variance* on Autohaus"}}]


def test_auth_test_names_the_bot_and_the_wrong_token_is_refused(sandbox: SandboxServer, client) -> None:
    me = client.auth_test()
    assert me["user_id"] == BOT_USER_ID and me["team_id"] == "T0SANDBOX" and me["bot_id"]
    assert error_of(make_client("xoxb-wrong", sandbox.api_url).auth_test) == "invalid_auth"
    assert error_of(make_client(None, sandbox.api_url).auth_test) == "not_authed"
    assert error_of(lambda: client.api_call("chat.unfurl")) == "unknown_method"


def test_post_update_and_history_by_channel_name(client) -> None:
    posted = client.chat_postMessage(channel="billing-exceptions", text="Variance", blocks=SECTION)
    assert posted["channel"].startswith("C") and posted["message"]["blocks"][0]["block_id"]
    updated = client.chat_update(channel=posted["channel"], ts=posted["ts"], text="Approved", blocks=[])
    assert updated["ts"] == posted["ts"] and updated["message"]["text"] == "Approved"
    hist = client.conversations_history(channel=posted["channel"])["messages"]
    assert [(m["ts"], m["text"], m.get("blocks")) for m in hist] == [(posted["ts"], "Approved", [])]
    assert hist[0]["edited"]["user"] == BOT_USER_ID
    # a new channel name is created on first post; an unknown id is not
    assert client.chat_postMessage(channel="#ops-billing", text="hi")["channel"].startswith("C")
    assert error_of(lambda: client.chat_postMessage(channel="C0NOPE", text="x")) == "channel_not_found"
    assert (
        error_of(lambda: client.chat_update(channel=posted["channel"], ts="1.000001", text="x")) == "message_not_found"
    )
    assert error_of(lambda: client.api_call("chat.postMessage", json={"channel": "general"})) == "no_text"


def test_threads_replies_and_delete(client) -> None:
    parent = client.chat_postMessage(channel="billing-exceptions", text="parent")
    r1 = client.chat_postMessage(channel=parent["channel"], thread_ts=parent["ts"], text="Approved by @arne")
    client.chat_postMessage(channel=parent["channel"], thread_ts=r1["ts"], text="second")  # a reply's ts → its thread
    thread = client.conversations_replies(channel=parent["channel"], ts=parent["ts"])["messages"]
    assert [m["text"] for m in thread] == ["parent", "Approved by @arne", "second"]
    top = client.conversations_history(channel=parent["channel"])["messages"]
    assert [(m["text"], m["reply_count"]) for m in top] == [("parent", 2)]
    client.chat_delete(channel=parent["channel"], ts=r1["ts"])
    assert len(client.conversations_replies(channel=parent["channel"], ts=parent["ts"])["messages"]) == 2
    assert (
        error_of(lambda: client.chat_postMessage(channel=parent["channel"], thread_ts="1.2", text="x"))
        == "thread_not_found"
    )


def test_ephemerals_are_seen_only_by_their_user(sandbox: SandboxServer, client) -> None:
    ch = client.chat_postMessage(channel="billing-exceptions", text="x")["channel"]
    ts = client.chat_postEphemeral(channel=ch, user="U02APPROVER", text="Force needs finance_manager")["message_ts"]
    assert ts
    seen = sandbox.workspace.history(ch, viewer="U02APPROVER")[0]
    assert [m["text"] for m in seen] == ["Force needs finance_manager", "x"]
    assert [m["text"] for m in sandbox.workspace.history(ch, viewer="U03FINANCE")[0]] == ["x"]
    assert [m["text"] for m in client.conversations_history(channel=ch)["messages"]] == ["x"]
    assert error_of(lambda: client.chat_postEphemeral(channel=ch, user="U9NOBODY", text="x")) == "user_not_in_channel"


def test_users_info_list_and_dms(client) -> None:
    u = client.users_info(user="U02APPROVER")["user"]
    assert (u["real_name"], u["profile"]["email"], u["is_bot"]) == ("Arne Approver", "arne@example.com", False)
    assert error_of(lambda: client.users_info(user="U9NOBODY")) == "user_not_found"
    ids = [m["id"] for m in client.users_list()["members"]]
    assert ids == [BOT_USER_ID, "U02APPROVER", "U03FINANCE"]
    page1 = client.users_list(limit=2)
    assert len(page1["members"]) == 2 and page1["response_metadata"]["next_cursor"]
    page2 = client.users_list(limit=2, cursor=page1["response_metadata"]["next_cursor"])
    assert [m["id"] for m in page2["members"]] == ["U03FINANCE"]
    dm = client.conversations_open(users="U03FINANCE")["channel"]["id"]
    assert dm.startswith("D") and client.conversations_open(users="U03FINANCE")["channel"]["id"] == dm
    # posting to a user id lands in the bot's DM with them, as on Slack
    assert client.chat_postMessage(channel="U03FINANCE", text="Your queue")["channel"] == dm
    listed = client.conversations_list(types="public_channel,im")["channels"]
    assert {c["id"] for c in listed if c.get("is_im")} == {dm}
    assert {c["name"] for c in listed if c.get("is_channel")} >= {"billing-exceptions", "billing-managers"}


MODAL = {
    "type": "modal",
    "callback_id": "reason",
    "private_metadata": '{"exception_id": 7}',
    "title": {"type": "plain_text", "text": "Force"},
    "submit": {"type": "plain_text", "text": "Force"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
        }
    ],
}


def test_views_need_a_fresh_trigger_and_hash_conflicts_are_refused(sandbox: SandboxServer, client) -> None:
    trig = sandbox.workspace.new_trigger("U03FINANCE")
    view = client.views_open(trigger_id=trig, view=MODAL)["view"]
    assert view["id"].startswith("V") and view["private_metadata"] == '{"exception_id": 7}'
    assert sandbox.workspace.modal_stack("U03FINANCE")[-1]["id"] == view["id"]
    assert error_of(lambda: client.views_open(trigger_id=trig, view=MODAL)) == "invalid_trigger_id"
    new = client.views_update(view_id=view["id"], hash=view["hash"], view={**MODAL, "callback_id": "reason2"})["view"]
    assert new["callback_id"] == "reason2" and new["hash"] != view["hash"]
    assert error_of(lambda: client.views_update(view_id=view["id"], hash=view["hash"], view=MODAL)) == "hash_conflict"
    pushed = client.views_push(trigger_id=sandbox.workspace.new_trigger("U03FINANCE"), view=MODAL)["view"]
    assert pushed["root_view_id"] == view["id"] and pushed["previous_view_id"] == view["id"]
    home = {"type": "home", "blocks": SECTION}
    h1 = client.views_publish(user_id="U02APPROVER", view=home)["view"]
    h2 = client.views_publish(user_id="U02APPROVER", view=home)["view"]
    assert h1["id"] == h2["id"] and sandbox.workspace.home("U02APPROVER")["type"] == "home"
    bad = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    assert (
        error_of(lambda: client.views_open(trigger_id=sandbox.workspace.new_trigger("U03FINANCE"), view=bad))
        == "invalid_arguments"
    )


def test_invalid_blocks_are_refused_like_slack(client) -> None:
    too_many = [{"type": "divider"}] * 51
    assert error_of(lambda: client.chat_postMessage(channel="general", text="x", blocks=too_many)) == "invalid_blocks"
    long_header = [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]
    assert (
        error_of(lambda: client.chat_postMessage(channel="general", text="x", blocks=long_header)) == "invalid_blocks"
    )
    dup = [{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]
    assert error_of(lambda: client.chat_postMessage(channel="general", text="x", blocks=dup)) == "invalid_blocks"
    assert client.chat_postMessage(channel="general", text="x", blocks=[{"type": "divider"}] * 50)["ok"]


def test_files_upload_v2_shares_the_file_in_the_channel(sandbox: SandboxServer, client) -> None:
    ch = client.conversations_open(users="U02APPROVER")["channel"]["id"]
    done = client.files_upload_v2(
        channel=ch,
        content=b"%PDF-1.7 fake",
        filename="INV-2026-000001.pdf",
        title="Invoice INV-2026-000001",
        initial_comment="Invoice created",
    )
    f = done["file"]
    assert f["title"] == "Invoice INV-2026-000001" and f["size"] == len(b"%PDF-1.7 fake")
    msg = client.conversations_history(channel=ch)["messages"][0]
    assert msg["text"] == "Invoice created" and msg["files"][0]["id"] == f["id"]
    got = httpx.get(f["url_private"], timeout=5)
    assert got.content == b"%PDF-1.7 fake" and got.headers["content-type"] == "application/pdf"


def test_response_url_replaces_posts_and_deletes(sandbox: SandboxServer, client) -> None:
    ws = sandbox.workspace
    posted = client.chat_postMessage(channel="billing-exceptions", text="Approve?", blocks=SECTION)
    ch = posted["channel"]

    def respond(token: str, body: dict) -> dict:
        return httpx.post(f"{sandbox.url}response/{token}", json=body, timeout=5).json()

    tok = ws.new_response_url_token("message", user="U02APPROVER", channel=ch, message_ts=posted["ts"])
    assert respond(tok, {"replace_original": True, "text": "Approved by @arne"}) == {"ok": True}
    assert ws.message(ch, posted["ts"])["text"] == "Approved by @arne"
    assert respond(tok, {"text": "only you"})["ok"]
    assert [m["text"] for m in ws.history(ch, viewer="U02APPROVER")[0]] == ["only you", "Approved by @arne"]
    assert respond(tok, {"response_type": "in_channel", "text": "for all"})["ok"]
    assert [m["text"] for m in client.conversations_history(channel=ch)["messages"]][0] == "for all"
    assert respond(tok, {"delete_original": True})["ok"]
    assert respond(tok, {"text": "fifth use"})["ok"]
    assert respond(tok, {"text": "sixth use"}) == {"ok": False, "error": "used_url"}
    assert respond("nope", {"text": "x"})["error"] == "invalid_response_url"
    assert ws.history(ch)[0][0]["text"] == "for all"


def test_form_encoded_and_query_arguments_are_accepted(sandbox: SandboxServer) -> None:
    """Other clients send form bodies with ``token`` and JSON strings for blocks; Slack accepts both."""
    r = httpx.post(
        f"{sandbox.api_url}chat.postMessage",
        data={"token": sandbox.bot_token, "channel": "general", "text": "t", "blocks": json.dumps(SECTION)},
        timeout=5,
    ).json()
    assert r["ok"] and r["message"]["blocks"][0]["type"] == "section"
    q = httpx.get(
        f"{sandbox.api_url}users.info?user=U02APPROVER",
        headers={"Authorization": f"Bearer {sandbox.bot_token}"},
        timeout=5,
    )
    assert q.json()["user"]["id"] == "U02APPROVER"


def test_messages_survive_a_restart_with_a_file(tmp_path) -> None:
    """billbot keeps the ``ts`` of exception messages; the sandbox must still know them after a restart."""
    path = tmp_path / "sandbox.db"
    ws = Workspace(path)
    ch, msg = ws.post_message("billing-exceptions", text="Variance")
    ws.close()
    again = Workspace(path)
    assert again.message(ch, msg["ts"])["text"] == "Variance"
    _, newer = again.post_message(ch, text="later")
    assert float(newer["ts"]) > float(msg["ts"])
    again.close()


def test_page_long_poll_wakes_on_change(sandbox: SandboxServer, client) -> None:
    v = sandbox.workspace.version
    client.chat_postMessage(channel="general", text="wake up")
    state = httpx.get(
        f"{sandbox.url}sandbox/state", params={"since": v, "wait": 5, "user": "U02APPROVER"}, timeout=10
    ).json()
    assert state["version"] > v and state["user"] == "U02APPROVER"
    assert [u["id"] for u in state["users"]] == ["U02APPROVER", "U03FINANCE"]


def test_stopping_wakes_a_waiting_long_poll(sandbox: SandboxServer) -> None:
    import threading

    got: list[int] = []
    v = sandbox.workspace.version

    def poll() -> None:
        r = httpx.get(f"{sandbox.url}sandbox/state", params={"since": v, "wait": 20, "user": "U02APPROVER"}, timeout=30)
        got.append(r.status_code)

    t = threading.Thread(target=poll)
    t.start()
    import time

    time.sleep(0.3)
    sandbox.workspace.close()
    t.join(5)
    assert got == [503]


# --- the options that make the sandbox the test suite's Slack stand-in (tests/fakes/slack_api.py) ----------------


@pytest.fixture
def stand_in() -> Iterator[SandboxServer]:
    sb = start_sandbox(deterministic=True, open_ids=True, team_id="T0BILLBOT", users_provider=lambda: PEOPLE)
    yield sb
    sb.stop()


def test_the_default_sandbox_refuses_ids_it_never_handed_out(client) -> None:
    assert error_of(lambda: client.chat_postMessage(channel="CEXCEPTIONS", text="x")) == "channel_not_found"
    ch = client.chat_postMessage(channel="general", text="x")["channel"]
    assert error_of(lambda: client.chat_postMessage(channel=ch, text="y", thread_ts="1.000001")) == "thread_not_found"
    assert error_of(lambda: client.views_open(trigger_id="made.up", view=PLAIN_MODAL)) == "invalid_trigger_id"


PLAIN_MODAL = {"type": "modal", "title": {"type": "plain_text", "text": "Reason"}, "blocks": SECTION}


def test_deterministic_ids_and_caller_chosen_ids(stand_in: SandboxServer) -> None:
    client = make_client("xoxb-any-token", stand_in.api_url)  # any token is taken
    assert client.auth_test()["team_id"] == "T0BILLBOT"
    first = client.chat_postMessage(channel="CEXCEPTIONS", text="Variance", blocks=SECTION)
    assert (first["channel"], first["ts"]) == ("CEXCEPTIONS", "1700000001.000001")
    assert client.chat_postMessage(channel="billing-managers", text="Digest")["channel"] == "CBILLINGMAN"
    assert client.chat_postMessage(channel="U02APPROVER", text="For you")["channel"] == "D02APPROVER"
    assert client.conversations_open(users="U09STRANGER")["channel"]["id"] == "D09STRANGER"
    reply = client.chat_postMessage(channel="CEXCEPTIONS", text="late", thread_ts="1699999999.000001")
    assert reply["message"]["thread_ts"] == "1699999999.000001"  # a parent from before this workspace
    client.chat_postEphemeral(channel="CEXCEPTIONS", user="U09STRANGER", text="only you")
    assert error_of(lambda: client.users_info(user="U09STRANGER")) == "user_not_found"  # still strict
    opened = client.views_open(trigger_id="made.up.trigger", view=PLAIN_MODAL)["view"]
    assert opened["id"] == "V00000001"
    assert client.views_update(view_id="V0TESTVIEW", view=PLAIN_MODAL)["view"]["id"] == "V0TESTVIEW"
    link = client.chat_getPermalink(channel="CEXCEPTIONS", message_ts=first["ts"])["permalink"]
    assert link.endswith("archives/CEXCEPTIONS/p1700000001000001")

    # what tests read: messages as billbot sent them (Slack's added block ids only in history), uploads
    stored = {(m["channel"], m["ts"]): m for m in stand_in.workspace.all_messages(as_sent=True)}
    assert stored[("CEXCEPTIONS", first["ts"])]["blocks"] == SECTION
    history = client.conversations_history(channel="CEXCEPTIONS")["messages"]
    assert all(b.get("block_id") for m in history for b in m.get("blocks") or [])
    client.files_upload_v2(content=b"%PDF-1.7 x", filename="INV-1.pdf", channel="CEXCEPTIONS")
    assert list(stand_in.workspace.uploads().values()) == [b"%PDF-1.7 x"]


def test_every_call_is_recorded_and_faults_are_injected_per_method(stand_in: SandboxServer) -> None:
    log, faults = stand_in.api.log, stand_in.api.faults
    url = stand_in.api_url + "chat.postMessage"
    auth = {"Authorization": "Bearer xoxb-test"}

    faults.fail_next("chat.postMessage", status=429, retry_after=7)
    faults.fail_next("chat.postMessage", status=503)
    r = httpx.post(url, json={"channel": "CX", "text": "a"}, headers=auth)
    assert (r.status_code, r.headers["retry-after"], r.json()["error"]) == (429, "7", "ratelimited")
    r = httpx.post(url, json={"channel": "CX", "text": "a"}, headers=auth)
    assert r.status_code == 503 and "retry-after" not in r.headers  # an outage
    faults.errors["chat.postMessage"] = "channel_not_found"
    assert httpx.post(url, json={"channel": "CX", "text": "a"}, headers=auth).json() == {
        "ok": False, "error": "channel_not_found"}
    del faults.errors["chat.postMessage"]
    form = {"channel": "CX", "text": "b", "blocks": json.dumps(SECTION)}
    assert httpx.post(url, data=form, headers=auth).json()["ok"] is True

    assert [c.method for c in log.calls] == ["chat.postMessage#fault"] * 2 + ["chat.postMessage"] * 2
    last = log.wait_for("chat.postMessage", 2)[-1]
    assert last["blocks"] == SECTION and last.body["blocks"] == json.dumps(SECTION)  # decoded, and as sent
    assert last.headers["authorization"] == "Bearer xoxb-test" and last.path == "/api/chat.postMessage"

    made_up = stand_in.url + "response/r-U02APPROVER"
    assert httpx.post(made_up, json={"text": "Already approved", "response_type": "ephemeral"}).json()["ok"]
    assert log.calls_to("response_url")[-1]["text"] == "Already approved"
    with pytest.raises(AssertionError, match="expected 1 call"):
        log.wait_for("views.open", timeout=0.1)
    log.reset()
    assert log.calls == []


def test_a_workspace_file_from_before_the_sent_blocks_column_still_opens(tmp_path) -> None:
    import sqlite3

    from bot.sandbox.workspace import SCHEMA

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(" sent_blocks TEXT,", ""))
    old.close()
    ws = Workspace(path)
    try:
        ch, msg = ws.post_message("general", text="hello", blocks=SECTION)
        assert ws.all_messages(as_sent=True)[0]["blocks"] == SECTION and msg["blocks"][0]["block_id"]
    finally:
        ws.close()


def test_a_sandbox_session_remembers_only_its_last_calls() -> None:
    from bot.sandbox.calls import Call, CallLog

    log = CallLog(keep=3)
    for i in range(5):
        log.record(Call("chat.postMessage", {"text": str(i)}, None))
    assert [c["text"] for c in log.calls] == ["2", "3", "4"]
    assert CallLog().keep is None
