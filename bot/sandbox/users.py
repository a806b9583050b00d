"""The sandbox's people are billbot's own ``users`` table (scenario file or ``billbot users grant``), so the
visitor can pick "Arne Approver" or "Fiona Finance" and try what each role may do."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from bot.sandbox.workspace import SandboxUser
from storage.db import Database
from storage.models import User


def users_from_db(db: Database) -> Callable[[], list[SandboxUser]]:
    """A provider the :class:`~bot.sandbox.workspace.Workspace` calls whenever it needs a fresh list."""

    def load() -> list[SandboxUser]:
        with db.read() as s:
            return [
                SandboxUser(
                    id=u.slack_id,
                    name=u.name or u.slack_id,
                    email=u.email,
                    roles=tuple(sorted(u.role_names)),
                )
                for u in s.scalars(select(User).order_by(User.name))
            ]

    return load
