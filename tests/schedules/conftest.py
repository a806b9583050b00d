from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.slack_api import FakeSlackAPI


@pytest.fixture
def slack(db, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlackAPI]:  # type: ignore[no-untyped-def]
    """The fake Slack Web API; ``bot.slack.client.get_client()`` talks to it."""
    from bot.settings import get_settings

    with FakeSlackAPI() as fake:
        monkeypatch.setenv("SLACK_API_URL", fake.url)
        monkeypatch.setenv("MANAGERS_CHANNEL", "billing-managers")
        get_settings.cache_clear()
        yield fake
    get_settings.cache_clear()


@pytest.fixture
def client(slack: FakeSlackAPI):  # type: ignore[no-untyped-def]
    from bot.slack.client import make_client

    return make_client("xoxb-test", slack.url)


def pytest_ignore_collect(collection_path, config):  # type: ignore[no-untyped-def]
    """The distributed-mode tests need PostgreSQL: collected only under ``--db postgres``."""
    if collection_path.name == "test_distributed.py" and config.getoption("--db") != "postgres":
        return True
    return None
