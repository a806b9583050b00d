"""Syncs from ad trackers and imports of ad-server reports and server logs.

Every sync or import is one :class:`SyncRun`, in three steps:

1. **start** (own transaction): take the per-source lock — ``SyncRun.lock_key = "source:<name>"`` is
   UNIQUE while a run holds it, so a second request for the same source fails on the constraint
   (whatever process it comes from) and is told which run is running and who started it;
2. **fetch** (no transaction held): pull every batch from the tracker, or parse the file;
3. **finish** (one transaction): ingest every batch, move the source's watermark and freshness,
   record counts, job log lines and the audit record ``sync.finished``, release the lock, and notify
   ``sync.finished`` after commit. Any failure instead marks the run ``failed`` (own transaction),
   keeps the watermark where it was and releases the lock — a rerun picks up from the same point,
   and because ingest is idempotent whatever the failed run saw is simply ``unchanged`` next time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.errors import BillingError, Conflict, Invalid
from bot.workflows.audit import record
from bot.workflows.effects import notify
from storage.db import Database
from storage.ingest import IngestContext, IngestResult, ingest_batch
from storage.models import Conversion, JobLog, QuarantineRow, SourceState, SyncRun
from storage.settings import local_time
from storage.sources.base import (
    Batch,
    ProgressFn,
    Source,
    SourceConfig,
    configured_sources,
    get_source_config,
    make_source,
)

if TYPE_CHECKING:
    from storage.sources.server_logs import LogRule

MODES = ("standard", "partial")
STALE_LOCK = timedelta(hours=6)  # a run that held the lock this long died with its process


@dataclass(frozen=True)
class SyncResult:
    sync_run_id: int
    source: str
    mode: str
    state: str
    counts: dict[str, int]
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    watermark_before: str | None = None
    watermark_after: str | None = None
    data_until: date | None = None
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sync_run_id": self.sync_run_id, "source": self.source, "mode": self.mode, "state": self.state,
            **self.counts, "by_kind": self.by_kind, "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "data_until": self.data_until.isoformat() if self.data_until else None, "log": self.log,
        }


def _lock_key(source: str) -> str:
    return f"source:{source}"


def _conflict(run: SyncRun) -> Conflict:
    return Conflict(
        f"a {run.mode} sync of {run.source} is already running (sync #{run.id}, started by "
        f"{run.started_by or 'unknown'} at {local_time(run.started_at)})",  # said to people: BILLBOT_TIMEZONE
        code="sync_running",
    )


def _log(s: Session, run_id: int, at: datetime, message: str, level: str = "info") -> str:
    s.add(JobLog(run_kind="sync", run_id=run_id, at=at, level=level, message=message))
    return message


def _start(db: Database, *, source: str, mode: str, actor: str, key: Ed25519PrivateKey | None, now: datetime,
           file_name: str | None = None, file_sha256: str | None = None) -> tuple[int, str | None]:
    """Take the source's lock and open a run; returns (run id, watermark before)."""
    lock = _lock_key(source)
    try:
        with db.transaction() as s:
            running = s.execute(select(SyncRun).where(SyncRun.lock_key == lock).with_for_update()).scalar_one_or_none()
            if running is not None:
                if now - running.started_at < STALE_LOCK:
                    raise _conflict(running)
                running.state = "failed"
                running.error = f"abandoned: held the lock since {local_time(running.started_at)}"
                running.finished_at = now
                running.lock_key = None
                _log(s, running.id, now, f"Sync #{running.id} of {source} abandoned (stale lock)", "error")
                record(s, key=key, actor=actor, action="sync.finished", subject_type="sync_run",
                       subject_id=running.id, payload={"state": "failed", "error": running.error}, now=now)
                s.flush()
            state = s.get(SourceState, source)
            wm = state.watermark if state is not None else None
            run = SyncRun(source=source, mode=mode, state="running", started_at=now, started_by=actor, counts={},
                          watermark_before=wm, file_name=file_name, file_sha256=file_sha256, lock_key=lock)
            s.add(run)
            s.flush()
            what = f"import of {file_name}" if file_name else f"{mode} sync"
            _log(s, run.id, now, f"Sync #{run.id} of {source} ({what}) started by {actor}")
            record(s, key=key, actor=actor, action="sync.started", subject_type="sync_run", subject_id=run.id,
                   payload={"source": source, "mode": mode, "watermark": wm, "file": file_name,
                            "file_sha256": file_sha256}, now=now)
            return run.id, wm
    except IntegrityError:  # another process took the lock between our check and our insert
        with db.read() as r:
            other = r.execute(select(SyncRun).where(SyncRun.lock_key == lock)).scalar_one_or_none()
        if other is not None:
            raise _conflict(other) from None
        raise Conflict(f"another sync of {source} started at the same moment; try again", code="sync_running") from None


