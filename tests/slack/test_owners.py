"""Issue 21, owners: every exception gets an owner by the rules (account owner, else who started the
work, else the legal entity's default); "Assign to me" and "Assign…" over signed HTTP change it
(audited, shown on the message); the owner gets the SLA reminder in a DM."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import time_machine
from sqlalchemy import update

from bot.slack.sla import sweep
from storage.models import Advertiser, LegalEntity
from tests import factories as f
from tests.slack.helpers import audit_actions, ephemerals, message_of


def _context(world: Any, eid: int) -> str:
    return " ".join(e["text"] for b in message_of(world, eid)["blocks"] if b["type"] == "context"
                    for e in b["elements"])


def test_owner_rules_account_owner_then_starter_then_entity_default(world: Any) -> None:
    pid = f.preinvoice(world.db)
    assert f.exception_row(world.db, f.open_exception(world.db, world.key, preinvoice_id=pid, name="a")).owner == \
        f.OPERATOR  # no account owner: who started the work
    with world.db.transaction() as s:
        s.execute(update(LegalEntity).values(default_owner=f.MANAGER))
    assert f.exception_row(world.db, f.open_exception(world.db, world.key, preinvoice_id=pid, name="b",
                                                      started_by="system")).owner == f.MANAGER
    with world.db.transaction() as s:
        s.execute(update(Advertiser).values(account_owner=f.APPROVER))
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid, name="c")
    assert f.exception_row(world.db, eid).owner == f.APPROVER
    world.api.wait_for("chat.postMessage", n=3, where=lambda c: c.get("thread_ts") is None)
    assert f"owner <@{f.APPROVER}>" in _context(world, eid)


def test_assign_to_me_and_assign_to_someone_else(world: Any) -> None:
    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    row = f.exception_row(world.db, eid)

    world.as_user(f.APPROVER).click("exception_assign_me", str(eid), channel=row.channel, message_ts=row.message_ts)
    world.wait()
    assert f.exception_row(world.db, eid).owner == f.APPROVER
    assert f"owner <@{f.APPROVER}>" in _context(world, eid)  # the message shows the new owner

    world.as_user(f.APPROVER).click("exception_assign", str(eid), channel=row.channel, message_ts=row.message_ts)
    world.wait()
    [opened] = [c for c in world.api.calls_to("views.open") if c["view"].get("callback_id") == "exception_assign_modal"]
    world.as_user(f.APPROVER).submit_view(opened["view"], {"owner": {"owner_input": f.MANAGER}})
    world.wait()
    assert f.exception_row(world.db, eid).owner == f.MANAGER
    assert [(a.actor, json.loads(a.payload)) for a in audit_actions(world, "exception.assigned")] == [
        (f.APPROVER, {"owner": f.APPROVER, "previous": f.OPERATOR}),
        (f.APPROVER, {"owner": f.MANAGER, "previous": f.APPROVER})]

    # someone outside the desk is refused, with what it needs
    f.add_user(world.db, "U09OUTSIDER", [])
    world.as_user("U09OUTSIDER").click("exception_assign_me", str(eid), channel=row.channel,
                                       message_ts=row.message_ts)
    world.wait()
    assert f.exception_row(world.db, eid).owner == f.MANAGER
    assert any("assigning an exception needs the" in t for t in ephemerals(world, "U09OUTSIDER"))


def test_the_owner_gets_the_reminder_in_a_dm(world: Any) -> None:
    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    row = f.exception_row(world.db, eid)
    from slack_sdk import WebClient

    client = WebClient(token="xoxb-test", base_url=world.api.url.rstrip("/") + "/")
    assert row.remind_at is not None
    with time_machine.travel(row.remind_at + timedelta(minutes=1), tick=False):
        assert sweep(world.db, client=client, key=world.key).reminded == [eid]
    dm = [c for c in world.api.calls_to("chat.postMessage") if c["channel"] == "D" + f.OPERATOR[1:]]
    assert len(dm) == 1 and dm[0]["text"].startswith(":hourglass_flowing_sand: You own variance #")
    assert [c["users"] for c in world.api.calls_to("conversations.open")] == [f.OPERATOR]


def test_cli_assign_and_the_owner_in_exceptions_list(world: Any) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid)
    runner = CliRunner()
    r = runner.invoke(app, ["exceptions", "assign", str(eid), "--to", f.MANAGER, "--as", f.APPROVER, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"id": eid, "owner": f.MANAGER, "previous": f.OPERATOR}
    r = runner.invoke(app, ["exceptions", "list", "--json"])
    assert [(x["id"], x["owner"]) for x in json.loads(r.stdout)] == [(eid, f.MANAGER)]
    r = runner.invoke(app, ["exceptions", "assign", str(eid), "--to", "U99NOBODY", "--as", f.APPROVER])
    assert r.exit_code != 0 and "U99NOBODY is not a billbot user" in r.output
