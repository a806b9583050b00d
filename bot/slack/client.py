"""The Slack Web API client: ``SLACK_API_URL`` as base URL (real Slack, the sandbox, or a test
fake), slack_sdk's retry handlers for rate limits (429 + Retry-After), server errors and
connection errors."""

from __future__ import annotations

from functools import lru_cache

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from storage.settings import get_settings


def make_client(token: str | None, base_url: str) -> WebClient:
    if not base_url.endswith("/"):
        base_url += "/"
    client = WebClient(token=token, base_url=base_url, timeout=10)
    client.retry_handlers.extend(
        [
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ]
    )
    return client


@lru_cache(maxsize=4)
def _client(token: str | None, base_url: str) -> WebClient:
    return make_client(token, base_url)


def get_client() -> WebClient:
    s = get_settings()
    return _client(s.slack_bot_token or "xoxb-sandbox", s.slack_api_url)


def forget_clients() -> None:
    """Drop the cached clients (the Slack API or token in the environment changed)."""
    _client.cache_clear()
