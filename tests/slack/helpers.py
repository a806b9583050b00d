"""Small helpers the Slack tests share: read the fake's state, click what a user sees."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import AuditLog, Decision
from tests import factories as f
from tests.harness import Response
from tests.slack.conftest import World


def message_of(world: World, exception_id: int) -> dict[str, Any]:
    row = f.exception_row(world.db, exception_id)
    assert row.channel and row.message_ts, "the exception's message was not posted"
    return world.api.message(row.channel, row.message_ts)


def buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for b in blocks or []:
        if b["type"] == "actions":
            for e in b["elements"]:
                out[e["action_id"]] = e["value"]
    return out


def click(world: World, user: str, exception_id: int, decision: str, **kw: Any) -> Response:
    """``user`` clicks the decision button on the exception's message as it is now."""
    row = f.exception_row(world.db, exception_id)
    value = buttons(message_of(world, exception_id)["blocks"])[f"decide_{decision}"]
    r = world.as_user(user).click(f"decide_{decision}", value, channel=row.channel, message_ts=row.message_ts, **kw)
    world.wait()
    return r


def submit_reason(world: World, user: str, reason: str) -> Response:
    """Submit the reason modal last opened for ``user``."""
    opened = [c for c in world.api.calls_to("views.open") if c["view"].get("callback_id") == "decision_reason"]
    assert opened, "no reason modal was opened"
    r = world.as_user(user).submit_view(opened[-1]["view"], {"reason": {"reason_input": reason}})
    world.wait()
    return r


def ephemerals(world: World, user: str) -> list[str]:
    return [c["text"] for c in world.api.calls_to("chat.postEphemeral") if c["user"] == user]


def decisions(world: World, exception_id: int) -> list[Decision]:
    with world.db.read() as s:
        return list(s.execute(select(Decision).where(Decision.exception_id == exception_id)
                              .order_by(Decision.id)).scalars())


def audit_actions(world: World, action: str) -> list[AuditLog]:
    with world.db.read() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).scalars())


def spy_module(monkeypatch: pytest.MonkeyPatch, name: str, **fns: Any) -> types.ModuleType:
    """Replace functions of module ``name`` (a stub module if it does not exist yet)."""
    try:
        mod = importlib.import_module(name)
    except ImportError:
        mod = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, mod)
    for attr, fn in fns.items():
        monkeypatch.setattr(mod, attr, fn, raising=False)
    return mod
