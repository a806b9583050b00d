"""SLA timers are data: reminders and escalations fire exactly once — across downtime, restarts and
parallel sweepers."""

from __future__ import annotations

import threading
from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from bot import context
from bot.slack.sla import sweep
from storage.db import Database
from storage.models import AuditLog, BillingException
from tests import factories as f

T0 = f.utc(2026, 3, 2, 9, 0)


def audit_count(db: Database, action: str) -> int:
    with db.read() as s:
        return s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.action == action)).scalar_one()


def test_reminder_and_escalation_fire_once_when_the_process_was_down_across_due_at(db, key, slack, client):
    f.base(db)
    exc_id = f.exception(db, created_at=T0, sla=timedelta(hours=24))  # remind 21:00, due next day 09:00

    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        first = sweep(db, client=client, key=key)
    assert (first.reminded, first.escalated) == ([], [])
    assert slack.calls == []

    # the process is down from T0+1h to T0+30h: remind_at and due_at both pass unobserved.
    url = db.url
    context.reset()
    restarted = Database(url)
    with time_machine.travel(T0 + timedelta(hours=30), tick=False):
        res = sweep(restarted, client=client, key=key, managers_channel="billing-managers")
    assert res.reminded == [exc_id]
    assert res.escalated == [exc_id]
    assert res.failed == []

    # reminder: in the exception's thread, mentioning approvers but not the person who started the work
    posts = slack.calls_to("chat.postMessage")
    reminder = posts[0]
    assert reminder["channel"] == "CEXC"
    assert reminder["thread_ts"] == "1700000000.000100"
    assert "<@UAPP1>" in reminder["text"] and "<@UFM1>" in reminder["text"]
    assert "<@UAPP2>" not in reminder["text"]
    assert "Autohaus Nord" in reminder["text"] and "1,200.00 EUR" in reminder["text"]
    # escalation: the managers channel, then a DM to each finance manager
    assert posts[1]["channel"] == "billing-managers"
    assert "SLA breached" in posts[1]["text"]
    assert [p["users"] for p in slack.calls_to("conversations.open")] == ["UFM1", "UFM2"]
    assert [p["channel"] for p in posts[2:]] == ["DFM1", "DFM2"]  # the IM channels conversations.open gave UFM1, UFM2
    assert len(posts) == 4

    with restarted.read() as s:
        e = s.get(BillingException, exc_id)
        assert e.state == "escalated"
        assert e.escalated_at == T0 + timedelta(hours=30)
        assert e.reminded_at == T0 + timedelta(hours=30)
        assert e.version == 2

    # another restart and more sweeps, later: nothing fires again
    context.reset()
    again = Database(url)
    for hours in (30, 31, 60):
        with time_machine.travel(T0 + timedelta(hours=hours, minutes=1), tick=False):
            res = sweep(again, client=client, key=key)
        assert (res.reminded, res.escalated) == ([], [])
    assert len(slack.calls_to("chat.postMessage")) == 4
    assert audit_count(again, "exception.reminded") == 1
    assert audit_count(again, "exception.escalated") == 1


def test_reminder_at_half_the_sla_then_escalation_at_due_at(db, key, slack, client):
    f.base(db)
    exc_id = f.exception(db, created_at=T0, sla=timedelta(hours=8))
    with time_machine.travel(T0 + timedelta(hours=3, minutes=59), tick=False):
        assert sweep(db, client=client, key=key).reminded == []
    with time_machine.travel(T0 + timedelta(hours=4), tick=False):
        res = sweep(db, client=client, key=key)
    assert (res.reminded, res.escalated) == ([exc_id], [])
    with time_machine.travel(T0 + timedelta(hours=8), tick=False):
        res = sweep(db, client=client, key=key)
    assert (res.reminded, res.escalated) == ([], [exc_id])
    assert len(slack.calls_to("chat.postMessage")) == 1 + 1 + 2


def test_decided_exceptions_are_neither_reminded_nor_escalated(db, key, slack, client):
    f.base(db)
    f.exception(db, created_at=T0, state="approved")
    with time_machine.travel(T0 + timedelta(days=3), tick=False):
        res = sweep(db, client=client, key=key)
    assert (res.reminded, res.escalated) == ([], [])
    assert slack.calls == []


def test_an_unposted_exception_is_reminded_in_the_exceptions_channel(db, key, slack, client):
    f.base(db)
    f.exception(db, created_at=T0, channel=None, message_ts=None)
    with time_machine.travel(T0 + timedelta(hours=13), tick=False):
        sweep(db, client=client, key=key, exceptions_channel="billing-exceptions")
    (post,) = slack.calls_to("chat.postMessage")
    assert post["channel"] == "billing-exceptions"
    assert "thread_ts" not in post


def test_a_failed_post_hands_the_claim_back_and_the_next_sweep_posts_once(db, key, slack, client):
    f.base(db)
    exc_id = f.exception(db, created_at=T0)
    slack.fail["chat.postMessage"] = "channel_not_found"
    with time_machine.travel(T0 + timedelta(hours=13), tick=False):
        res = sweep(db, client=client, key=key)
    assert res.reminded == [] and res.failed and "channel_not_found" in res.failed[0]
    with db.read() as s:
        assert s.get(BillingException, exc_id).reminded_at is None
    assert audit_count(db, "exception.reminder_failed") == 1

    del slack.fail["chat.postMessage"]
    failed_attempts = len(slack.calls_to("chat.postMessage"))
    with time_machine.travel(T0 + timedelta(hours=13, minutes=1), tick=False):
        assert sweep(db, client=client, key=key).reminded == [exc_id]
        assert sweep(db, client=client, key=key).reminded == []
    assert len(slack.calls_to("chat.postMessage")) == failed_attempts + 1


def test_a_failed_dm_does_not_undo_the_escalation(db, key, slack, client):
    f.base(db)
    exc_id = f.exception(db, created_at=T0)
    slack.fail["conversations.open"] = "user_not_found"
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        res = sweep(db, client=client, key=key)
        assert sweep(db, client=client, key=key).escalated == []
    assert res.escalated == [exc_id]
    assert len(res.failed) == 2 and all("user_not_found" in x for x in res.failed)
    assert [p["channel"] for p in slack.calls_to("chat.postMessage")] == ["CEXC", "billing-managers"]


def test_parallel_sweepers_escalate_each_exception_exactly_once(db, key, slack, client, backend):
    """Threads with their own sessions (PostgreSQL: concurrent row locks; SQLite: BEGIN IMMEDIATE)."""
    f.base(db)
    ids = [f.exception(db, created_at=T0, amount=f"{100 + i}.00") for i in range(12)]
    n = 6
    barrier = threading.Barrier(n)
    results = []
    errors = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(sweep(db, now=T0 + timedelta(days=2), client=client, key=key))
        except Exception as e:  # pragma: no cover - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    escalated = sorted(i for r in results for i in r.escalated)
    reminded = sorted(i for r in results for i in r.reminded)
    assert escalated == ids
    assert reminded == ids
    managers_posts = [p for p in slack.calls_to("chat.postMessage") if p["channel"] == "billing-managers"]
    assert len(managers_posts) == len(ids)
    assert len(slack.calls_to("conversations.open")) == 2 * len(ids)
    assert audit_count(db, "exception.escalated") == len(ids)
    with db.read() as s:
        states = set(s.execute(select(BillingException.state)).scalars())
    assert states == {"escalated"}
