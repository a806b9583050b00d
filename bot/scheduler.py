"""The clock: APScheduler 3 runs the ``schedules`` rows, the SLA sweep and the digest — and only
enqueues. Each firing calls :func:`bot.jobs.submit`, which runs the task in this process's pools
(embedded mode, the clock lives inside ``billbot serve``) or defers it to Procrastinate (distributed
mode, where exactly ONE ``billbot clock`` process runs this and the workers do the work).

Job defaults, deliberately:

- ``coalesce=True``: if several occurrences of a job were missed (the machine slept, the pool was
  busy), run it once, not once per missed occurrence — a sync or billing run is "bring things up
  to date", running it three times in a row is waste at best.
- ``max_instances=1``: a firing never overlaps the previous one of the same job (enqueueing is
  quick, but a slow database must not pile up sweeps).
- ``misfire_grace_time = 1 hour``: an occurrence that could not fire on time (clock process
  restarted during a deploy, host suspended) still fires if it is at most an hour late; later
  than that it is skipped until the next occurrence. A 02:00 sync may run at 02:40 after a deploy,
  but not at 14:00 in the middle of the desk's working day, and a monthly billing run is not
  started half a day late behind the operators' backs (they start it by hand instead).
  APScheduler only knows about misfires while it runs; for the time the clock was DOWN the same
  rule is applied from the data at start-up (:meth:`Clock.catch_up`, using ``last_fired_at``).

Exactly once per occurrence: every firing first claims its slot with one conditional UPDATE on
``schedules.last_fired_at`` (:func:`bot.workflows.schedules.claim_fire`), so a duplicate job, a
catch-up racing a live firing, or a second clock started by mistake cannot enqueue it twice.

SLA timers are not scheduler jobs: they are columns, and the sweep (every minute, and once at
start-up) moves whatever is due — see :mod:`bot.workflows.sla`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot import context, jobs
from bot.workflows.schedules import claim_fire
from storage.db import Database
from storage.models import Schedule
from storage.settings import get_settings

log = logging.getLogger(__name__)

MISFIRE_GRACE = timedelta(hours=1)
SWEEP_EVERY_SECONDS = 60
RELOAD_EVERY_SECONDS = 30
RETRY_STALLED_EVERY_SECONDS = 60
DIGEST_JOB = "builtin:digest"
SWEEP_JOB = "builtin:sla_sweep"

Enqueue = Callable[..., Any]


def _trigger(cron: str, timezone: str) -> CronTrigger:
    return CronTrigger.from_crontab(cron, timezone=timezone)


def due_slot(cron: str, timezone: str, now: datetime, grace: timedelta = MISFIRE_GRACE) -> datetime | None:
    """The latest occurrence of ``cron`` at or before ``now`` and not older than ``grace`` (UTC)."""
    trig = _trigger(cron, timezone)
    t = trig.get_next_fire_time(None, now - grace)
    last = None
    while t is not None and t <= now:
        last = t
        t = trig.get_next_fire_time(t, t + timedelta(microseconds=1))
    return last.astimezone(UTC) if last is not None else None


class Clock:
    """Schedules from the database on an APScheduler ``BackgroundScheduler``.

    ``enqueue(task_name, **args)`` defaults to :func:`bot.jobs.submit`. ``distributed`` adds the
    stalled-jobs retry (Procrastinate) every minute.
    """

    def __init__(
        self,
        db: Database,
        *,
        enqueue: Enqueue | None = None,
        key: Any = None,
        grace: timedelta = MISFIRE_GRACE,
        sweep_every: int = SWEEP_EVERY_SECONDS,
        reload_every: int = RELOAD_EVERY_SECONDS,
        digest_cron: str | None = None,
        timezone: str | None = None,
        distributed: bool = False,
    ) -> None:

        st = get_settings()
        self.db = db
        self.key = key
        self.grace = grace
        self.sweep_every = sweep_every
        self.reload_every = reload_every
        self.digest_cron = digest_cron if digest_cron is not None else st.digest_cron
        self.timezone = timezone or st.timezone
        self.distributed = distributed
        self._enqueue = enqueue
        self._lock = threading.Lock()
        self._loaded: dict[int, tuple[str, str]] = {}  # schedule id → (cron, timezone)
        self.fired: list[tuple[str, dict[str, Any]]] = []  # what this clock enqueued (logs, tests)
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(grace.total_seconds())},
        )

    # ------------------------------------------------------------------ enqueueing

    def enqueue(self, task_name: str, **args: Any) -> Any:
        self.fired.append((task_name, args))
        if self._enqueue is not None:
            return self._enqueue(task_name, **args)

        return jobs.submit(task_name, **args)

    def fire(self, schedule_id: int, now: datetime | None = None) -> bool:
        """Enqueue schedule ``schedule_id``'s current occurrence unless someone already did."""

        now = now or datetime.now(UTC)
        with self.db.read() as s:
            row = s.get(Schedule, schedule_id)
        if row is None or not row.enabled:
            return False
        slot = due_slot(row.cron, row.timezone, now, self.grace)
        if slot is None or not claim_fire(self.db, schedule_id, slot=slot, signing_key=self.key, now=now):
            return False
        log.info("schedule %s (%s %s) fires for %s", row.id, row.task, row.args, slot.isoformat())
        try:
            self.enqueue(row.task, **dict(row.args))
        except Exception:  # one broken enqueue must not stop the clock; the audit log shows it fired
            log.exception("enqueueing schedule %s failed", schedule_id)
        return True

    def catch_up(self, now: datetime | None = None) -> list[int]:
        """At start-up: fire, once, every schedule whose latest occurrence passed while the clock was
        down, if it is within the grace period and after the schedule was created."""
        now = now or datetime.now(UTC)
        fired = []
        for row in self._rows():
            slot = due_slot(row.cron, row.timezone, now, self.grace)
            if slot is None or slot < row.created_at:
                continue
            if row.last_fired_at is not None and row.last_fired_at >= slot:
                continue
            if self.fire(row.id, now=now):
                fired.append(row.id)
        return fired

    def sweep(self, *, at_start: bool = False) -> Any:
        """Enqueue the SLA sweep. The one at start-up also queues every PDF still pending: nothing of
        this process is rendering yet, and a CLI in embedded mode leaves its invoices' PDFs to it."""
        if at_start:
            return self.enqueue("sla_sweep", render_grace_seconds=0)
        return self.enqueue("sla_sweep")

    def digest(self) -> Any:
        return self.enqueue("digest")

    # ------------------------------------------------------------------ loading

    def _rows(self) -> list[Schedule]:
        with self.db.read() as s:
            from sqlalchemy import select

            return list(s.execute(select(Schedule).where(Schedule.enabled.is_(True)).order_by(Schedule.id)).scalars())

    def load(self) -> dict[int, str]:
        """Make the scheduler's jobs match the ``schedules`` rows (added, changed, removed).
        Returns schedule id → APScheduler job id."""
        with self._lock:
            rows = {r.id: r for r in self._rows()}
            for sid in list(self._loaded):
                if sid not in rows:
                    self._remove(f"schedule:{sid}")
                    del self._loaded[sid]
            for sid, row in rows.items():
                spec = (row.cron, row.timezone)
                if self._loaded.get(sid) == spec:
                    continue
                self.scheduler.add_job(self.fire, _trigger(row.cron, row.timezone), args=[sid],
                                       id=f"schedule:{sid}", name=row.name, replace_existing=True)
                self._loaded[sid] = spec
            has_digest_row = any(r.task == "digest" for r in rows.values())
            if self.digest_cron and not has_digest_row:
                if self.scheduler.get_job(DIGEST_JOB) is None:
                    self.scheduler.add_job(self.digest, _trigger(self.digest_cron, self.timezone), id=DIGEST_JOB,
                                           name="digest (DIGEST_CRON)", replace_existing=True)
            else:
                self._remove(DIGEST_JOB)
            return {sid: f"schedule:{sid}" for sid in self._loaded}

    def _remove(self, job_id: str) -> None:
        if self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)

    def jobs(self) -> list[Any]:
        return list(self.scheduler.get_jobs())

    # ------------------------------------------------------------------ life cycle

    def start(self, *, now: datetime | None = None, paused: bool = False) -> Clock:
        """Load the schedules, catch up on what was missed, sweep once, then run."""
        self.load()
        self.scheduler.add_job(self.sweep, "interval", seconds=self.sweep_every, id=SWEEP_JOB,
                               name="SLA sweep", replace_existing=True)
        self.scheduler.add_job(self.load, "interval", seconds=self.reload_every, id="builtin:reload",
                               name="reload schedules", replace_existing=True)
        if self.distributed:
            self.scheduler.add_job(self.enqueue, "interval", seconds=RETRY_STALLED_EVERY_SECONDS,
                                   args=["retry_stalled"], id="builtin:retry_stalled",
                                   name="retry stalled jobs", replace_existing=True)
        self.scheduler.start(paused=paused)
        self.catch_up(now)
        self.sweep(at_start=True)  # at start-up: whatever came due while we were down
        return self

    def shutdown(self, wait: bool = True) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)


def start_embedded(db: Database | None = None) -> Clock:
    """Embedded mode: the clock inside the serving process (``billbot serve`` calls this)."""

    return Clock(db or context.get_db(), key=context.get_key()).start()


def run_clock(stop: threading.Event | None = None) -> None:
    """Distributed mode's ``clock`` role: run until stopped (SIGINT/SIGTERM via ``billbot clock``)."""

    clock = Clock(context.get_db(), key=context.get_key(), distributed=jobs.mode() == "distributed").start()
    stop = stop or threading.Event()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        clock.shutdown()
