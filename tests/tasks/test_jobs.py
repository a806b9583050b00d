"""The jobs facade in its inline and embedded modes, and the per-key locks in the database."""

from __future__ import annotations

import os
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from billing.errors import Conflict, NotFound
from bot import jobs
from tests.tasks import tasks_for_tests as tt


@pytest.fixture
def inline(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BILLBOT_JOBS", "inline")
    yield
    jobs.shutdown()


@pytest.fixture
def embedded(monkeypatch, db):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("BILLBOT_JOBS", raising=False)
    monkeypatch.delenv("BILLBOT_MODE", raising=False)
    yield
    jobs.shutdown()


def test_inline_runs_now_and_keeps_the_outcome(db, inline):
    h = jobs.submit("test_echo", value="ab")
    assert h.mode == "inline" and h.done() and h.result() == "abab"
    bad = jobs.submit("test_boom")
    assert isinstance(bad.exception(), ValueError)
    with pytest.raises(ValueError, match="boom"):
        bad.result()
    with pytest.raises(NotFound, match="unknown task 'nope'"):
        jobs.submit("nope")


def test_inline_schedule_at_waits_for_its_time(db, inline):
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    with time_machine.travel(t0, tick=False):
        jobs.schedule_at(t0 + timedelta(minutes=5), "test_echo", value="later")
        now_handle = jobs.schedule_at(t0 - timedelta(seconds=1), "test_echo", value="now")
    assert now_handle.result() == "nownow"
    assert jobs.run_due(t0 + timedelta(minutes=4)) == []
    (h,) = jobs.run_due(t0 + timedelta(minutes=5))
    assert h.result() == "laterlater"
    with pytest.raises(ValueError, match="aware"):
        jobs.schedule_at(datetime(2026, 3, 2), "test_echo", value="x")  # noqa: DTZ001


def test_arguments_must_be_json(db, inline):
    with pytest.raises(TypeError):
        jobs.submit("test_echo", value=object.__new__(type("X", (), {"__str__": None})))


def test_embedded_runs_in_a_thread_and_cpu_work_in_another_process(db, embedded):
    assert jobs.mode() == "embedded"
    h = jobs.submit("test_echo", value="x")
    assert h.result(10) == "xx"
    p = jobs.submit("test_pid")
    out = p.result(60)
    assert out["pid"] != os.getpid()
    assert out["db"] == db.url  # the child adopted this test's database


def test_embedded_schedule_at_fires_later(db, embedded):
    h = jobs.schedule_at(datetime.now(UTC) + timedelta(milliseconds=200), "test_echo", value="t")
    assert not h.done()
    assert h.result(10) == "tt"


def test_the_per_key_lock_is_exclusive_and_released(db, inline):
    with jobs.lock("sync:tracker", holder="first"):
        assert jobs.is_locked("sync:tracker")
        with pytest.raises(Conflict, match="sync:tracker is busy \\(held by first"):
            jobs.acquire_lock("sync:tracker")
        jobs.acquire_lock("sync:adserver")  # another key is independent
    assert not jobs.is_locked("sync:tracker")


def test_a_task_is_refused_while_its_key_is_locked(db, inline):
    with jobs.lock("echo:k1"):
        h = jobs.submit("test_echo", value="v", key="k1")
        assert isinstance(h.exception(), Conflict)
        assert jobs.submit("test_echo", value="v", key="k2").result() == "vv"


def test_an_expired_lock_is_taken_over(db, inline):
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    stale = jobs.acquire_lock("run:2026-02", holder="dead-process", ttl=timedelta(minutes=10), now=t0)
    token = jobs.acquire_lock("run:2026-02", holder="new", now=t0 + timedelta(minutes=11))
    assert jobs.release_lock("run:2026-02", stale) is False  # the dead holder cannot release ours
    assert jobs.release_lock("run:2026-02", token) is True


def test_concurrent_lock_takers_one_wins(db, inline):
    n = 8
    barrier = threading.Barrier(n)
    won, lost = [], []

    def take() -> None:
        barrier.wait()
        try:
            won.append(jobs.acquire_lock("run:2026-03", db=db))
        except Conflict:
            lost.append(1)

    threads = [threading.Thread(target=take) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(lost) == n - 1


def test_one_task_per_key_in_the_embedded_pool(db, embedded):
    tt.GATE.clear()
    first = jobs.submit("test_wait", seconds=10)
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while not jobs.is_locked("wait") and datetime.now(UTC) < deadline:
        threading.Event().wait(0.02)
    second = jobs.submit("test_wait", seconds=10)
    assert isinstance(second.exception(10), Conflict)
    tt.GATE.set()
    assert first.result(10) == "waited"


def test_billing_and_sync_tasks_call_their_workflows(db, inline, monkeypatch):
    calls = []
    from bot.tasks import scheduled

    monkeypatch.setattr(scheduled, "run_sync", lambda db, **kw: calls.append(("sync", kw)) or {"rows": 3})
    monkeypatch.setattr(scheduled, "run_billing", lambda db, **kw: calls.append(("run", kw)) or {"created": ["INV-1"]})

    assert jobs.submit("sync", source="tracker", mode="partial").result() == {"rows": 3}
    h = jobs.submit("billing_run", period="previous_month", today="2026-01-05", actor="UOPS")
    assert h.result() == {"created": ["INV-1"]}
    (_, skw), (_, rkw) = calls
    assert (skw["source"], skw["mode"], skw["actor"]) == ("tracker", "partial", "scheduler")
    assert skw["signing_key"] is not None
    assert (rkw["period"], rkw["today"], rkw["actor"], rkw["advertisers"]) == ("2025-12", date(2026, 1, 5), "UOPS", [])
    assert not jobs.is_locked("sync:tracker") and not jobs.is_locked("run:2025-12")


def test_sweep_task_runs_the_sla_sweep(db, inline, slack):
    from tests import factories as f

    f.base(db)
    exc = f.exception(db, created_at=datetime.now(UTC) - timedelta(days=2))
    out = jobs.submit("sla_sweep").result()
    assert out["reminded"] == [exc] and out["escalated"] == [exc]
    assert len(slack.calls_to("conversations.open")) == 2
