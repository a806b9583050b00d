"""The daily dunning proposal in Slack: posted by the scheduled task, "Skip one" and "Send all" by a
finance manager (others are refused), letters rendered and attached in the thread."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from storage.models import DunningLetter, Invoice
from tests import factories as f
from tests.slack.conftest import World
from tests.slack.helpers import ephemerals


def _invoice(world: World, seq: int, gross: str) -> None:
    g = Decimal(gross)
    net = (g / Decimal("1.19")).quantize(Decimal("0.01"))
    with world.db.transaction() as s:
        s.add(Invoice(number=f"INV-2026-{seq:06d}", kind="invoice", legal_entity_id=f.LE, advertiser_id=f.ADV,
                      series="INV-{year}-{seq:06d}", year=2026, seq=seq, issue_date=date(2026, 3, 1),
                      due_date=date(2026, 3, 31), currency="EUR", net=net, vat=g - net, gross=g,
                      vat_rate=Decimal("19"), vat_category="S", content_hash="0" * 64,
                      created_at=datetime(2026, 3, 1, 9, tzinfo=UTC)))


def _act(world: World, user: str, channel: str, ts: str, action: dict[str, Any]) -> None:
    u = world.as_user(user)
    payload = {"type": "block_actions", "api_app_id": "A0BILLBOT", "token": "legacy",
               "team": {"id": u.team_id, "domain": "billbot"},
               "user": {"id": user, "username": user.lower(), "team_id": u.team_id},
               "trigger_id": "t", "response_url": u.response_url,
               "actions": [{**action, "block_id": "dunning", "action_ts": f"{time.time():.6f}"}],
               "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
               "channel": {"id": channel, "name": "billing-managers"}, "message": {"ts": ts, "type": "message"}}
    assert u.interactive(payload).status == 200
    world.wait()


def test_proposal_skip_one_and_send_all(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.tasks.scheduled import dunning_proposal

    monkeypatch.setenv("BILLBOT_VAR_DIR", str(tmp_path / "var"))
    _invoice(world, 1, "119.00")
    _invoice(world, 2, "238.00")
    with time_machine.travel(datetime(2026, 4, 8, 7, tzinfo=UTC), tick=False):  # due + 8: reminders
        posted = dunning_proposal(today="2026-04-08")
        channel, ts = posted["channel"], posted["ts"]
        msg = world.api.message(channel, ts)
        text = json.dumps(msg["blocks"])
        assert posted["letters"] == 2 and "*Reminders* (level 1): 2" in text and "238.00 EUR" in text

        _act(world, f.APPROVER, channel, ts, {"type": "button", "action_id": "dunning_send_all",
                                               "value": "2026-04-08"})
        assert any("finance_manager" in t for t in ephemerals(world, f.APPROVER))
        _act(world, f.MANAGER, channel, ts, {"type": "static_select", "action_id": "dunning_skip_one",
                                              "selected_option": {"text": {"type": "plain_text", "text": "x"},
                                                                  "value": "2026-04-08:INV-2026-000001"}})
        assert "INV-2026-000001" not in json.dumps(world.api.message(channel, ts)["blocks"])
        _act(world, f.MANAGER, channel, ts, {"type": "button", "action_id": "dunning_send_all",
                                              "value": "2026-04-08"})
    msg = world.api.message(channel, ts)
    assert f"<@{f.MANAGER}> sent 1 letter(s)" in json.dumps(msg["blocks"])
    with world.db.read() as s:
        rows = [(r.level, r.state, r.pdf_path is not None) for r in
                s.execute(select(DunningLetter).order_by(DunningLetter.invoice_id)).scalars()]
    assert rows == [(1, "skipped", False), (1, "sent", True)]
    assert (tmp_path / "var" / "dunning" / "INV-2026-000002-L1.pdf").read_bytes().startswith(b"%PDF")
    assert any(data.startswith(b"%PDF") for data in world.api.uploads.values())