def _fail(db: Database, run_id: int, error: BaseException, *, actor: str, key: Ed25519PrivateKey | None,
          now: datetime) -> None:
    message = str(error) or type(error).__name__
    with db.transaction() as s:
        run = s.get(SyncRun, run_id, with_for_update=True)
        if run is None:
            return
        run.state = "failed"
        run.error = message
        run.finished_at = now
        run.lock_key = None
        _log(s, run_id, now, f"Sync #{run_id} of {run.source} failed: {message}; watermark unchanged", "error")
        record(s, key=key, actor=actor, action="sync.finished", subject_type="sync_run", subject_id=run_id,
               payload={"source": run.source, "mode": run.mode, "state": "failed", "error": message}, now=now)
        notify(s, "sync.finished", sync_run_id=run_id)


def format_counts(c: dict[str, Any]) -> str:
    """``12 inserted, 3 updated, 0 unchanged, 1 quarantined`` (+ duplicates / ignored when any)."""
    text = (f"{c.get('inserted', 0)} inserted, {c.get('updated', 0)} updated, {c.get('unchanged', 0)} unchanged, "
            f"{c.get('quarantined', 0)} quarantined")
    if c.get("duplicates"):
        text += f", {c['duplicates']} duplicates"
    if c.get("ignored"):
        text += f", {c['ignored']} ignored"
    return text


def _finish(db: Database, run_id: int, batches: Iterable[Batch], *, cfg: SourceConfig, party: str,
            connector: Source | None, actor: str, key: Ed25519PrivateKey | None, now: datetime) -> SyncResult:
    with db.transaction() as s:
        run = s.get(SyncRun, run_id, with_for_update=True)
        assert run is not None
        ctx = IngestContext(source=cfg.name, now=now, tz=cfg.tz, currency=cfg.currency, party=party,
                            legal_entity=cfg.legal_entity, sync_run_id=run_id)
        total = IngestResult()
        log: list[str] = []
        for b in batches:
            r = ingest_batch(s, b, ctx)
            total.merge(b.kind, r)
            log.append(_log(s, run_id, now, f"{b.label or b.kind}: {len(b.frame) + len(b.bad)} rows — "
                                            f"{format_counts(r.counts.as_dict())}"))
        state = s.get(SourceState, cfg.name)
        if state is None:
            state = SourceState(source=cfg.name)
            s.add(state)
        before = run.watermark_before
        after = (connector.advance_watermark(before, max_day=total.max_day, max_occurred=total.max_occurred)
                 if connector is not None else before)
        data_until = state.data_until
        if total.max_day is not None and (data_until is None or total.max_day > data_until):
            data_until = total.max_day
        if connector is None and total.max_occurred:
            day = date.fromisoformat(total.max_occurred[:10])
            data_until = day if data_until is None or day > data_until else data_until
        today = now.astimezone(cfg.tz).date()
        if data_until is not None and data_until > today:  # never past today, whatever a source claims
            data_until = today
        state.watermark = after
        state.last_success_at = now
        state.last_sync_run_id = run_id
        state.data_until = data_until
        counts = total.counts.as_dict()
        by_kind = {k: v.as_dict() for k, v in total.by_kind.items()}
        run.state = "done"
        run.finished_at = now
        run.counts = {**counts, "by_kind": by_kind}
        run.watermark_after = after
        run.data_until = data_until
        run.lock_key = None
        until = f"; data until {data_until.isoformat()}" if data_until else ""
        log.append(_log(s, run_id, now, f"Sync #{run_id} of {cfg.name} finished: {format_counts(counts)}{until}"))
        record(s, key=key, actor=actor, action="sync.finished", subject_type="sync_run", subject_id=run_id,
               payload={"source": cfg.name, "mode": run.mode, "state": "done", "counts": counts,
                        "watermark_before": before, "watermark_after": after,
                        "data_until": data_until.isoformat() if data_until else None,
                        "file_sha256": run.file_sha256}, now=now)
        notify(s, "sync.finished", sync_run_id=run_id)
        return SyncResult(sync_run_id=run_id, source=cfg.name, mode=run.mode, state="done", counts=counts,
                          by_kind=by_kind, watermark_before=before, watermark_after=after, data_until=data_until,
                          log=log)


