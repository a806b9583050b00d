"""Cron schedules: stored in the database, idempotent, survive restarts, fire once per occurrence."""

from __future__ import annotations

import json
import time

import pytest
import time_machine
from sqlalchemy import func, select
from typer.testing import CliRunner

from billing.errors import Invalid, NotFound
from bot import context
from bot.cli import app as cli
from bot.scheduler import Clock, due_slot
from bot.workflows.schedules import add_schedule, list_schedules, remove_schedule
from storage.db import Database
from storage.models import AuditLog
from tests import factories as f

NIGHTLY = dict(task="sync", args={"source": "tracker", "mode": "partial"}, cron="0 2 * * *")


def add(db, key, **kw):  # type: ignore[no-untyped-def]
    spec = {**NIGHTLY, **kw}
    return add_schedule(db, actor="UOPS", signing_key=key, timezone="UTC", **spec)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, task: str, **args):  # type: ignore[no-untyped-def]
        self.calls.append((task, args))


def audits(db: Database, action: str) -> int:
    with db.read() as s:
        return s.execute(select(func.count()).select_from(AuditLog).where(AuditLog.action == action)).scalar_one()


def test_adding_the_same_schedule_twice_keeps_one_row(db, key):
    first = add(db, key)
    second = add(db, key, args={"mode": "partial", "source": "tracker"}, cron="0  2 * * *")
    assert second.id == first.id
    assert [s.id for s in list_schedules(db)] == [first.id]
    assert audits(db, "schedule.added") == 1
    other = add(db, key, args={"source": "tracker", "mode": "standard"}, cron="0 3 * * 0")
    assert other.id != first.id


def test_a_bad_schedule_names_every_problem(db, key):
    with pytest.raises(Invalid) as e:
        add_schedule(db, task="launch", args={}, cron="61 * * *", actor="U", signing_key=key, timezone="Mars/Base")
    text = "\n".join(e.value.problems)
    assert "task: unknown task 'launch'" in text
    assert "timezone: unknown time zone" in text
    assert "cron: '61 * * *'" in text
    with pytest.raises(Invalid, match="needs source"):
        add_schedule(db, task="sync", args={}, cron="0 2 * * *", actor="U", signing_key=key)


def test_a_duplicate_schedule_does_not_double_run(db, key):
    add(db, key)
    add(db, key)
    rec = Recorder()
    clock = Clock(db, enqueue=rec, key=key, digest_cron="")
    loaded = clock.load()
    assert len(loaded) == 1
    assert [j.id for j in clock.jobs()] == list(loaded.values())

    (sid,) = loaded
    with time_machine.travel(f.utc(2026, 3, 3, 2, 0, 1), tick=False):
        job = clock.scheduler.get_job(f"schedule:{sid}")
        job.func(*job.args)  # APScheduler firing the job
        job.func(*job.args)  # … and a duplicate firing of the same occurrence
        other_clock = Clock(db, enqueue=rec, key=key, digest_cron="")  # a second clock by mistake
        assert other_clock.fire(sid) is False
        assert other_clock.catch_up() == []
    assert rec.calls == [("sync", {"source": "tracker", "mode": "partial"})]
    assert audits(db, "schedule.fired") == 1

    with time_machine.travel(f.utc(2026, 3, 4, 2, 0, 1), tick=False):  # next night: fires again, once
        assert clock.fire(sid) is True
        assert clock.fire(sid) is False
    assert len(rec.calls) == 2


def test_a_schedule_survives_a_restart(db, key):
    row = add(db, key, task="billing_run", args={"period": "previous_month"}, cron="0 6 2 * *")
    with time_machine.travel(f.utc(2026, 3, 10, 12), tick=False):
        clock = Clock(db, enqueue=Recorder(), key=key, digest_cron="").start(paused=True)
        before = {(j.id, str(j.trigger), j.next_run_time) for j in clock.jobs() if j.id.startswith("schedule:")}
        clock.shutdown()
    assert before and {j[0] for j in before} == {f"schedule:{row.id}"}

    url = db.url
    context.reset()  # the process is gone; a new one builds its scheduler from the database
    with time_machine.travel(f.utc(2026, 3, 10, 12), tick=False):
        clock2 = Clock(Database(url), enqueue=Recorder(), key=key, digest_cron="").start(paused=True)
        after = {(j.id, str(j.trigger), j.next_run_time) for j in clock2.jobs() if j.id.startswith("schedule:")}
        clock2.shutdown()
    assert after == before
    (job,) = after
    assert job[2] == f.utc(2026, 4, 2, 6)


