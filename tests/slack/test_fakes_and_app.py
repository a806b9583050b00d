"""The fake Web API behaves like Slack where billbot depends on it (429 + Retry-After, the
three-step upload of ``files_upload_v2``), and the WSGI app's other routes."""

from __future__ import annotations

import httpx

from bot.slack.client import make_client


def test_rate_limits_are_retried_after_retry_after(fake_slack):
    client = make_client("xoxb-test", fake_slack.url)
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0, times=2)
    resp = client.chat_postMessage(channel="C1", text="hello")
    assert resp["ok"] and resp["channel"] == "C1"
    assert [c.method for c in fake_slack.calls] == ["chat.postMessage#fault"] * 2 + ["chat.postMessage"]


def test_files_upload_v2_goes_through_the_fake(fake_slack):
    client = make_client("xoxb-test", fake_slack.url)
    resp = client.files_upload_v2(content=b"%PDF-1.7 test", filename="INV-1.pdf", title="INV-1",
                                  channel="C1", thread_ts="1700000001.000001")
    assert resp["ok"]
    methods = [c.method for c in fake_slack.calls]
    assert methods == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert list(fake_slack.uploads.values()) == [b"%PDF-1.7 test"]
    assert fake_slack.calls[-1]["thread_ts"] == "1700000001.000001"


def test_healthz_and_unknown_paths(world):
    r = httpx.get(world.server.url + "/healthz")
    # /healthz names its checks now (issue 16 item 10), so the body is more than {"ok": true}
    assert r.status_code == 200 and r.json()["ok"] is True
    assert set(r.json()["checks"]) == {"database", "migrations", "signing key"}
    assert httpx.get(world.server.url + "/nowhere").status_code == 404
    assert httpx.get(world.server.url + "/slack/events").status_code == 404


def test_serve_picks_socket_mode_when_an_app_token_is_set(monkeypatch, world):
    import bot.app as appmod
    from storage.settings import Settings

    started = []
    monkeypatch.setattr(appmod, "start_socket_mode", lambda app, settings: started.append(app))
    settings = Settings(SLACK_APP_TOKEN="xapp-1-test", SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=world.api.url)
    appmod.serve(settings)
    assert len(started) == 1 and started[0].client.base_url == world.api.url


def test_the_lazy_gunicorn_application_builds_the_app_on_first_request(world):
    from bot.app import _LazyApplication
    from tests.harness import AppServer

    lazy = _LazyApplication()
    assert lazy._wsgi is None
    server = AppServer(lazy)
    try:
        assert httpx.get(server.url + "/healthz").json()["ok"] is True
        assert lazy._wsgi is not None
    finally:
        server.stop()


def test_manifest_creates_everything_the_app_uses():
    from pathlib import Path

    import yaml

    m = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifest.yaml").read_text())
    [cmd] = m["features"]["slash_commands"]
    assert cmd["command"] == "/billing" and cmd["url"].endswith("/slack/events")
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert m["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert m["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened", "message.channels",
                                                                   "message.groups"]
    assert m["features"]["app_home"]["home_tab_enabled"] and m["features"]["app_home"]["messages_tab_enabled"]
    scopes = set(m["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "users:read", "users:read.email", "files:write", "im:write"} <= scopes
