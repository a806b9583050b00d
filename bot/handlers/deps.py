"""What handlers need besides the payload: settings, the database, the signing key, and a way to run
work in the background. Bolt puts it into each request's ``context["billbot"]`` (see ``bot.app``)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.settings import Settings
from storage.db import Database


@dataclass(frozen=True)
class Deps:
    settings: Settings
    db: Callable[[], Database]
    key: Callable[[], Ed25519PrivateKey]
    background: Callable[..., Any]  # background(task_name, **kwargs): a jobs-facade task (bot.tasks)
    work: Executor  # this process's pool for the work after an ack (decisions)

    def defer(self, body: dict[str, Any], client: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` on the work pool, so Bolt's listener threads only ever ack: a burst of clicks is
        acked at once even while earlier decisions still wait for the database. Errors go to the
        same mapping as ``@app.error`` (an ephemeral message to the clicker)."""

        def run() -> None:
            try:
                fn(*args, **kwargs)
            except Exception as e:  # rendered to the user by the one error mapping, never swallowed
                from bot.handlers.errors import on_error

                on_error(e, body, client)

        self.work.submit(run)

    def today(self, now: datetime) -> date:
        """Business date in the deployment's time zone (invoice dates, default periods)."""
        return now.astimezone(self.settings.tz).date()


def deps_of(context: Any) -> Deps:
    d = context["billbot"]
    assert isinstance(d, Deps)
    return d
