"""Issue 21 done-when: a reply in an exception's Slack thread (a signed ``event_callback`` to the real app)
becomes a comment — an audit record with author and time, shown in Details and carried in the evidence
pack; edits and deletions are recorded, not erased; retries and bots' posts are not kept."""

from __future__ import annotations

import json
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

from bot.documents import pdf
from bot.workflows.billing_run import run_billing
from bot.workflows.comments import comments_of
from bot.workflows.evidence import build_evidence_pack, verify_evidence_pack
from tests import factories as f
from tests.slack.helpers import audit_actions, click


def _reply(row: Any, user: str, text: str, ts: str) -> dict[str, Any]:
    return {"type": "message", "channel": row.channel, "user": user, "text": text, "ts": ts,
            "thread_ts": row.message_ts}


def test_thread_replies_become_comments_in_the_audit_log_details_and_evidence_pack(world: Any, tmp_path: Path) -> None:
    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    row = f.exception_row(world.db, eid)
    said = _reply(row, f.OPERATOR, "Checked the third-party report", "1767000000.000100")
    world.as_user(f.OPERATOR).event(said)
    world.as_user(f.OPERATOR).event(said)  # Slack's retry of the same message
    world.as_user(f.OPERATOR).event({**_reply(row, f.OPERATOR, "bot", "1767000000.000150"), "bot_id": "B0BILLBOT"})
    world.wait()  # Slack sends a message's events in order; billbot handles each after its ack
    world.as_user(f.OPERATOR).event({  # the author edits the reply
        "type": "message", "subtype": "message_changed", "hidden": True, "channel": row.channel,
        "ts": "1767000001.000000", "message": {**_reply(row, f.OPERATOR, "Checked the third-party report: same days",
                                                         "1767000000.000100"), "edited": {"user": f.OPERATOR}},
        "previous_message": said})
    world.wait()
    wrong = _reply(row, f.APPROVER, "wrong thread, sorry", "1767000000.000200")
    world.as_user(f.APPROVER).event(wrong)
    world.wait()
    world.as_user(f.APPROVER).event({  # … and deletes it
        "type": "message", "subtype": "message_deleted", "hidden": True, "channel": row.channel,
        "ts": "1767000002.000000", "deleted_ts": wrong["ts"], "previous_message": wrong})
    world.as_user(f.OPERATOR).event(_reply(row, f.OPERATOR, "not ours", "1767000000.000300") | {"thread_ts": "1.2"})
    world.wait()

    # signed audit records, with author and time; nothing erased
    added = audit_actions(world, "exception.comment")
    assert [(a.actor, a.subject_id, json.loads(a.payload)["text"]) for a in added] == [
        (f.OPERATOR, str(eid), "Checked the third-party report"), (f.APPROVER, str(eid), "wrong thread, sorry")]
    [edit] = audit_actions(world, "exception.comment_edited")
    assert json.loads(edit.payload) | {"kind": None} == {
        "kind": None, "preinvoice_id": pid, "ts": "1767000000.000100",
        "text": "Checked the third-party report: same days", "previous": "Checked the third-party report"}
    [deleted] = audit_actions(world, "exception.comment_deleted")
    assert (deleted.actor, json.loads(deleted.payload)["previous"]) == (f.APPROVER, "wrong thread, sorry")
    assert all(a.signature for a in [*added, edit, deleted])
    kept = comments_of(world.db, "exception", eid)
    assert [(c.user, c.text, len(c.edits), c.deleted_at is not None) for c in kept] == [
        (f.OPERATOR, "Checked the third-party report: same days", 1, False),
        (f.APPROVER, "wrong thread, sorry", 0, True)]

    # Details shows them
    world.as_user(f.APPROVER).click("exception_details", str(eid), channel=row.channel, message_ts=row.message_ts)
    world.wait()
    view = world.api.wait_for("views.open")[0]["view"]
    [section] = [b for b in view["blocks"] if b.get("block_id") == f"comments:{eid}"]
    text = section["text"]["text"]
    assert f"<@{f.OPERATOR}>" in text and "Checked the third-party report: same days _(edited 1×)_" in text
    assert "~wrong thread, sorry~ _(deleted" in text

    # decided and billed: the invoice's evidence pack carries the comments and their signed records
    assert click(world, f.APPROVER, eid, "approve").status == 200
    run = run_billing(world.db, period="2026-02", actor=f.OPERATOR, key=world.key, today=date(2026, 3, 1))
    [number] = run.created
    path = build_evidence_pack(world.db, number, tmp_path / "pack.zip", renderer=pdf, key=world.key,
                               out_dir=tmp_path / "out")
    assert verify_evidence_pack(path) == []
    with zipfile.ZipFile(path) as z:
        decisions = json.loads(z.read("decisions.json"))
        audit = [json.loads(line) for line in z.read("audit.jsonl").decode().splitlines()]
    [exc] = [e for e in decisions["exceptions"] if e["id"] == eid]
    assert [(c["user"], c["text"], c["deleted_at"] is not None) for c in exc["comments"]] == [
        (f.OPERATOR, "Checked the third-party report: same days", False), (f.APPROVER, "wrong thread, sorry", True)]
    assert exc["comments"][0]["edits"][0]["previous"] == "Checked the third-party report"
    assert [a["action"] for a in audit if a["action"].startswith("exception.comment")] == [
        "exception.comment", "exception.comment_edited", "exception.comment", "exception.comment_deleted"]


def test_events_out_of_order_and_unfurls_keep_the_same_comment(world: Any) -> None:
    """A deletion handled before its reply, and an edit that only unfurled a link, change nothing kept."""
    from bot.workflows.comments import capture_thread_message

    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)
    row = f.exception_row(world.db, eid)
    where = {"channel": row.channel, "thread_ts": row.message_ts, "key": world.key}
    capture_thread_message(world.db, **where, user=f.APPROVER, text="oops", ts="1.5", change="comment_deleted",
                           previous="oops")
    capture_thread_message(world.db, **where, user=f.APPROVER, text="oops", ts="1.5")
    capture_thread_message(world.db, **where, user=f.OPERATOR, text="see https://x.example", ts="1.6")
    assert capture_thread_message(world.db, **where, user=f.OPERATOR, text="see https://x.example", ts="1.6",
                                  change="comment_edited", previous="see https://x.example") is None
    kept = comments_of(world.db, "exception", eid)
    assert [(c.user, c.text, len(c.edits), c.deleted_at is not None) for c in kept] == [
        (f.APPROVER, "oops", 0, True), (f.OPERATOR, "see https://x.example", 0, False)]
