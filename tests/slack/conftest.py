"""Fixtures: a fake Slack Web API, billbot's real WSGI app on a local port, signed users."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from storage.db import Database
from tests import factories as f
from tests.fakes.slack_api import FakeSlackAPI
from tests.harness import AppServer, SlackUser, shut_down, signed_user
from tests.slack.desk import Desk, open_desk

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(users=f.PROFILES) as api:
        yield api


@pytest.fixture
def signing_key(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The deployment key, made up front (on PostgreSQL billbot never generates one itself)."""
    from bot import context
    from bot.signing import load_key

    path = tmp_path / "keys" / "signing_key.pem"
    load_key(str(path), generate=True)
    monkeypatch.setenv("SIGNING_KEY_PATH", str(path))
    context.reset()
    return context.get_key()


@dataclass
class World:
    db: Database
    api: FakeSlackAPI
    server: AppServer
    key: Any
    users: dict[str, SlackUser] = field(default_factory=dict)

    def as_user(self, slack_id: str) -> SlackUser:
        return signed_user(self.users, self.server, self.api, SECRET, slack_id)

    def wait(self) -> None:
        self.server.wait_idle()


def _world(db: Database, api: FakeSlackAPI, monkeypatch: pytest.MonkeyPatch, jobs_mode: str | None) -> Iterator[World]:
    from bot import context, jobs
    from bot.app import create_app, create_wsgi

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("SLACK_API_URL", api.url)
    monkeypatch.setenv("EXCEPTIONS_CHANNEL", f.CHANNEL)
    if jobs_mode is None:
        monkeypatch.delenv("BILLBOT_JOBS", raising=False)
        monkeypatch.delenv("BILLBOT_MODE", raising=False)
    else:
        monkeypatch.setenv("BILLBOT_JOBS", jobs_mode)
    context.reset()
    app = create_app()
    server = AppServer(create_wsgi(app=app))
    w = World(db, api, server, context.get_key())
    f.seed(db)
    try:
        yield w
    finally:
        shut_down(server, w.users)
        if jobs_mode is None:
            jobs.shutdown()


@pytest.fixture
def world(db: Database, fake_slack: FakeSlackAPI, signing_key: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The app with background work inline (it runs in the listener thread, after the ack)."""
    yield from _world(db, fake_slack, monkeypatch, "inline")


@pytest.fixture
def embedded_world(db: Database, fake_slack: FakeSlackAPI, signing_key: Any,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The app as ``billbot serve`` runs it: decisions in the jobs facade's ``decisions`` process pool."""
    yield from _world(db, fake_slack, monkeypatch, None)


@pytest.fixture
def desk(db: Database, key: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    """The billing desk of tests/slack/desk.py, jobs inline."""
    with open_desk(db, key, monkeypatch) as d:
        yield d
