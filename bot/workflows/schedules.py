"""Cron schedules stored in the database (``schedules`` rows), executed by :mod:`bot.scheduler`.

A schedule is identified by (task, arguments, cron): adding the same one twice returns the
existing row, so it never runs twice. Firing is claimed with one conditional UPDATE on
``last_fired_at`` (:func:`claim_fire`), so even two clock processes started by mistake enqueue
each occurrence once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from billing.errors import Invalid, NotFound
from billing.signatures import canonical_json
from bot.workflows.audit import record
from storage.db import Database
from storage.models import Schedule

SCHEDULABLE_TASKS = ("sync", "billing_run", "digest", "sla_sweep", "render_pdf", "accounting_export",
                     "payments_inbox", "dunning_proposal", "import_inbox", "preinvoices_create")


def args_key(args: Mapping[str, Any]) -> str:
    """The arguments' identity: canonical JSON (sorted keys), hashed when longer than the column."""
    text = canonical_json(dict(args))
    return text if len(text) <= 200 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def validate(task: str, args: Mapping[str, Any], cron: str, timezone: str) -> list[str]:
    """Every problem with a schedule definition (empty = fine)."""
    from apscheduler.triggers.cron import CronTrigger

    problems = []
    if task not in SCHEDULABLE_TASKS:
        problems.append(f"task: unknown task {task!r} (one of {', '.join(SCHEDULABLE_TASKS)})")
    tz: ZoneInfo | None = None
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"timezone: unknown time zone {timezone!r}")
    try:
        CronTrigger.from_crontab(cron, timezone=tz or UTC)
    except ValueError as e:
        problems.append(f"cron: {cron!r} is not a 5-field crontab expression ({e})")
    if task == "sync" and not args.get("source"):
        problems.append("args: a sync schedule needs source=<name>")
    if task == "sync" and args.get("mode", "standard") not in ("standard", "partial"):
        problems.append(f"args: mode must be standard or partial, not {args.get('mode')!r}")
    if task == "billing_run" and not args.get("period"):
        problems.append("args: a billing_run schedule needs period=previous_month|current_month|YYYY-MM")
    if task == "preinvoices_create" and not args.get("period"):
        problems.append("args: a preinvoices_create schedule needs period=previous_month|current_month|YYYY-MM")
    if task == "accounting_export" and args.get("format") not in ("datev", "beancount"):
        problems.append("args: an accounting_export schedule needs format=datev|beancount")
    if task == "accounting_export" and not args.get("actor"):
        problems.append("args: an accounting_export schedule needs actor=U… (the user it exports as)")
    return problems


def find_schedule(db: Database, *, task: str, args: Mapping[str, Any], cron: str) -> Schedule | None:
    with db.read() as s:
        return s.execute(
            select(Schedule).where(Schedule.task == task, Schedule.args_key == args_key(args),
                                   Schedule.cron == " ".join(cron.split()))
        ).scalar_one_or_none()


def add_schedule(
    db: Database,
    *,
    task: str,
    args: Mapping[str, Any] | None = None,
    cron: str,
    name: str | None = None,
    actor: str,
    signing_key: Ed25519PrivateKey | None,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> Schedule:
    """Add a cron schedule; idempotent by (task, args, cron) — the same schedule added twice is one
    row (returned unchanged, no second audit record). Raises :class:`Invalid` naming each bad field."""
    args = dict(args or {})
    cron = " ".join(cron.split())
    problems = validate(task, args, cron, timezone)
    if problems:
        raise Invalid(problems)
    existing = find_schedule(db, task=task, args=args, cron=cron)
    if existing is not None:
        return existing
    now = now or datetime.now(UTC)
    label = name or f"{task} " + " ".join(f"{k}={v}" for k, v in sorted(args.items()))
    try:
        with db.transaction() as s:
            row = Schedule(name=label.strip()[:100], task=task, args=args, args_key=args_key(args), cron=cron,
                           timezone=timezone, enabled=True, created_by=actor, created_at=now)
            s.add(row)
            s.flush()
            record(s, key=signing_key, actor=actor, action="schedule.added", subject_type="schedule",
                   subject_id=row.id, payload={"task": task, "args": args, "cron": cron, "timezone": timezone,
                                               "name": row.name}, now=now)
    except IntegrityError:
        # a concurrent add of the same schedule won the unique key: theirs is ours
        raced = find_schedule(db, task=task, args=args, cron=cron)
        if raced is None:
            raise
        return raced
    return row


def remove_schedule(
    db: Database, schedule_id: int, *, actor: str, signing_key: Ed25519PrivateKey | None,
    now: datetime | None = None,
) -> Schedule:
    """Delete a schedule (the clock drops its job on its next reload)."""
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        row = s.get(Schedule, schedule_id)
        if row is None:
            raise NotFound(f"schedule {schedule_id} does not exist")
        record(s, key=signing_key, actor=actor, action="schedule.removed", subject_type="schedule",
               subject_id=row.id, payload={"task": row.task, "args": row.args, "cron": row.cron}, now=now)
        s.delete(row)
    return row


def list_schedules(db: Database) -> list[Schedule]:
    with db.read() as s:
        return list(s.execute(select(Schedule).order_by(Schedule.id)).scalars())


def claim_fire(
    db: Database, schedule_id: int, *, slot: datetime, signing_key: Ed25519PrivateKey | None,
    now: datetime | None = None,
) -> bool:
    """Claim the occurrence ``slot`` of a schedule: one conditional UPDATE
    (``SET last_fired_at = :slot WHERE id = :id AND (last_fired_at IS NULL OR last_fired_at < :slot)``);
    its row count says whether this caller enqueues. A second clock, a duplicate APScheduler job or a
    catch-up after restart all lose the race for a slot already claimed."""
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        res = s.execute(
            update(Schedule)
            .where(Schedule.id == schedule_id, Schedule.enabled.is_(True),
                   or_(Schedule.last_fired_at.is_(None), Schedule.last_fired_at < slot))
            .values(last_fired_at=slot)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        row = s.get(Schedule, schedule_id)
        assert row is not None
        record(s, key=signing_key, actor="scheduler", action="schedule.fired", subject_type="schedule",
               subject_id=schedule_id, payload={"task": row.task, "args": row.args, "slot": slot.isoformat()},
               now=now)
    return True