def _pending_ids(db: Database, source: str) -> list[str]:
    with db.read() as s:
        q = select(Conversion.external_id).where(Conversion.source == source, Conversion.status == "pending",
                                                 Conversion.kind == "conversion").order_by(Conversion.external_id)
        return [str(x) for x in s.execute(q).scalars()]


def run_sync(db: Database, *, source: str, mode: str, actor: str, signing_key: Ed25519PrivateKey | None,
             now: datetime | None = None, on_progress: ProgressFn | None = None,
             connector: Source | None = None) -> SyncResult:
    """Sync one tracker source: ``standard`` pulls employees, advertisers, affiliates, stats, new
    conversions and re-checks pending ones; ``partial`` pulls stats and re-checks pending conversions.

    Raises :class:`Conflict` when a sync of the source is running, :class:`Invalid` for an unknown mode
    or an unconfigured source, and :class:`~storage.sources.SourceError` when the tracker fails (the
    run is then recorded as failed and the watermark is unchanged). ``connector`` replaces the
    configured connector (tests inject one with a fake clock).
    """
    if mode not in MODES:
        raise Invalid(f"unknown sync mode {mode!r} (expected standard or partial)", code="sync_mode")
    at = now or datetime.now(UTC)
    cfg = connector.config if connector is not None else get_source_config(source, require=True)
    conn = connector if connector is not None else make_source(cfg)
    run_id, watermark = _start(db, source=cfg.name, mode=mode, actor=actor, key=signing_key, now=at)
    try:
        batches = list(conn.fetch(mode=mode, watermark=watermark, pending_ids=_pending_ids(db, cfg.name), now=at,
                                  on_progress=on_progress))
        return _finish(db, run_id, batches, cfg=cfg, party="first_party", connector=conn, actor=actor,
                       key=signing_key, now=now or datetime.now(UTC))
    except BaseException as e:
        _fail(db, run_id, e, actor=actor, key=signing_key, now=now or datetime.now(UTC))
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _import(db: Database, batch: Batch, path: Path, *, cfg: SourceConfig, mode: str, party: str, actor: str,
            signing_key: Ed25519PrivateKey | None, now: datetime | None) -> SyncResult:
    at = now or datetime.now(UTC)
    run_id, _wm = _start(db, source=cfg.name, mode=mode, actor=actor, key=signing_key, now=at,
                         file_name=path.name, file_sha256=_sha256(path))
    try:
        return _finish(db, run_id, [batch], cfg=cfg, party=party, connector=None, actor=actor, key=signing_key,
                       now=now or datetime.now(UTC))
    except BaseException as e:
        _fail(db, run_id, e, actor=actor, key=signing_key, now=now or datetime.now(UTC))
        raise


def import_report(db: Database, *, path: Path | str, source: str, third_party: bool = False, actor: str,
                  signing_key: Ed25519PrivateKey | None, now: datetime | None = None,
                  decimal: str | None = None) -> SyncResult:
    """Import a Google Ad Manager delivery report (CSV/XLSX, API dump or UI export) for ``source``;
    line item ids map to campaign items through the crosswalk. ``third_party`` marks the figures as
    the client's / an auditor's (compared by the variance checks, never billed). ``decimal`` (``,`` or
    ``.``) tells a UI export's decimal separator when its numbers do not."""
    from storage.sources.gam_report import read_report

    p = Path(path)
    cfg = get_source_config(source, kind="gam")
    batch = read_report(p, currency=cfg.currency, decimal=decimal)
    return _import(db, batch, p, cfg=cfg, mode="report", party="third_party" if third_party else "first_party",
                   actor=actor, signing_key=signing_key, now=now)


