"""Clicks, submissions and commands leave the sandbox as signed Slack payloads, and billbot's synchronous
answers are applied as Slack applies them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from bot.sandbox import SandboxServer, SandboxUser, start_sandbox
from bot.sandbox.forward import sign
from bot.slack.client import make_client
from tests.sandbox.receiver import Receiver, Seen

PEOPLE = [
    SandboxUser("U02APPROVER", "Arne Approver", None, ("approver",)),
    SandboxUser("U03FINANCE", "Fiona Finance", None, ("approver", "finance_manager")),
]

EXCEPTION_BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Variance: Autohaus Elbe"}},
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": "exc:7",
            },
            {
                "type": "button",
                "action_id": "force",
                "text": {"type": "plain_text", "text": "Force"},
                "style": "danger",
                "value": "exc:7",
            },
        ],
    },
]

REASON_MODAL = {
    "type": "modal",
    "callback_id": "decision_reason",
    "private_metadata": '{"exception": 7, "decision": "force"}',
    "title": {"type": "plain_text", "text": "Force"},
    "submit": {"type": "plain_text", "text": "Force"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
        },
        {
            "type": "input",
            "block_id": "kind",
            "optional": True,
            "label": {"type": "plain_text", "text": "Kind"},
            "element": {
                "type": "static_select",
                "action_id": "pick",
                "options": [
                    {"text": {"type": "plain_text", "text": "Client agreed"}, "value": "agreed"},
                    {"text": {"type": "plain_text", "text": "Contract"}, "value": "contract"},
                ],
            },
        },
    ],
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def sandbox(receiver: Receiver) -> Iterator[SandboxServer]:
    sb = start_sandbox(users_provider=lambda: PEOPLE)
    sb.set_events_url(receiver.start())
    yield sb
    sb.stop()


def verified(sb: SandboxServer, seen: Seen) -> bool:
    return SignatureVerifier(sb.signing_secret).is_valid_request(seen.body, seen.headers)


def test_signature_matches_slack_sdk_and_fails_with_another_secret() -> None:
    headers = sign("s3cret", b"payload=%7B%7D")
    assert SignatureVerifier("s3cret").is_valid_request(b"payload=%7B%7D", headers)
    assert not SignatureVerifier("other").is_valid_request(b"payload=%7B%7D", headers)
    assert not SignatureVerifier("s3cret").is_valid_request(b"payload=%7B%7D", sign("s3cret", b"payload=%7B%7D", 1))


def test_slash_command_is_a_signed_form_with_a_working_response_url(sandbox: SandboxServer, receiver: Receiver) -> None:
    receiver.handler = lambda seen: (200, {"text": "Billing run for 2026-02 started"})
    ch = sandbox.workspace.channel("billing-exceptions")["id"]
    out = sandbox.forwarder.command("U02APPROVER", ch, "/billing run 2026-02")
    assert out.ok and out.status == 200
    (seen,) = receiver.seen
    assert verified(sandbox, seen)
    form = seen.form
    assert (form["command"], form["text"], form["user_id"], form["channel_id"]) == (
        "/billing",
        "run 2026-02",
        "U02APPROVER",
        ch,
    )
    assert form["channel_name"] == "billing-exceptions" and form["trigger_id"] and form["team_id"] == "T0SANDBOX"
    # the immediate answer shows as an ephemeral for the user who typed it
    assert [m["text"] for m in sandbox.workspace.history(ch, viewer="U02APPROVER")[0]] == [
        "Billing run for 2026-02 started"
    ]
    # later answers go through the response_url
    r = httpx.post(
        form["response_url"], json={"response_type": "in_channel", "text": "Document INV-1 created"}, timeout=5
    )
    assert r.json() == {"ok": True}
    assert [m["text"] for m in sandbox.workspace.history(ch)[0]] == ["Document INV-1 created"]


def test_a_refused_command_shows_slack_dispatch_failed(sandbox: SandboxServer, receiver: Receiver) -> None:
    receiver.handler = lambda seen: (401, b"invalid request")
    ch = sandbox.workspace.channel("general")["id"]
    out = sandbox.forwarder.command("U02APPROVER", ch, "/billing status")
    assert not out.ok and out.status == 401
    (eph,) = sandbox.workspace.history(ch, viewer="U02APPROVER")[0]
    assert "dispatch_failed" in eph["text"]


def test_button_click_is_signed_block_actions_and_its_trigger_opens_a_modal(
    sandbox: SandboxServer, receiver: Receiver
) -> None:
    client = make_client(sandbox.bot_token, sandbox.api_url)
    posted = client.chat_postMessage(channel="billing-exceptions", text="Variance", blocks=EXCEPTION_BLOCKS)

    def handler(seen: Seen):  # billbot opens the reason modal while the sandbox waits for the ack
        client.views_open(trigger_id=seen.payload["trigger_id"], view=REASON_MODAL)
        return 200, b""

    receiver.handler = handler
    out = sandbox.forwarder.action(
        "U03FINANCE", block_id="decide", action_id="force", channel=posted["channel"], message_ts=posted["ts"]
    )
    assert out.ok
    (seen,) = receiver.seen
    assert verified(sandbox, seen)
    p = seen.payload
    assert p["type"] == "block_actions" and p["user"]["id"] == "U03FINANCE"
    assert p["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": posted["channel"],
        "is_ephemeral": False,
    }
    assert p["channel"]["id"] == posted["channel"] and p["message"]["ts"] == posted["ts"]
    assert p["message"]["blocks"][1]["elements"][1]["action_id"] == "force"
    (act,) = p["actions"]
    assert (act["action_id"], act["block_id"], act["value"], act["type"], act["style"]) == (
        "force",
        "decide",
        "exc:7",
        "button",
        "danger",
    )
    assert p["response_url"].startswith(sandbox.url + "response/")
    (modal,) = sandbox.workspace.modal_stack("U03FINANCE")
    assert modal["callback_id"] == "decision_reason"
    # response_url replace_original updates the clicked message
    httpx.post(p["response_url"], json={"replace_original": True, "text": "Forced by @fiona"}, timeout=5)
    assert sandbox.workspace.message(posted["channel"], posted["ts"])["text"] == "Forced by @fiona"


def test_view_submission_carries_state_values_and_private_metadata(sandbox: SandboxServer, receiver: Receiver) -> None:
    ws = sandbox.workspace
    view = ws.open_modal("U03FINANCE", REASON_MODAL)
    replies = iter([(200, {"response_action": "errors", "errors": {"reason": "Say why you force it."}}), (200, b"")])
    receiver.handler = lambda seen: next(replies)
    out = sandbox.forwarder.submit("U03FINANCE", view["id"], {"reason": {"text": "   "}, "kind": {"pick": "agreed"}})
    assert not out.ok and out.errors == {"reason": "Say why you force it."}
    assert ws.modal_stack("U03FINANCE")  # still open, showing the error
    out = sandbox.forwarder.submit(
        "U03FINANCE", view["id"], {"reason": {"text": "Client agreed by mail"}, "kind": {"pick": "agreed"}}
    )
    assert out.ok and ws.modal_stack("U03FINANCE") == []
    p = receiver.seen[-1].payload
    assert verified(sandbox, receiver.seen[-1])
    assert p["type"] == "view_submission" and p["user"]["id"] == "U03FINANCE"
    assert (
        p["view"]["callback_id"] == "decision_reason"
        and p["view"]["private_metadata"] == REASON_MODAL["private_metadata"]
    )
    values = p["view"]["state"]["values"]
    assert values["reason"]["text"] == {"type": "plain_text_input", "value": "Client agreed by mail"}
    assert values["kind"]["pick"]["selected_option"]["value"] == "agreed"


def test_required_inputs_are_checked_before_billbot_sees_anything(sandbox: SandboxServer, receiver: Receiver) -> None:
    view = sandbox.workspace.open_modal("U03FINANCE", REASON_MODAL)
    out = sandbox.forwarder.submit("U03FINANCE", view["id"], {"reason": {"text": None}})
    assert not out.ok and set(out.errors) == {"reason"} and receiver.seen == []


def test_response_actions_update_push_and_clear(sandbox: SandboxServer, receiver: Receiver) -> None:
    ws = sandbox.workspace
    view = ws.open_modal("U03FINANCE", REASON_MODAL)
    done = {
        **REASON_MODAL,
        "callback_id": "done",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Done"}}],
    }
    receiver.handler = lambda seen: (200, {"response_action": "update", "view": done})
    assert sandbox.forwarder.submit("U03FINANCE", view["id"], {"reason": {"text": "x"}}).ok
    assert ws.modal_stack("U03FINANCE")[-1]["callback_id"] == "done"
    receiver.handler = lambda seen: (200, {"response_action": "push", "view": REASON_MODAL})
    assert sandbox.forwarder.submit("U03FINANCE", view["id"], {}).ok
    assert len(ws.modal_stack("U03FINANCE")) == 2
    receiver.handler = lambda seen: (200, {"response_action": "clear"})
    assert sandbox.forwarder.submit("U03FINANCE", ws.modal_stack("U03FINANCE")[-1]["id"], {"reason": {"text": "y"}}).ok
    assert ws.modal_stack("U03FINANCE") == []


def test_app_home_opened_is_a_signed_event_callback(sandbox: SandboxServer, receiver: Receiver) -> None:
    assert sandbox.forwarder.home_opened("U02APPROVER").ok
    (seen,) = receiver.seen
    assert verified(sandbox, seen) and seen.headers["Content-Type"] == "application/json"
    import json

    body = json.loads(seen.body)
    assert body["type"] == "event_callback" and body["event"]["type"] == "app_home_opened"
    assert body["event"]["user"] == "U02APPROVER" and body["event"]["tab"] == "home"


def test_someone_elses_modal_cannot_be_submitted(sandbox: SandboxServer) -> None:
    from bot.sandbox.workspace import SlackError

    view = sandbox.workspace.open_modal("U03FINANCE", REASON_MODAL)
    with pytest.raises(SlackError, match="not_your_view"):
        sandbox.forwarder.submit("U02APPROVER", view["id"], {"reason": {"text": "x"}})


def test_unreachable_billbot_is_reported_not_raised(receiver: Receiver) -> None:
    sb = start_sandbox(users_provider=lambda: PEOPLE, events_url="http://127.0.0.1:9/slack/events")
    try:
        out = sb.forwarder.command("U02APPROVER", "general", "/billing help")
        assert not out.ok and "not reachable" in out.message
    finally:
        sb.stop()


def test_page_api_forwards_and_reports(sandbox: SandboxServer, receiver: Receiver) -> None:
    """The page's own endpoints: what the browser calls."""
    receiver.handler = lambda seen: (200, b"")
    ch = sandbox.workspace.channel("general")["id"]
    r = httpx.post(
        f"{sandbox.url}sandbox/command", json={"user": "U02APPROVER", "channel": ch, "text": "/billing help"}, timeout=5
    )
    assert r.json()["ok"] and receiver.seen[-1].form["text"] == "help"
    r = httpx.post(f"{sandbox.url}sandbox/say", json={"user": "U02APPROVER", "channel": ch, "text": "hello"}, timeout=5)
    assert r.json()["ok"] and sandbox.workspace.history(ch)[0][0]["user"] == "U02APPROVER"
    r = httpx.post(
        f"{sandbox.url}sandbox/command", json={"user": "U9NOBODY", "channel": ch, "text": "/billing"}, timeout=5
    )
    assert r.json() == {"ok": False, "error": "user_not_found"}
    page = httpx.get(sandbox.url, timeout=5)
    assert page.status_code == 200 and "billbot sandbox" in page.text
    assert httpx.get(f"{sandbox.url}static/../server.py", timeout=5).status_code == 404
