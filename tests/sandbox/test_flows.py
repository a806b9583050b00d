"""The decision flows (tests/sandbox/flows.py) through both ways of driving the one fake Slack Web API (the
sandbox's): the sandbox page's forwarder, and the tests' signed users against the sandbox server as
tests/fakes/slack_api.py starts it. Same signed requests into billbot's real /slack/events, same expectations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from storage.db import Database
from tests.fakes.slack_api import FakeSlackAPI
from tests.harness import AppServer, SlackUser, shut_down, signed_user
from tests.sandbox import flows
from tests.sandbox.scenario import APPROVER, FINANCE, OPERATOR

SECRET = "0123456789abcdef0123456789abcdef"
PROFILES = {
    OPERATOR: {"name": "olivia", "real_name": "Olivia Operator", "email": "olivia@northwind.example"},
    APPROVER: {"name": "arne", "real_name": "Arne Approver", "email": "arne@northwind.example"},
    FINANCE: {"name": "fiona", "real_name": "Fiona Finance", "email": "fiona@northwind.example"},
}
COMMAND_CHANNEL = "CBILLING"


class SandboxSurface:
    """Through the sandbox: what the page does, minus the browser."""

    name = "sandbox"

    def __init__(self, db: Database, session: Any) -> None:
        self.db = db
        self.session = session
        self.ws = session.sandbox.workspace
        self.fwd = session.sandbox.forwarder
        self.channel = self.ws.channel("billing-exceptions")["id"]

    def command(self, user: str, text: str) -> None:
        assert self.fwd.command(user, self.channel, f"/billing {text}").ok

    def channel_messages(self) -> list[dict[str, Any]]:
        return self.ws.history(self.channel)[0]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        return self.ws.message(channel, ts)

    def thread(self, channel: str, ts: str) -> list[str]:
        return [m["text"] for m in self.ws.replies(channel, ts)[1:]]

    def click(self, user: str, channel: str, ts: str, action_id: str) -> None:
        block_id, _ = flows.buttons(self.ws.message(channel, ts))[action_id]
        out = self.fwd.action(user, block_id=block_id, action_id=action_id, channel=channel, message_ts=ts)
        assert out.ok, out

    def modal(self, user: str) -> dict[str, Any] | None:
        stack = self.ws.modal_stack(user)
        return stack[-1] if stack else None

    def submit(self, user: str, view: dict[str, Any], values: dict[str, dict[str, str]]) -> None:
        out = self.fwd.submit(user, view["id"], values)
        assert out.ok, out
        assert self.modal(user) is None  # billbot's empty ack closed it

    def ephemerals(self, user: str) -> list[str]:
        return [m["text"] for m in self.ws.history(self.channel, viewer=user)[0] if m.get("ephemeral_for") == user]

    def wait(self) -> None:
        assert self.session.wait_idle(30)


class FakeApiSurface:
    """Through tests/harness.py against tests/fakes/slack_api.py."""

    name = "fake"

    def __init__(self, db: Database, api: FakeSlackAPI, server: AppServer) -> None:
        self.db = db
        self.api = api
        self.server = server
        self.users: dict[str, SlackUser] = {}
        self.marks: dict[str, int] = {}

    def as_user(self, uid: str) -> SlackUser:
        return signed_user(self.users, self.server, self.api, SECRET, uid)

    def command(self, user: str, text: str) -> None:
        assert self.as_user(user).command(text, channel=COMMAND_CHANNEL).status == 200

    def channel_messages(self) -> list[dict[str, Any]]:
        return [m for (ch, _), m in self.api.messages.items() if ch == COMMAND_CHANNEL]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        return self.api.message(channel, ts)

    def thread(self, channel: str, ts: str) -> list[str]:
        return [str(r.get("text")) for r in self.api.message(channel, ts)["replies"]]

    def click(self, user: str, channel: str, ts: str, action_id: str) -> None:
        _, value = flows.buttons(self.api.message(channel, ts))[action_id]
        self.marks[user] = len(self.api.calls_to("views.open"))
        assert self.as_user(user).click(action_id, value, channel=channel, message_ts=ts).status == 200

    def modal(self, user: str) -> dict[str, Any] | None:
        """The reason modal opened since ``user``'s last click (the fake does not know whose trigger it was)."""
        since = self.api.calls_to("views.open")[self.marks.get(user, 10**9):]
        opened = [c["view"] for c in since if c.get("view", {}).get("callback_id") == "decision_reason"]
        return opened[-1] if opened else None

    def submit(self, user: str, view: dict[str, Any], values: dict[str, dict[str, str]]) -> None:
        assert self.as_user(user).submit_view(view, values).status == 200
        self.marks[user] = 10**9  # submitted: nothing open any more

    def ephemerals(self, user: str) -> list[str]:
        return [str(c.get("text")) for c in self.api.calls_to("chat.postEphemeral") if c.get("user") == user]

    def wait(self) -> None:
        self.server.wait_idle(30)