def import_logs(db: Database, *, path: Path | str, source: str, rule: LogRule | Path | str | None = None, actor: str,
                signing_key: Ed25519PrivateKey | None, now: datetime | None = None) -> SyncResult:
    """Import billable events from a server log (combined log format or JSON lines). ``rule`` is a
    :class:`~storage.sources.server_logs.LogRule`, a path to its YAML file, or ``None`` for the default
    (a successful ``POST /test-drive/bookings``, campaign and booking id from ``campaign`` / ``booking_id``)."""
    from storage.sources.server_logs import LogRule, load_rule, read_logs

    p = Path(path)
    cfg = get_source_config(source, kind="logs")
    log_rule = rule if isinstance(rule, LogRule) else load_rule(rule)
    batch = read_logs(p, log_rule)
    return _import(db, batch, p, cfg=cfg, mode="logs", party="first_party", actor=actor, signing_key=signing_key,
                   now=now)


# --------------------------------------------------------------------------- read side


def sync_status(db: Database, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per source: the last successful sync, how old it and its data are, and any running sync."""
    at = now or datetime.now(UTC)
    out: list[dict[str, Any]] = []
    with db.read() as s:
        states = {st.source: st for st in s.execute(select(SourceState)).scalars()}
        running = {r.source: r for r in s.execute(select(SyncRun).where(SyncRun.lock_key.is_not(None))).scalars()}
        names = sorted(set(states) | set(running) | set(configured_sources()))
        for name in names:
            st = states.get(name)
            last = s.get(SyncRun, st.last_sync_run_id) if st is not None and st.last_sync_run_id else None
            last_failed = s.execute(select(SyncRun).where(SyncRun.source == name, SyncRun.state == "failed")
                                    .order_by(SyncRun.id.desc()).limit(1)).scalar_one_or_none()
            run = running.get(name)
            try:
                kind = get_source_config(name).kind
            except BillingError:
                kind = None
            ok_at = st.last_success_at if st is not None else None
            until = st.data_until if st is not None else None
            out.append({
                "source": name,
                "kind": kind or (last.mode if last is not None and last.mode in ("report", "logs") else None),
                "last_sync_run_id": last.id if last is not None else None,
                "last_mode": last.mode if last is not None else None,
                "last_success_at": ok_at,
                "age_seconds": int((at - ok_at).total_seconds()) if ok_at else None,
                "data_until": until,
                "data_age_days": (at.date() - until).days if until else None,
                "watermark": st.watermark if st is not None else None,
                "counts": {k: v for k, v in (last.counts or {}).items() if k != "by_kind"} if last else {},
                "running": None if run is None else {"sync_run_id": run.id, "mode": run.mode,
                                                     "started_by": run.started_by, "started_at": run.started_at},
                "last_failure": None if last_failed is None or (last and last_failed.id < last.id) else
                {"sync_run_id": last_failed.id, "at": last_failed.finished_at, "error": last_failed.error},
            })
    return out


def quarantine_list(db: Database, *, source: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Quarantined rows, newest first: ``source``, ``location``, ``reason``, ``raw`` (+ id, run, time)."""
    with db.read() as s:
        q = select(QuarantineRow).order_by(QuarantineRow.id.desc())
        if source:
            q = q.where(QuarantineRow.source == source)
        if limit:
            q = q.limit(limit)
        return [{"id": r.id, "source": r.source, "location": r.location, "reason": r.reason, "raw": r.raw,
                 "sync_run_id": r.sync_run_id, "created_at": r.created_at} for r in s.execute(q).scalars()]


def sync_log(db: Database, sync_run_id: int) -> list[str]:
    """The job log lines of one sync run, in order."""
    with db.read() as s:
        q = select(JobLog.message).where(JobLog.run_kind == "sync", JobLog.run_id == sync_run_id).order_by(JobLog.id)
        return [str(m) for m in s.execute(q).scalars()]
