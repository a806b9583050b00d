"""App Home: ``app_home_opened`` → ``views.publish`` of the viewer's queue (:mod:`bot.slack.home`)."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.handlers.deps import deps_of
from bot.slack.home import publish_home


def on_home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if event.get("tab", "home") != "home":
        return
    publish_home(client, deps_of(context).db(), str(event.get("user")))


def register(app: App) -> None:
    app.event("app_home_opened")(on_home_opened)
