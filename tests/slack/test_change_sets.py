"""Issue 14: a master-data change set in Slack — posted with its diff and Approve / Reject; its author's
own click is refused; another approver's click applies it, a Reject (with a reason) drops it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bot.workflows.load import load
from storage.models import CampaignItem, ChangeSet
from tests import factories as f

AUTHOR = "U07MAKER"


def _data(rate: str) -> dict[str, Any]:
    return f.scenario(advertisers=[f.advertiser("nord", "Autohaus Nord")],
                      campaigns=[f.campaign("cn", "nord", [f.delivery("disp", "cpm", rate)])])


def _posted(world: Any, cs_id: int) -> dict[str, Any]:
    world.api.wait_for("chat.postMessage", where=lambda c: f"Change set #{cs_id} " in str(c.get("text")))
    with world.db.read() as s:
        cs = s.get(ChangeSet, cs_id)
        assert cs is not None and cs.message_ts
        return world.api.message(cs.channel, cs.message_ts)


def _click(world: Any, user: str, cs_id: int, which: str) -> None:
    msg = _posted(world, cs_id)
    value = next(e["value"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == f"change_set_{which}")
    with world.db.read() as s:
        cs = s.get(ChangeSet, cs_id)
        assert cs is not None
        channel, ts = cs.channel, cs.message_ts
    world.as_user(user).click(f"change_set_{which}", value, channel=channel, message_ts=ts)
    world.wait()


def _rate(world: Any) -> Decimal | None:
    with world.db.read() as s:
        item = s.get(CampaignItem, "disp")
        assert item is not None
        return item.rate


def test_a_change_set_is_decided_in_slack_by_someone_other_than_its_author(world: Any) -> None:
    f.add_user(world.db, AUTHOR, ["operator", "approver"], cached=True)
    f.add_user(world.db, f.APPROVER, ["approver"], cached=True)
    load(world.db, _data("4.00"), actor=AUTHOR, signing_key=world.key, what="v1.yaml")
    res = load(world.db, _data("5.00"), actor=AUTHOR, signing_key=world.key, what="v2.yaml")
    assert res.change_set is not None
    msg = _posted(world, res.change_set)
    text = "\n".join(b["text"]["text"] for b in msg["blocks"] if b.get("text"))
    assert "Master-data change set" in text and "item `disp` rate: ~4~ → *5*" in text

    _click(world, AUTHOR, res.change_set, "approve")
    said = [c["text"] for c in world.api.calls_to("chat.postEphemeral") if c["user"] == AUTHOR]
    assert said and "your own change" in said[-1]
    assert _rate(world) == Decimal("4.00")

    _click(world, f.APPROVER, res.change_set, "approve")
    assert _rate(world) == Decimal("5")
    updated = world.api.wait_for("chat.update")[-1]
    assert "Approved by <@U02APPROVER>" in str(updated["blocks"])
    replies = [c["text"] for c in world.api.calls_to("chat.postMessage") if c.get("thread_ts")]
    assert any("approved change set" in r for r in replies)

    again = load(world.db, _data("6.00"), actor=AUTHOR, signing_key=world.key, what="v3.yaml")
    assert again.change_set is not None
    _click(world, f.APPROVER, again.change_set, "reject")
    opened = [c for c in world.api.calls_to("views.open") if c["view"].get("callback_id") == "change_set_reason"]
    assert opened
    world.as_user(f.APPROVER).submit_view(opened[-1]["view"], {"reason": {"reason_input": "wrong rate card"}})
    world.wait()
    with world.db.read() as s:
        cs = s.get(ChangeSet, again.change_set)
        assert cs is not None and (cs.state, cs.decided_by, cs.reason) == ("rejected", f.APPROVER, "wrong rate card")
    assert _rate(world) == Decimal("5")