def test_an_occurrence_missed_while_down_runs_once_within_the_grace_period(db, key):
    with time_machine.travel(f.utc(2026, 3, 1, 12), tick=False):
        row = add(db, key)
    rec = Recorder()
    # the clock was down at 02:00 and comes back at 02:40: within the hour of grace → one catch-up run
    with time_machine.travel(f.utc(2026, 3, 2, 2, 40), tick=False):
        clock = Clock(db, enqueue=rec, key=key, digest_cron="").start(paused=True)
        clock.shutdown()
    assert ("sync", row.args) in rec.calls
    # it restarts again at 02:50: that occurrence is done
    with time_machine.travel(f.utc(2026, 3, 2, 2, 50), tick=False):
        assert Clock(db, enqueue=rec, key=key, digest_cron="").catch_up() == []
    # down across the next night until 05:00: beyond the grace period, skipped until the next night
    with time_machine.travel(f.utc(2026, 3, 3, 5, 0), tick=False):
        assert Clock(db, enqueue=rec, key=key, digest_cron="").catch_up() == []
    assert [c for c in rec.calls if c[0] == "sync"] == [("sync", row.args)]


def test_a_new_schedule_does_not_fire_for_an_occurrence_before_it_existed(db, key):
    with time_machine.travel(f.utc(2026, 3, 2, 2, 30), tick=False):
        add(db, key)
        rec = Recorder()
        assert Clock(db, enqueue=rec, key=key, digest_cron="").catch_up() == []
    assert rec.calls == []


def test_due_slot_respects_the_schedule_time_zone():
    # 02:00 Berlin is 01:00 UTC in winter
    assert due_slot("0 2 * * *", "Europe/Berlin", f.utc(2026, 3, 2, 1, 30)) == f.utc(2026, 3, 2, 1, 0)
    assert due_slot("0 2 * * *", "Europe/Berlin", f.utc(2026, 3, 2, 2, 30)) is None


def test_the_running_clock_sweeps_at_start_and_every_interval_and_reloads(db, key):
    rec = Recorder()
    clock = Clock(db, enqueue=rec, key=key, sweep_every=1, reload_every=1, digest_cron="0 8 * * *")
    clock.start()
    try:
        assert rec.calls[0] == ("sla_sweep", {"render_grace_seconds": 0})  # at start-up: every pending PDF too
        assert {j.id for j in clock.jobs()} >= {"builtin:sla_sweep", "builtin:reload", "builtin:digest"}
        row = add(db, key)  # added by another process (CLI, Slack) while the clock runs
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            clock.scheduler.get_job(f"schedule:{row.id}") is None or sum(c[0] == "sla_sweep" for c in rec.calls) < 2
        ):
            time.sleep(0.05)
        assert clock.scheduler.get_job(f"schedule:{row.id}") is not None
        assert sum(c[0] == "sla_sweep" for c in rec.calls) >= 2
        job = clock.scheduler.get_job(f"schedule:{row.id}")
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 3600)
        remove_schedule(db, row.id, actor="UOPS", signing_key=key)
        clock.load()
        assert clock.scheduler.get_job(f"schedule:{row.id}") is None
    finally:
        clock.shutdown()


def test_a_digest_schedule_row_replaces_the_built_in_digest(db, key):
    clock = Clock(db, enqueue=Recorder(), key=key, digest_cron="0 8 * * *")
    clock.load()
    assert clock.scheduler.get_job("builtin:digest") is not None
    add(db, key, task="digest", args={}, cron="30 7 * * 1-5")
    clock.load()
    assert clock.scheduler.get_job("builtin:digest") is None


def test_remove_schedule(db, key):
    row = add(db, key)
    remove_schedule(db, row.id, actor="UOPS", signing_key=key)
    assert list_schedules(db) == []
    with pytest.raises(NotFound):
        remove_schedule(db, row.id, actor="UOPS", signing_key=key)
    assert audits(db, "schedule.removed") == 1


def test_cli_schedule_add_list_remove(db):
    f.add_user(db, f.OPERATOR, ["operator"])  # the CLI acts as a known operator (BILLBOT_USER)
    r = CliRunner()
    args = ["schedule", "add", "--task", "sync", "--cron", "0 2 * * *", "--arg", "source=tracker",
            "--arg", "mode=partial", "--timezone", "UTC", "--json"]
    out = r.invoke(cli, args)
    assert out.exit_code == 0, out.output
    created = json.loads(out.stdout)
    assert created["created"] is True and created["args"] == {"source": "tracker", "mode": "partial"}
    again = json.loads(r.invoke(cli, args).stdout)
    assert again["id"] == created["id"] and again["created"] is False

    listed = json.loads(r.invoke(cli, ["schedule", "list", "--json"]).stdout)
    assert [s["id"] for s in listed] == [created["id"]]
    assert listed[0]["cron"] == "0 2 * * *" and listed[0]["next_run_at"].endswith("T02:00:00+00:00")

    bad = r.invoke(cli, ["schedule", "add", "--task", "sync", "--cron", "nope", "--arg", "source"])
    assert bad.exit_code == 2
    assert "NAME=VALUE" in bad.stderr

    assert r.invoke(cli, ["schedule", "remove", str(created["id"])]).exit_code == 0
    missing = r.invoke(cli, ["schedule", "remove", str(created["id"])])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    assert json.loads(r.invoke(cli, ["schedule", "list", "--json"]).stdout) == []