@pytest.fixture
def prepared(db: Database, key: Any, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("BILLBOT_JOBS", "inline")
    flows.prepare(db)
    return db


@pytest.fixture
def sandbox_surface(prepared: Database, tmp_path: Any) -> Iterator[SandboxSurface]:
    from bot.sandbox.session import start_session

    session = start_session(sandbox_db=tmp_path / "sandbox.db")
    try:
        yield SandboxSurface(prepared, session)
    finally:
        session.stop()


@pytest.fixture
def fake_surface(prepared: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiSurface]:
    from bot import context
    from bot.app import create_app, create_wsgi

    with FakeSlackAPI(users=PROFILES) as api:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
        monkeypatch.setenv("SLACK_API_URL", api.url)
        context.reset()
        from bot.slack.client import _client

        _client.cache_clear()
        server = AppServer(create_wsgi(app=create_app()))
        # exception messages of the pre-invoices made before the app existed
        from bot import runtime
        from bot.slack.exceptions import post_missing

        wiring = runtime.wiring()
        assert wiring is not None
        post_missing(wiring.slack)
        surface = FakeApiSurface(prepared, api, server)
        try:
            yield surface
        finally:
            shut_down(server, surface.users)


@pytest.fixture(params=["sandbox", "fake"])
def surface(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_surface")


def test_decision_flows_behave_the_same_on_both_fakes(surface: Any) -> None:
    flows.run_billing_step(surface)
    flows.approve_variance_step(surface)
    flows.approver_force_refused_step(surface)
    flows.finance_force_step(surface)


def test_a_click_on_an_outdated_message_reaches_billbot_and_its_answer_is_shown(
        sandbox_surface: SandboxSurface) -> None:
    """Finance's page still shows the Approve button the approver used a moment ago: as in Slack, the click
    reaches billbot, which answers "Already approved by …" — the page shows that, not "action_not_found"."""
    import httpx

    s = sandbox_surface
    flows.run_billing_step(s)
    row, before = flows.exception_message(s, "variance")
    channel, ts = row.channel or "", row.message_ts or ""
    block_id, _ = flows.buttons(before)["decide_approve"]
    shown = next(e for b in before["blocks"] if b.get("block_id") == block_id for e in b["elements"]
                 if e.get("action_id") == "decide_approve")
    flows.approve_variance_step(s)  # the message has no buttons any more
    assert flows.buttons(s.message(channel, ts)) == {}

    out = s.fwd.action(FINANCE, block_id=block_id, action_id="decide_approve", channel=channel, message_ts=ts,
                       shown=shown)
    s.wait()
    assert out.ok, out
    answer = [t for t in s.ephemerals(FINANCE) if "Already approved by" in t]
    assert answer, s.ephemerals(FINANCE)
    state = httpx.get(f"{s.session.sandbox.url}sandbox/state", params={"user": FINANCE, "channel": channel}).json()
    shown_to_finance = [m for m in state["messages"] if m.get("ephemeral_for") == FINANCE]
    assert any("Already approved by" in m["text"] for m in shown_to_finance), shown_to_finance
    row, _ = flows.exception_message(s, "variance")
    assert row.state == "approved" and row.decided_by == APPROVER  # the late click changed nothing

    # without the element as shown, a click on something the message never had stays action_not_found
    from bot.sandbox.workspace import SlackError

    with pytest.raises(SlackError, match="action_not_found"):
        s.fwd.action(FINANCE, block_id=block_id, action_id="no_such_button", channel=channel, message_ts=ts)
