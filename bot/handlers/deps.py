"""What handlers need besides the payload: settings, the database, the signing key, and a way to run
work in the background. Bolt puts it into each request's ``context["billbot"]`` (see ``bot.app``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slack_bolt import BoltContext

from storage.db import Database
from storage.settings import Settings


@dataclass(frozen=True)
class Deps:
    settings: Settings
    db: Callable[[], Database]
    key: Callable[[], Ed25519PrivateKey]
    background: Callable[..., Any]  # background(task_name, **kwargs): submits a task (bot.tasks) by name

    def today(self, now: datetime) -> date:
        """Business date in the deployment's time zone (invoice dates, default periods)."""
        return now.astimezone(self.settings.tz).date()


def deps_of(context: BoltContext) -> Deps:
    d = context["billbot"]
    assert isinstance(d, Deps)
    return d
