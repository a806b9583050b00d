"""Where a decision runs: the web process only acks a click; the decision is the jobs facade's
``decide`` task, run (as ``billbot serve`` runs it) in the ``decisions`` process pool, below the web
server's priority. Signed requests to the real WSGI app, the fake Web API records what Slack sees.
"""

from __future__ import annotations

import json
import os
from typing import Any

from bot import jobs
from tests import factories as f
from tests.slack.helpers import audit_actions, buttons, click, decisions, ephemerals, message_of, submit_reason


def _variance(world: Any) -> int:
    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    return eid


def test_approve_is_decided_in_the_decisions_pool_and_the_message_updated(embedded_world):
    world = embedded_world
    eid = _variance(world)
    assert click(world, f.APPROVER, eid, "approve").status == 200
    assert "decisions" in jobs._procs  # the decision went to the pool's process, not a web thread
    row = f.exception_row(world.db, eid)
    assert (row.state, row.decided_by) == ("approved", f.APPROVER)
    [d] = decisions(world, eid)
    assert d.actor_name == "Arne Approver"  # users.info from the pool process, against the fake API
    msg = message_of(world, eid)
    assert buttons(msg["blocks"]) == {}
    [reply] = msg["replies"]
    assert reply["text"].startswith(f":white_check_mark: Approved by <@{f.APPROVER}>")


def test_double_click_and_refusals_are_told_from_the_pool(embedded_world):
    world = embedded_world
    eid = _variance(world)
    value = buttons(message_of(world, eid)["blocks"])["decide_approve"]
    row = f.exception_row(world.db, eid)
    click(world, f.NOBODY, eid, "approve")
    assert "Approve needs an approver: " in ephemerals(world, f.NOBODY)[-1]
    assert len(audit_actions(world, "decision.refused")) == 1
    user = world.as_user(f.APPROVER)
    for _ in range(3):  # three clicks before any of them is decided: two processes race for it
        user.click("decide_approve", value, channel=row.channel, message_ts=row.message_ts)
    world.wait()
    assert len(decisions(world, eid)) == 1
    assert len(audit_actions(world, "decision.recorded")) == 1
    told = ephemerals(world, f.APPROVER)
    assert len(told) == 2 and all(t.startswith(f":raised_hand: Already approved by <@{f.APPROVER}>") for t in told)


def test_reject_with_a_reason_from_the_modal_in_the_pool(embedded_world):
    world = embedded_world
    eid = _variance(world)
    click(world, f.APPROVER, eid, "reject")  # the modal opens from the web process (fresh trigger id)
    assert submit_reason(world, f.APPROVER, "Client disputes the delivered clicks").status == 200
    row = f.exception_row(world.db, eid)
    assert (row.state, row.decision) == ("rejected", "reject")
    [entry] = audit_actions(world, "decision.recorded")
    assert json.loads(entry.payload)["reason"] == "Client disputes the delivered clicks"


def test_pool_processes_run_below_the_web_servers_priority(db, monkeypatch):
    """Decisions at niceness +10, documents at +15: on a small machine the OS gives the CPU to the
    threads that ack Slack first, and a run's PDFs to people's decisions."""
    from tests.tasks import tasks_for_tests  # noqa: F401 - registers test_niceness

    monkeypatch.delenv("BILLBOT_JOBS", raising=False)
    monkeypatch.delenv("BILLBOT_MODE", raising=False)
    try:
        here = os.nice(0)
        dec = jobs.submit("test_niceness", queue_name="decisions").result(60)
        doc = jobs.submit("test_pid").result(60)
        assert dec["pid"] != os.getpid() and dec["pid"] != doc["pid"]  # one pool per queue
        assert dec["niceness"] == min(19, here + 10)
        assert doc["niceness"] == min(19, here + 15)
        assert jobs.wait_idle(5) and jobs.inflight() == 0
    finally:
        jobs.shutdown()
