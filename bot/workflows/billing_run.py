"""The billing run: collect → check → threshold → finalize (DESIGN.md "Billing run", STYLE.md #2).

``run_billing(db, period="2026-02", …)`` bills, per advertiser × legal entity × currency, every
approved, not yet invoiced pre-invoice whose billing period ends on or before the run's period end
(items carried over from earlier runs included):

- **collect** the advertiser's open pre-invoices (locked ``FOR UPDATE`` on PostgreSQL; SQLite write
  transactions are ``BEGIN IMMEDIATE``);
- **check** each again as of the issue date (VAT data, exchange rate, hash still the approved one);
  anything not approved, with open exceptions or with problems is *held* and reported;
- **threshold**: below the advertiser's threshold nothing is created, the items wait, and a
  ``below_threshold`` exception is opened;
- **finalize**: one invoice per VAT treatment and purchase-order number among the lines
  (:func:`invoice_parts`; usually one), each a gapless number from the legal entity's series, with its
  lines, the pre-invoices marked invoiced, audit records, ``invoice.finalized`` after commit.

Advertisers are settled in chunks of :data:`CHUNK_SIZE`, one transaction per chunk: everything a
chunk reads is loaded with a few set-based queries, its invoices are numbered from the sequence
row locked once and inserted with one flush. A crash rolls back the chunk in flight, numbers
included, so numbers stay gapless; running the same period again completes the rest without
duplicates or gaps (already invoiced pre-invoices are simply no longer collected). One run per
period at a time: ``BillingRun.lock_key`` is unique while a run is running; a run whose heartbeat is older than
:data:`STALE_AFTER` (its process died) is taken over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, make_transient_to_detached, selectinload

from billing.checks import run_checks
from billing.errors import Conflict, Invalid, NotAllowed, NotFound
from billing.fx import Rate, missing_rate_text, rate_day
from billing.invoice import InvoiceDraft, InvoiceLineDraft, build_invoice, invoice_hash
from billing.money import ZERO
from billing.numbering import format_number
from billing.periods import Period, parse_period
from billing.signatures import content_hash
from billing.tax import VatProblem, VatTreatment, vat_treatment
from billing.terms import due_date, invoice_date
from billing.threshold import below_threshold, created_line, held_line, skipped_line
from bot.workflows import audit
from bot.workflows.effects import notify
from bot.workflows.exceptions import close_exception, open_exception
from bot.workflows.fx import rates_around
from bot.workflows.preinvoices import record_change as record_preinvoice_change
from bot.workflows.preinvoices import refresh_stale
from storage.db import Database, is_sqlite
from storage.heartbeat import Heartbeat, holder_gone, holder_id
from storage.mapping import check_input, fx_for, po_number_of, preinvoice_hash
from storage.models import (
    OPEN_EXCEPTION_STATES,
    Advertiser,
    BillingException,
    BillingRun,
    CampaignItem,
    Decision,
    Invoice,
    InvoiceLine,
    JobLog,
    LegalEntity,
    NumberSequence,
    Partner,
    PreInvoice,
)
from storage.queries import among, open_exception_counts, resolve_advertisers
from storage.settings import local_time

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(seconds=60)  # no heartbeat for this long: the run's process died
HEARTBEAT_EVERY = 5.0  # seconds between heartbeats while a run is running
CHUNK_SIZE = 100  # advertisers settled per transaction
COLLECTED_STATES = ("approved", "draft", "pending", "held")
ONE_OFF = "one-off"  # the campaign column of a one-off invoice's lines


class InjectedFailure(RuntimeError):
    """Raised by ``fail_after`` to simulate a crash in the middle of a run (tests, drills)."""


@dataclass(frozen=True)
class RunResult:
    run_id: int | None
    period: str
    created: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    dry_run: bool = False
    invoice_ids: list[int] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # e.g. stale_source (issue 21)


@dataclass
class Outcome:
    """What settling one advertiser did (mutable while it is being settled)."""

    invoices: list[Invoice] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Batch:
    """Billable pre-invoices of one advertiser × legal entity × currency (the threshold applies to all of
    it: one skip), or one invoice's part of them (:func:`invoice_parts`): the lines (``line_ids``, None:
    all) billed under one VAT treatment and one purchase-order number.

    A consolidated partner's batch (``partner`` set) holds the pre-invoices of all its branches settled
    together; ``advertiser`` is then the partner's head office branch (the invoice's recipient) and
    ``branches`` names each branch (advertiser id → name) for the line blocks."""

    advertiser: Advertiser
    legal_entity: LegalEntity
    currency: str
    preinvoices: tuple[PreInvoice, ...]
    partner: Partner | None = None
    branches: tuple[tuple[str, str], ...] = ()
    vat: VatTreatment | None = None  # None: the advertiser's treatment for services
    po_number: str | None = None
    line_ids: frozenset[int] | None = None

    @property
    def total(self) -> Decimal:
        return sum((p.net for p in self.preinvoices), ZERO)


@dataclass(frozen=True)
class Context:
    period_end: date
    period_label: str | None
    actor: str
    key: Ed25519PrivateKey | None
    today: date
    now: datetime
    billing_run_id: int | None
    rates: Sequence[Rate]
    ignore_threshold: bool = False
    threshold_waiting: frozenset[str] = frozenset()  # advertisers with an open below_threshold exception
    decided: frozenset[int] | None = None  # pre-invoices with decisions on record (None: look them up)
    issue_date: date | None = None  # an explicit issue date for the run's invoices (else the terms' rule)


# --------------------------------------------------------------------------- the run


def run_billing(
    db: Database,
    *,
    period: str,
    advertisers: list[str] | None = None,
    actor: str,
    key: Ed25519PrivateKey | None,
    today: date,
    dry_run: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    fail_after: int | None = None,
    now: datetime | None = None,
    issue_date: date | None = None,
    job: str | None = None,
) -> RunResult:
    """Bill ``period`` (``2026-02``, ``2026-Q1``, …) for all or the given advertisers.

    ``dry_run`` computes everything in one transaction that is rolled back: nothing is written,
    numbers shown are the ones a real run would take now. ``fail_after=N`` raises
    :class:`InjectedFailure` once N invoices are committed (to prove resumability): the chunk in
    flight is cut short after the advertiser that reached N, committed, and the run stops there.
    """
    p = parse_period(period)
    now = now or datetime.now(UTC)
    if issue_date is not None and issue_date > today:
        raise Invalid(f"issue date {issue_date.isoformat()} is after the run day {today.isoformat()}: "
                      "an invoice is not dated in the future")
    problems: list[dict[str, Any]] = []
    if not dry_run:  # data freshness first (issue 21): stale source data holds, caught-up data is recomputed
        with db.transaction() as s:
            problems = refresh_stale(s, p, advertisers=advertisers, actor=actor, key=key, now=now)
    with db.read() as s:
        adv_filter = resolve_advertisers(s, advertisers)
        todo, waiting = survey(s, p.end, adv_filter)
        partner_of = consolidated_partners(s, todo)
        todo = partner_order(todo, partner_of)
        rates = rates_around(s, today, since=_earliest_open_period_end(s, p.end))
        threshold_waiting = frozenset(str(a) for a in s.execute(
            select(BillingException.advertiser_id).where(BillingException.kind == "below_threshold",
                                                         BillingException.state.in_(OPEN_EXCEPTION_STATES))).scalars())
        decided = frozenset(int(i) for i in s.execute(
            select(BillingException.preinvoice_id).distinct()
            .join(Decision, Decision.exception_id == BillingException.id)
            .where(BillingException.preinvoice_id.is_not(None))).scalars() if i is not None)
    if dry_run:
        return _dry_run(db, p, todo, actor=actor, key=key, today=today, now=now, rates=rates,
                        on_progress=on_progress, issue_date=issue_date, partner_of=partner_of)
    run_id = _start_run(db, p, adv_filter, actor=actor, key=key, now=now, job=job)
    stale_lines = [stale_line(x) for x in problems]
    if stale_lines:
        with db.transaction() as s:
            _write_log(s, run_id, stale_lines, now, level="warning")
    with Heartbeat(lambda: _beat(db, run_id), every=HEARTBEAT_EVERY, name=f"billbot-run-{run_id}"):
        res = _settle_run(db, p, run_id, todo, waiting, actor=actor, key=key, today=today, now=now, rates=rates,
                           threshold_waiting=threshold_waiting, decided=decided, fail_after=fail_after,
                           on_progress=on_progress, issue_date=issue_date, partner_of=partner_of)
    return replace(res, problems=problems, log=[*stale_lines, *res.log])


def stale_line(x: dict[str, Any]) -> str:
    """The run log's line for a ``stale_source`` problem of :func:`refresh_stale`."""
    until = x.get("data_until") or "no data yet"
    what = "held" if x.get("block", True) else "not blocking"
    missed = "; freshness target missed" if x.get("target_missed") else ""
    return (f"stale_source: {x['source']} has data until {until}, before the period end {x['period_end']} "
            f"(pre-invoice {x['preinvoice']} of {x['advertiser']}, {what}{missed})")


def consolidated_partners(s: Session, advertiser_ids: Sequence[str]) -> dict[str, str]:
    """advertiser id → partner id, for the given advertisers that are branches of a ``consolidated`` partner."""
    if not advertiser_ids:
        return {}
    wanted = set(advertiser_ids)
    q = (select(Advertiser.id, Advertiser.partner_id).join(Partner, Partner.id == Advertiser.partner_id)
         .where(Partner.invoicing == "consolidated"))
    only = among(s, Advertiser.id, wanted)  # a run of every advertiser: no IN list of 100,000 ids
    return {str(a): str(p) for a, p in s.execute(q if only is None else q.where(only)) if a in wanted}


def partner_order(todo: list[str], partner_of: dict[str, str]) -> list[str]:
    """``todo`` with each consolidated partner's branches moved together (to its first branch's place),
    so that a chunk settles all of them: their invoice is one. Without such partners the order is kept.

    >>> partner_order(["a", "b", "c", "d"], {"a": "P", "c": "P"})
    ['a', 'c', 'b', 'd']
    """
    first: dict[str, int] = {}
    for i, a in enumerate(todo):
        if a in partner_of:
            first.setdefault(partner_of[a], i)
    keyed = [((first[partner_of[a]] if a in partner_of else i), i, a) for i, a in enumerate(todo)]
    return [a for _, _, a in sorted(keyed)]


def chunk_length(todo: Sequence[str], start: int, partner_of: dict[str, str]) -> int:
    """How many advertisers from ``start`` one transaction settles: :data:`CHUNK_SIZE`, extended so that
    a consolidated partner's branches (adjacent after :func:`partner_order`) are never split."""
    n = min(CHUNK_SIZE, len(todo) - start)
    while start + n < len(todo) and _same_partner(todo[start + n - 1], todo[start + n], partner_of):
        n += 1
    return n


def _same_partner(a: str, b: str, partner_of: dict[str, str]) -> bool:
    return a in partner_of and partner_of.get(b) == partner_of[a]


def _settle_run(db: Database, p: Period, run_id: int, todo: list[str], waiting: dict[str, Outcome], *, actor: str,
                key: Ed25519PrivateKey | None, today: date, now: datetime, rates: Sequence[Rate],
                threshold_waiting: frozenset[str], decided: frozenset[int], fail_after: int | None,
                on_progress: Callable[[int, int], None] | None, issue_date: date | None,
                partner_of: dict[str, str] | None = None) -> RunResult:
    ctx = Context(period_end=p.end, period_label=p.label, actor=actor, key=key, today=today, now=now,
                  billing_run_id=run_id, rates=rates, threshold_waiting=threshold_waiting, decided=decided,
                  issue_date=issue_date)
    total = Outcome()
    unwritten: list[str] = []  # log lines of chunks with nothing billable, written with the next commit
    done = 0
    try:
        while done < len(todo):
            chunk = todo[done:done + chunk_length(todo, done, partner_of or {})]
            if all(a in waiting for a in chunk):
                # nothing approved in this chunk: report the held items; the log lines are written
                # with the next commit (or when the run finishes)
                settled = [(a, waiting[a]) for a in _cut(chunk, fail_after, len(total.invoices))]
                for _, out in settled:
                    _merge(total, out)
                    unwritten.extend(out.log)
            else:
                stop_at = None if fail_after is None else fail_after - len(total.invoices)
                with db.transaction() as s:
                    settled = settle_advertisers(s, chunk, ctx, stop_at=stop_at)
                    _write_log(s, run_id, [*unwritten, *(m for _, out in settled for m in out.log)], now)
                    _heartbeat(s, run_id, done + len(settled), len(todo), now)
                unwritten.clear()
                for _, out in settled:
                    _merge(total, out)
            for i in range(len(settled)):
                if on_progress is not None:
                    on_progress(done + i + 1, len(todo))
            done += len(settled)
            if fail_after is not None and len(total.invoices) >= fail_after and done < len(todo):
                raise InjectedFailure(f"injected failure after {len(total.invoices)} invoices")
    except BaseException as e:
        _finish_run(db, run_id, total, unwritten, state="failed", error=f"{type(e).__name__}: {e}", actor=actor,
                    key=key)
        raise
    _finish_run(db, run_id, total, unwritten, state="done", error=None, actor=actor, key=key)
    return _result(run_id, p, total, dry_run=False)


def _earliest_open_period_end(s: Session, period_end: date) -> date | None:
    """The earliest service period end of any pre-invoice a run up to ``period_end`` may invoice (the
    FX rule ``service_end`` looks up the rates of such days)."""
    return s.execute(select(func.min(PreInvoice.period_end)).where(
        PreInvoice.invoice_id.is_(None), PreInvoice.state.in_(COLLECTED_STATES),
        PreInvoice.period_end <= period_end)).scalar()


def _cut(chunk: list[str], fail_after: int | None, invoiced: int) -> list[str]:
    """The advertisers of an all-waiting chunk that run before an injected failure would stop it."""
    if fail_after is None or invoiced < fail_after:
        return chunk
    return chunk[:1]


def survey(s: Session, period_end: date, advertiser_ids: list[str] | None) -> tuple[list[str], dict[str, Outcome]]:
    """Advertisers with open pre-invoices up to ``period_end`` (in order), and — for those without any
    approved pre-invoice — what is held and why (they need no transaction of their own)."""
    where = [PreInvoice.invoice_id.is_(None), PreInvoice.state.in_(COLLECTED_STATES),
             PreInvoice.period_end <= period_end]
    if advertiser_ids is not None:
        where.append(PreInvoice.advertiser_id.in_(advertiser_ids))
    approved: dict[str, bool] = {}
    for adv_id, state in s.execute(select(PreInvoice.advertiser_id, PreInvoice.state).where(*where).distinct()):
        approved[adv_id] = approved.get(adv_id, False) or state == "approved"
    waiting_ids = sorted(a for a, ok in approved.items() if not ok)
    waiting: dict[str, Outcome] = {}
    if waiting_ids:  # load only these in full, to report why their items are held
        only = among(s, PreInvoice.advertiser_id, waiting_ids, name="waiting")
        held = set(waiting_ids)
        pis = [pi for pi in s.execute(
            select(PreInvoice).options(joinedload(PreInvoice.campaign), joinedload(PreInvoice.advertiser))
            .where(*where, *([only] if only is not None else []))
            .order_by(PreInvoice.advertiser_id, PreInvoice.period_start, PreInvoice.id)).unique().scalars()
            if pi.advertiser_id in held]
        opened = open_exception_counts(s, [p.id for p in pis])
        for pi in pis:
            _report_held(waiting.setdefault(pi.advertiser_id, Outcome()), pi, pi.advertiser,
                         _hold_reason(pi, opened.get(pi.id, 0)) or "not approved")
    return sorted(approved), waiting


def _dry_run(db: Database, p: Period, todo: list[str], *, actor: str, key: Ed25519PrivateKey | None, today: date,
             now: datetime, rates: Sequence[Rate], on_progress: Callable[[int, int], None] | None,
             issue_date: date | None = None, partner_of: dict[str, str] | None = None) -> RunResult:
    ctx = Context(period_end=p.end, period_label=p.label, actor=actor, key=key, today=today, now=now,
                  billing_run_id=None, rates=rates, issue_date=issue_date)
    total = Outcome()
    with db.Session() as s:
        s.begin()
        try:
            start = 0
            while start < len(todo):
                n = chunk_length(todo, start, partner_of or {})
                for i, (_, out) in enumerate(settle_advertisers(s, todo[start:start + n], ctx)):
                    _merge(total, out)
                    if on_progress is not None:
                        on_progress(start + i + 1, len(todo))
                start += n
            return _result(None, p, total, dry_run=True)  # read before the rollback expires the invoices
        finally:
            s.rollback()  # a dry run writes nothing: numbers, invoices, exceptions, audit all roll back


def _merge(total: Outcome, out: Outcome) -> None:
    total.invoices.extend(out.invoices)
    total.skipped.extend(out.skipped)
    total.held.extend(out.held)
    total.log.extend(out.log)


def _result(run_id: int | None, p: Period, total: Outcome, *, dry_run: bool) -> RunResult:
    return RunResult(run_id=run_id, period=p.label, created=[i.number for i in total.invoices],
                     skipped=list(total.skipped), held=list(total.held), log=list(total.log), dry_run=dry_run,
                     invoice_ids=[i.id for i in total.invoices] if not dry_run else [])


# --------------------------------------------------------------------------- run bookkeeping


def _lock_key(p: Period) -> str:
    return f"billing:{p.start.isoformat()}..{p.end.isoformat()}"


def _start_run(db: Database, p: Period, advertisers: list[str] | None, *, actor: str,
               key: Ed25519PrivateKey | None, now: datetime, job: str | None = None) -> int:
    """Insert the run with its lock key; a running run of the same period → :class:`Conflict`
    unless its holder is dead: its heartbeat is stale, its process (this host) is gone, or it was an
    earlier attempt of the same ``job`` (a queued job is handed out again only when the worker that had
    it stopped heartbeating) — then it is marked failed and taken over."""
    lock = _lock_key(p)
    with db.transaction() as s:
        running = s.execute(
            select(BillingRun).where(BillingRun.lock_key == lock).with_for_update()).scalar_one_or_none()
        if running is not None:
            beat = _beat_of(running)
            held = running.summary or {}
            gone = holder_gone(held.get("holder")) or (job is not None and held.get("job") == job)
            if now - beat < STALE_AFTER and not gone:
                raise Conflict(f"billing run {running.id} for {running.period} is already running "
                               f"(started by {running.started_by} at {local_time(running.started_at)})",
                               code="run_running")
            running.state = "failed"
            running.lock_key = None
            running.finished_at = now
            why = "its process is gone" if gone else "no heartbeat"
            running.summary = {**(running.summary or {}), "error": f"abandoned ({why}), taken over"}
            s.flush()
            audit.record(s, key=key, actor=actor, action="billing_run.abandoned", subject_type="billing_run",
                         subject_id=running.id, payload={"last_heartbeat": beat.isoformat(), "why": why}, now=now)
        run = BillingRun(period=p.label, period_start=p.start, period_end=p.end, state="running",
                         advertisers=list(advertisers or []), started_by=actor, started_at=now,
                         summary={"heartbeat": max(now, datetime.now(UTC)).isoformat(), "holder": holder_id(),
                                  **({"job": job} if job else {})},
                         lock_key=lock)
        s.add(run)
        try:
            with s.begin_nested():
                s.flush()
        except IntegrityError:
            raise Conflict(f"a billing run for {p.label} was started at the same moment", code="run_running") from None
        audit.record(s, key=key, actor=actor, action="billing_run.started", subject_type="billing_run",
                     subject_id=run.id, payload={"period": p.label, "advertisers": list(advertisers or [])}, now=now)
        return int(run.id)


def _beat_of(run: BillingRun) -> datetime:
    beat = (run.summary or {}).get("heartbeat")
    return datetime.fromisoformat(beat) if beat else run.started_at


def _beat(db: Database, run_id: int) -> None:
    """The run's heartbeat thread: the run is alive (every :data:`HEARTBEAT_EVERY` seconds)."""
    with db.transaction() as s:
        run = s.execute(select(BillingRun).where(BillingRun.id == run_id).with_for_update()).scalar_one_or_none()
        if run is not None and run.state == "running":
            run.summary = {**(run.summary or {}), "heartbeat": datetime.now(UTC).isoformat()}


def _heartbeat(s: Session, run_id: int, done: int, total: int, now: datetime) -> None:
    """Progress, once per chunk (the heartbeat thread keeps the run alive between chunks)."""
    run = s.get(BillingRun, run_id)
    if run is not None:
        beat = max(now, datetime.now(UTC))
        run.summary = {**(run.summary or {}), "heartbeat": beat.isoformat(), "done": done, "total": total}
    notify(s, "run.progress", billing_run_id=run_id)


def _write_log(s: Session, run_id: int | None, lines: Sequence[str], now: datetime, level: str = "info") -> None:
    if run_id is None or not lines:
        return
    s.execute(insert(JobLog), [{"run_kind": "billing", "run_id": run_id, "at": now, "level": level, "message": m}
                               for m in lines])


def outcome_totals(total: Outcome) -> dict[str, Any]:
    """What the run report shows without reading the run's rows again: net invoiced, skipped and
    held per currency (strings, money is not a JSON float), and the held items counted by reason."""
    def per_currency(pairs: Sequence[tuple[str, Decimal]]) -> dict[str, str]:
        out: dict[str, Decimal] = {}
        for cur, amount in pairs:
            out[cur] = out.get(cur, ZERO) + amount
        return {c: f"{v:.2f}" for c, v in sorted(out.items())}

    reasons: dict[str, int] = {}
    for h in total.held:
        kind = str(h.get("reason") or "held").split(":")[0].split(" on ")[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    return {
        "net": per_currency([(i.currency, i.net) for i in total.invoices if i.kind == "invoice"]),
        "skipped_totals": per_currency([(str(x["currency"]), Decimal(str(x["total"]))) for x in total.skipped]),
        "held_totals": per_currency([(str(h["currency"]), Decimal(str(h["net"]))) for h in total.held
                                     if h.get("net") is not None]),
        "held_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
    }


def _finish_run(db: Database, run_id: int, total: Outcome, unwritten: Sequence[str], *, state: str,
                error: str | None, actor: str, key: Ed25519PrivateKey | None) -> None:
    now = datetime.now(UTC)
    with db.transaction() as s:
        run = s.get(BillingRun, run_id)
        if run is None:
            return
        _write_log(s, run_id, unwritten, now)
        summary = {"created": len(total.invoices), "skipped": len(total.skipped), "held": len(total.held),
                   "invoices": [i.number for i in total.invoices], **outcome_totals(total)}
        if error:
            summary["error"] = error
            _write_log(s, run_id, [f"Run failed: {error}"], now, level="error")
        run.state = state
        run.lock_key = None
        run.finished_at = now
        run.summary = {**(run.summary or {}), **summary}
        audit.record(s, key=key, actor=actor, action=f"billing_run.{state}", subject_type="billing_run",
                     subject_id=run_id, payload={k: v for k, v in summary.items() if k != "invoices"}, now=now)
        notify(s, "run.finished", billing_run_id=run_id)



# --------------------------------------------------------------------------- distributed runs (PostgreSQL)


@dataclass(frozen=True)
class RunPlan:
    """A distributed run started: its chunks (advertiser ids, in order) for the workers to settle."""

    run_id: int
    period: str
    chunks: list[list[str]]
    total: int


@dataclass(frozen=True)
class ChunkResult:
    """What settling one chunk of a distributed run did; ``finished``: it was the run's last chunk."""

    run_id: int
    index: int
    created: list[str] = field(default_factory=list)
    skipped: int = 0
    held: int = 0
    done: int = 0
    total: int = 0
    finished: bool = False
    state: str = "running"
    already: bool = False  # settled before (a retried job whose first attempt committed): nothing done


def plan_run(db: Database, *, period: str, advertisers: list[str] | None = None, actor: str,
             key: Ed25519PrivateKey | None, today: date, now: datetime | None = None,
             issue_date: date | None = None, job: str | None = None, title: str | None = None,
             channel: str | None = None, message_ts: str | None = None, min_chunks: int = 0) -> RunPlan | None:
    """Start a billing run whose chunks any number of workers settle in parallel (:func:`settle_chunk`,
    one job per chunk). The run row is the coordinator: it holds the period's ``lock_key`` until the last
    chunk commits, counts the chunks done, aggregates their figures (``summary``: ``done``/``total``,
    ``created``, ``skipped``, ``held``) and keeps what each chunk needs (the run's day, issue date).
    A chunk with nothing to settle never exists: a run with no advertisers is done at once. Fewer than
    ``min_chunks`` chunks: None, nothing started (one chunk has nothing to parallelize: run it as one job)."""
    p = parse_period(period)
    now = now or datetime.now(UTC)
    if issue_date is not None and issue_date > today:
        raise Invalid(f"issue date {issue_date.isoformat()} is after the run day {today.isoformat()}: "
                      "an invoice is not dated in the future")
    with db.read() as s:
        adv_filter = resolve_advertisers(s, advertisers)
        todo = survey_ids(s, p.end, adv_filter)
        partner_of = consolidated_partners(s, todo)
        todo = partner_order(todo, partner_of)
    chunks: list[list[str]] = []
    while (start := sum(map(len, chunks))) < len(todo):
        chunks.append(todo[start:start + chunk_length(todo, start, partner_of)])
    if len(chunks) < min_chunks:
        return None
    run_id = _start_run(db, p, adv_filter, actor=actor, key=key, now=now, job=job)
    with db.transaction() as s:
        run = s.execute(select(BillingRun).where(BillingRun.id == run_id).with_for_update()).scalar_one()
        run.channel, run.message_ts = channel, message_ts
        run.summary = {**(run.summary or {}), "holder": None, "done": 0, "total": len(todo), "created": 0,
                       "skipped": 0, "held": 0, "chunks_done": [],
                       "distributed": {"chunks": len(chunks), "today": today.isoformat(), "title": title,
                                       "issue_date": issue_date.isoformat() if issue_date else None}}
        _write_log(s, run_id, [f"Run split into {len(chunks)} chunk(s) of up to {CHUNK_SIZE} advertisers "
                               f"({len(todo)} advertisers) for the workers"], now)
        if not chunks:
            _close_distributed(s, run, actor=actor, key=key, now=now)
    return RunPlan(run_id=run_id, period=p.label, chunks=chunks, total=len(todo))


def survey_ids(s: Session, period_end: date, advertiser_ids: list[str] | None) -> list[str]:
    """The advertisers with open pre-invoices up to ``period_end``, in order (one query, ids only: a
    planner at 100× the demo reads no pre-invoice in full)."""
    where = [PreInvoice.invoice_id.is_(None), PreInvoice.state.in_(COLLECTED_STATES),
             PreInvoice.period_end <= period_end]
    if advertiser_ids is not None:
        where.append(PreInvoice.advertiser_id.in_(advertiser_ids))
    return sorted(str(a) for a in s.execute(select(PreInvoice.advertiser_id).where(*where).distinct()).scalars())


def settle_chunk(db: Database, *, run_id: int, index: int, advertisers: list[str], actor: str,
                 key: Ed25519PrivateKey | None, now: datetime | None = None) -> ChunkResult:
    """Settle chunk ``index`` of distributed run ``run_id`` in one transaction: build its invoices
    without any lock, number them in the short serialized step (:func:`_number`: the legal entity's
    sequence row locked ``FOR UPDATE`` until commit), insert and audit them, then count the chunk on the
    run row (locked last). A worker that dies mid-chunk rolls all of it back, numbers included; the
    re-queued job (Procrastinate's stalled-job retry) settles it again. A chunk counted already is not
    settled twice; a run no longer running (failed, taken over) settles nothing."""
    now = now or datetime.now(UTC)
    with db.read() as s:
        run = s.get(BillingRun, run_id)
        if run is None:
            raise NotFound(f"billing run {run_id} not found")
        summary = dict(run.summary or {})
        meta = summary.get("distributed")
        if meta is None:
            raise Invalid(f"billing run {run_id} is not a distributed run")
        if run.state != "running" or index in summary.get("chunks_done", []):
            return ChunkResult(run_id, index, done=int(summary.get("done", 0)), total=int(summary.get("total", 0)),
                               state=run.state, already=True)
        today = date.fromisoformat(meta["today"])
        issue = date.fromisoformat(meta["issue_date"]) if meta.get("issue_date") else None
        period_label, period_end = run.period, run.period_end
        rates = rates_around(s, today)
        threshold_waiting = frozenset(str(a) for a in s.execute(
            select(BillingException.advertiser_id).where(BillingException.kind == "below_threshold",
                                                         BillingException.advertiser_id.in_(advertisers),
                                                         BillingException.state.in_(OPEN_EXCEPTION_STATES))).scalars())
        decided = frozenset(int(i) for i in s.execute(  # this chunk's pre-invoices with decisions on record
            select(BillingException.preinvoice_id).distinct()
            .join(Decision, Decision.exception_id == BillingException.id)
            .join(PreInvoice, PreInvoice.id == BillingException.preinvoice_id)
            .where(PreInvoice.advertiser_id.in_(advertisers))).scalars() if i is not None)
    ctx = Context(period_end=period_end, period_label=period_label, actor=actor, key=key, today=today, now=now,
                  billing_run_id=run_id, rates=rates, threshold_waiting=threshold_waiting, decided=decided,
                  issue_date=issue)
    with db.transaction() as s:
        settled = settle_advertisers(s, advertisers, ctx)
        _write_log(s, run_id, [m for _, out in settled for m in out.log], now)
        run = s.execute(select(BillingRun).where(BillingRun.id == run_id).with_for_update()
                        .execution_options(populate_existing=True)).scalar_one()
        summary = dict(run.summary or {})
        if run.state != "running" or index in summary.get("chunks_done", []):
            raise _ChunkTaken(run.state)  # settled meanwhile by another attempt: roll this one back
        created = [i.number for _, out in settled for i in out.invoices]
        summary.update(
            chunks_done=[*summary.get("chunks_done", []), index], heartbeat=max(now, datetime.now(UTC)).isoformat(),
            done=int(summary.get("done", 0)) + len(settled), created=int(summary.get("created", 0)) + len(created),
            skipped=int(summary.get("skipped", 0)) + sum(len(o.skipped) for _, o in settled),
            held=int(summary.get("held", 0)) + sum(len(o.held) for _, o in settled))
        run.summary = summary
        finished = len(summary["chunks_done"]) >= int(summary["distributed"]["chunks"])
        if finished:
            _close_distributed(s, run, actor=actor, key=key, now=now)
        else:
            notify(s, "run.progress", billing_run_id=run_id)
        return ChunkResult(run_id, index, created=created, skipped=summary["skipped"], held=summary["held"],
                           done=summary["done"], total=int(summary["total"]), finished=finished, state=run.state)


class _ChunkTaken(Conflict):
    def __init__(self, state: str) -> None:
        super().__init__(f"the chunk was settled meanwhile (run {state})", code="chunk_settled")


def _close_distributed(s: Session, run: BillingRun, *, actor: str, key: Ed25519PrivateKey | None,
                       now: datetime) -> None:
    """The last chunk committed: the run is done (in that chunk's transaction)."""
    summary = dict(run.summary or {})
    run.state = "done"
    run.lock_key = None
    run.finished_at = max(now, datetime.now(UTC))
    counts = {k: int(summary.get(k, 0)) for k in ("created", "skipped", "held")}
    s.flush()
    audit.record(s, key=key, actor=actor, action="billing_run.done", subject_type="billing_run", subject_id=run.id,
                 payload={**counts, "chunks": int(summary["distributed"]["chunks"])}, now=now)
    notify(s, "run.finished", billing_run_id=run.id)


def run_invoice_ids(db: Database, run_id: int) -> list[int]:
    """The invoices a run created, in finalization order."""
    with db.read() as s:
        return [int(i) for i in s.execute(select(Invoice.id).where(Invoice.billing_run_id == run_id)
                                          .order_by(Invoice.id)).scalars()]


def run_progress(db: Database, run_id: int) -> dict[str, Any]:
    """A run's aggregated progress: ``state``, ``done``/``total`` advertisers, chunks done of all, counts."""
    with db.read() as s:
        run = s.get(BillingRun, run_id)
        if run is None:
            raise NotFound(f"billing run {run_id} not found")
        summary = dict(run.summary or {})
    meta = summary.get("distributed") or {}
    return {"run_id": run_id, "period": run.period, "state": run.state, "done": int(summary.get("done", 0)),
            "total": int(summary.get("total", 0)), "chunks": int(meta.get("chunks", 0)),
            "chunks_done": len(summary.get("chunks_done", [])), "created": int(summary.get("created", 0)),
            "skipped": int(summary.get("skipped", 0)), "held": int(summary.get("held", 0)),
            "title": meta.get("title"), "channel": run.channel, "message_ts": run.message_ts,
            "started_by": run.started_by}


# --------------------------------------------------------------------------- settling advertisers


def finalize_for_advertiser(
    s: Session, *, advertiser_id: str, period_end: date, actor: str, signing_key: Ed25519PrivateKey | None,
    today: date, billing_run_id: int | None, ignore_threshold: bool, now: datetime | None = None,
) -> list[Invoice]:
    """Invoice an advertiser now, in the caller's transaction (Force on a below-threshold skip:
    ``ignore_threshold=True``). Returns the invoices created (none if nothing is billable)."""
    now = now or datetime.now(UTC)
    rates = rates_around(s, today, since=_earliest_open_period_end(s, period_end))
    ctx = Context(period_end=period_end, period_label=None, actor=actor, key=signing_key, today=today, now=now,
                  billing_run_id=billing_run_id, rates=rates, ignore_threshold=ignore_threshold)
    out = settle_advertiser(s, advertiser_id, ctx)
    _write_log(s, billing_run_id, out.log, now)
    return out.invoices


def settle_advertiser(s: Session, advertiser_id: str, ctx: Context) -> Outcome:
    """collect → check → threshold → finalize for one advertiser, in the caller's transaction."""
    return settle_advertisers(s, [advertiser_id], ctx)[0][1]


@dataclass(frozen=True)
class Prefetched:
    """Everything settling a chunk of advertisers reads, loaded with a few set-based queries."""

    advertisers: dict[str, Advertiser]
    preinvoices: dict[str, list[PreInvoice]]  # per advertiser, locked, in billing order
    open_counts: dict[int, int]  # open exceptions per pre-invoice
    entities: dict[str, LegalEntity]
    decisions: dict[int, list[tuple[int, dict[str, Any]]]]  # (decision id, decision) per pre-invoice
    # consolidated partners of the chunk's branches: partner id → (partner, its head office branch)
    partners: dict[str, tuple[Partner, Advertiser]] = field(default_factory=dict)
    supplies: dict[str, str] = field(default_factory=dict)  # item id → "goods" (items not listed: services)


@dataclass
class Pending:
    """An invoice built but not yet numbered nor inserted (a chunk numbers and inserts all of them at
    once, see :func:`_number`), for ``out``; ``row`` is set when it is numbered, and its log line then
    fills the place ``log_at`` kept in ``out.log``."""

    lines: list[dict[str, Any]]
    batch: Batch
    draft: InvoiceDraft
    out: Outcome
    log_at: int
    row: dict[str, Any] = field(default_factory=dict)


def settle_advertisers(s: Session, advertiser_ids: Sequence[str], ctx: Context, *,
                       stop_at: int | None = None) -> list[tuple[str, Outcome]]:
    """collect → check → threshold → finalize for several advertisers, in the caller's transaction.

    Reads are set-based (:func:`prefetch`); invoices are numbered in advertiser order from the
    sequence row locked once for the transaction, inserted together, and then recorded (audit,
    pre-invoices marked invoiced, events). Numbers stay gapless because all of it commits or rolls
    back together. ``stop_at``: stop after the advertiser with which this call has created that
    many invoices (an injected failure follows; see :func:`run_billing`).
    """
    pre = prefetch(s, advertiser_ids, ctx)
    done: list[tuple[str, Outcome]] = []
    steps: list[Pending | Skipped] = []  # written after the loop, in this order
    # consolidated partners: (partner, legal entity, currency) → the branches' groups, settled as one invoice
    pooled: dict[tuple[str, str, str], list[tuple[Advertiser, list[PreInvoice]]]] = {}
    pool_out: dict[tuple[str, str, str], Outcome] = {}
    invoiced = 0
    for pos, adv_id in enumerate(advertiser_ids):
        adv = pre.advertisers.get(adv_id)
        if adv is None:
            raise NotFound(f"advertiser {adv_id} not found")
        out = Outcome()
        billable = check(s, adv, pre.preinvoices.get(adv_id, []), ctx, out, pre=pre)
        consolidated = pre.partners.get(adv.partner_id) if adv.partner_id else None
        for (le_id, currency), whole in sorted(billable.items()):
            le = pre.entities.get(le_id)
            if le is None:
                raise NotFound(f"legal entity {le_id} not found")
            if consolidated is not None:  # billed with the partner's other branches (no branch threshold)
                key = (consolidated[0].id, le_id, currency)
                pooled.setdefault(key, []).append((adv, whole))
                pool_out[key] = out
                continue
            for group in split_for_invoices(whole):  # one rate per invoice; one-offs and overrides alone
                batch = Batch(adv, le, currency, tuple(group))
                if (not ctx.ignore_threshold and currency == adv.currency
                        and below_threshold(batch.total, adv.billing_threshold)):
                    steps.append(_note_skip(batch, out))
                    continue
                for part in invoice_parts(batch, pre.supplies):  # one VAT treatment and PO number each
                    steps.append(_prepare_invoice(s, part, ctx, out, pre))
                    invoiced += 1
        done.append((adv_id, out))
        following = advertiser_ids[pos + 1] if pos + 1 < len(advertiser_ids) else None
        if consolidated is not None and following is not None and adv.partner_id == getattr(
                pre.advertisers.get(following), "partner_id", None):
            continue  # the partner's next branch belongs to the same invoice
        for key in sorted(k for k in pooled if k[0] == adv.partner_id):
            for part in invoice_parts(_partner_batch(pre, key, pooled.pop(key)), pre.supplies):
                steps.append(_prepare_invoice(s, part, ctx, pool_out[key], pre))
                invoiced += 1
        if stop_at is not None and invoiced >= stop_at:
            break
    for key in sorted(pooled):  # a partner whose branches were not adjacent (a direct call)
        for part in invoice_parts(_partner_batch(pre, key, pooled[key]), pre.supplies):
            steps.append(_prepare_invoice(s, part, ctx, pool_out[key], pre))
    _number(s, steps, ctx)
    _write_steps(s, steps, ctx)
    return done


def _partner_batch(pre: Prefetched, key: tuple[str, str, str],
                   groups: list[tuple[Advertiser, list[PreInvoice]]]) -> Batch:
    """One consolidated partner's batch: its branches' pre-invoices (branch by branch), addressed to the
    partner's head office."""
    partner, head = pre.partners[key[0]]
    groups = sorted(groups, key=lambda g: g[0].id)
    return Batch(head, pre.entities[key[1]], key[2], tuple(p for _, g in groups for p in g), partner=partner,
                 branches=tuple((a.id, a.name) for a, _ in groups))


def split_for_invoices(group: Sequence[PreInvoice]) -> list[list[PreInvoice]]:
    """``group`` split into invoices: each part's campaigns share one agreed exchange rate (or have none),
    as an invoice locks one rate; a one-off pre-invoice or one with header overrides is an invoice of its
    own. Most groups come back whole."""
    parts: dict[tuple[Decimal | None, date | None, int | None], list[PreInvoice]] = {}
    for p in group:
        c = p.campaign
        rate = (c.fx_rate, c.fx_rate_date) if c is not None and c.fx_rate is not None else (None, None)
        alone = p.id if c is None or p.overrides else None
        parts.setdefault((*rate, alone), []).append(p)
    return list(parts.values())


def prefetch(s: Session, advertiser_ids: Sequence[str], ctx: Context) -> Prefetched:
    """Load the advertisers, their open pre-invoices (locked), open exception counts, legal entities
    and decisions of a chunk in a few queries."""
    ids = sorted(set(advertiser_ids))
    advertisers = {a.id: a for a in s.execute(
        select(Advertiser).options(joinedload(Advertiser.legal_entity)).where(Advertiser.id.in_(ids))
    ).unique().scalars()}
    by_adv = collect_many(s, ids, ctx.period_end)
    pids = [p.id for group in by_adv.values() for p in group]
    open_counts = open_exception_counts(s, pids)
    entities = {a.legal_entity.id: a.legal_entity for a in advertisers.values()}
    missing = {p.legal_entity_id for group in by_adv.values() for p in group} - set(entities)
    if missing:
        entities.update({e.id: e for e in s.execute(select(LegalEntity).where(LegalEntity.id.in_(missing))).scalars()})
    decisions: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    wanted = pids if ctx.decided is None else sorted(ctx.decided.intersection(pids))
    if wanted:
        rows = s.execute(select(Decision, BillingException.preinvoice_id, BillingException.kind)
                         .join(BillingException, BillingException.id == Decision.exception_id)
                         .where(BillingException.preinvoice_id.in_(wanted)).order_by(Decision.id)).all()
        for d, pid, kind in rows:
            if pid is not None:
                decisions.setdefault(int(pid), []).append((int(d.id), _decision_json(d, pid, kind)))
    return Prefetched(advertisers, by_adv, open_counts, entities, decisions, _consolidated(s, advertisers),
                      supplies_of(s, by_adv.values()))


def _consolidated(s: Session, advertisers: dict[str, Advertiser]) -> dict[str, tuple[Partner, Advertiser]]:
    """The consolidated partners of these advertisers, each with its head office branch (the partner's
    ``head_office``, else its first branch by id)."""
    partner_ids = {a.partner_id for a in advertisers.values() if a.partner_id}
    if not partner_ids:
        return {}
    out: dict[str, tuple[Partner, Advertiser]] = {}
    for partner in s.execute(select(Partner).where(Partner.id.in_(partner_ids),
                                                   Partner.invoicing == "consolidated")).scalars():
        head_id = partner.head_office_id or s.scalar(
            select(func.min(Advertiser.id)).where(Advertiser.partner_id == partner.id))
        head = advertisers.get(str(head_id)) or s.execute(
            select(Advertiser).options(joinedload(Advertiser.legal_entity)).where(Advertiser.id == head_id)
        ).unique().scalar_one_or_none()
        if head is None:
            raise NotFound(f"partner {partner.id}: head office {head_id} not found")
        out[partner.id] = (partner, head)
    return out


def supplies_of(s: Session, groups: Iterable[Sequence[PreInvoice]]) -> dict[str, str]:
    """``goods`` items among the pre-invoices' lines (one query; every other item sells services)."""
    items = sorted({x.item_id for group in groups for p in group for x in p.lines if x.item_id})
    if not items:
        return {}
    rows = s.execute(select(CampaignItem.id, CampaignItem.supply)
                     .where(CampaignItem.id.in_(items), CampaignItem.supply != "services")).all()
    return {str(i): str(sup) for i, sup in rows}


def invoice_parts(batch: Batch, supplies: Mapping[str, str]) -> list[Batch]:
    """The invoices a billable batch becomes: one per (purchase-order number, VAT treatment).

    Invoices never mix PO numbers (issue 19: an accounts-payable team books an invoice against one
    order, EN 16931 BT-13 holds one). An invoice carries one VAT treatment; for one buyer the
    treatment only depends on the line's item when the buyer is outside the EU — services are not
    subject to VAT (``O``), goods are an export (``G``) — and EN 16931 BR-O-11 forbids ``O`` beside any
    other category on one invoice. So such a pre-invoice's lines are split over two invoices (the
    pre-invoice points to the first; each invoice line names its pre-invoice). Parts are numbered in
    a fixed order: PO number, then the category. On a consolidated partner invoice each branch's
    pre-invoices carry its own PO number (its campaign's, else the branch's default).
    """
    adv, le = batch.advertiser, batch.legal_entity
    parts: dict[tuple[str, VatTreatment], tuple[list[PreInvoice], set[int]]] = {}
    treatments: dict[str, VatTreatment] = {}  # per supply, decided once (a VAT id check is not free)
    for p in batch.preinvoices:
        po = po_number_of(p, p.advertiser if batch.partner is not None else adv) or ""
        for x in p.lines:
            supply = supplies.get(x.item_id or "", "services")
            t = treatments.get(supply) or treatments.setdefault(supply, _vat(adv, le, supply))
            pis, ids = parts.setdefault((po, t), ([], set()))
            if not pis or pis[-1] is not p:
                pis.append(p)
            ids.add(x.id)
    if not parts:
        return [batch]
    if len(parts) == 1:
        ((po, t),) = parts
        return [replace(batch, vat=t, po_number=po or None)]
    return [replace(batch, preinvoices=tuple(pis), vat=t, po_number=po or None, line_ids=frozenset(ids))
            for (po, t), (pis, ids) in sorted(parts.items(), key=lambda kv: (kv[0][0], kv[0][1].category))]


def collect(s: Session, advertiser_id: str, period_end: date) -> list[PreInvoice]:
    """The advertiser's open pre-invoices up to ``period_end``, locked for this transaction."""
    return collect_many(s, [advertiser_id], period_end).get(advertiser_id, [])


def collect_many(s: Session, advertiser_ids: Sequence[str], period_end: date) -> dict[str, list[PreInvoice]]:
    """The open pre-invoices up to ``period_end`` of each advertiser, locked for this transaction
    (``FOR UPDATE`` on PostgreSQL; SQLite write transactions are ``BEGIN IMMEDIATE``)."""
    q = (select(PreInvoice)
         .options(selectinload(PreInvoice.lines), joinedload(PreInvoice.campaign))
         .where(PreInvoice.advertiser_id.in_(advertiser_ids), PreInvoice.invoice_id.is_(None),
                PreInvoice.state.in_(COLLECTED_STATES), PreInvoice.period_end <= period_end)
         .order_by(PreInvoice.advertiser_id, PreInvoice.period_start, PreInvoice.id))
    if not is_sqlite(s):
        q = q.with_for_update(of=PreInvoice)
    out: dict[str, list[PreInvoice]] = {}
    for pi in s.execute(q).unique().scalars():
        out.setdefault(pi.advertiser_id, []).append(pi)
    return out


def _hold_reason(pi: PreInvoice, open_count: int) -> str | None:
    if pi.state == "held":
        return f"held: {pi.hold_reason or 'needs correction'}"
    if pi.problems:
        return "problems: " + "; ".join(pi.problems)
    if open_count or pi.state == "pending":
        return f"waiting for a decision on {open_count or 'an'} open exception{'s' if open_count > 1 else ''}"
    if pi.state != "approved":
        return f"not approved ({pi.state})"
    if pi.approved_hash != pi.content_hash or preinvoice_hash(pi) != pi.approved_hash:
        return "content changed after approval"
    return None


def _report_held(out: Outcome, pi: PreInvoice, adv: Advertiser, reason: str) -> None:
    campaign = pi.campaign.name if pi.campaign is not None else ONE_OFF
    out.held.append({"preinvoice": pi.id, "advertiser": adv.name, "campaign": campaign,
                     "period_start": pi.period_start.isoformat(), "period_end": pi.period_end.isoformat(),
                     "state": pi.state, "reason": reason, "net": f"{pi.net:.2f}", "currency": pi.currency})
    out.log.append(held_line(pi.id, campaign, f"{pi.period_start}..{pi.period_end}", adv.name, reason))


def check(s: Session, adv: Advertiser, pis: Sequence[PreInvoice], ctx: Context, out: Outcome, *,
          pre: Prefetched | None = None) -> dict[tuple[str, str], list[PreInvoice]]:
    """Split collected pre-invoices into billable groups (legal entity, currency) and held ones.
    Approved ones are checked again as of the issue date (exchange rate, VAT data)."""
    opened = pre.open_counts if pre is not None else open_exception_counts(s, [p.id for p in pis])
    billable: dict[tuple[str, str], list[PreInvoice]] = {}
    for pi in pis:
        reason = _hold_reason(pi, opened.get(pi.id, 0))
        if reason is None:
            le = (adv.legal_entity if pi.legal_entity_id == adv.legal_entity_id
                  else pre.entities.get(pi.legal_entity_id) if pre is not None
                  else s.get(LegalEntity, pi.legal_entity_id))
            problems = run_checks(check_input(pi, adv, le, ctx.rates, ctx.today)) if le else ["unknown legal entity"]
            if problems:
                reason = "problems: " + "; ".join(problems)
        if reason is not None:
            _report_held(out, pi, adv, reason)
            continue
        billable.setdefault((pi.legal_entity_id, pi.currency), []).append(pi)
    return billable


def skip(s: Session, batch: Batch, ctx: Context, out: Outcome) -> None:
    """Below the threshold: create nothing, let the items wait, open a ``below_threshold`` exception."""
    _open_skip_exception(s, _note_skip(batch, out), ctx)


@dataclass(frozen=True)
class Skipped:
    """A below-threshold batch whose exception is opened after the chunk's invoices are inserted."""

    batch: Batch
    line: str


def _note_skip(batch: Batch, out: Outcome) -> Skipped:
    """The skip's log line and report entry."""
    adv, total = batch.advertiser, batch.total
    line = skipped_line(total, batch.currency, adv.name, adv.billing_threshold)
    out.log.append(line)
    out.skipped.append({"advertiser": adv.name, "advertiser_id": adv.id, "total": f"{total:.2f}",
                        "threshold": f"{adv.billing_threshold:.2f}", "currency": batch.currency})
    return Skipped(batch, line)


def _open_skip_exception(s: Session, skipped: Skipped, ctx: Context) -> None:
    """Open (or refresh) the ``below_threshold`` exception of a skip; close the ones it supersedes."""
    batch, line = skipped.batch, skipped.line
    adv, le, currency, group, total = (batch.advertiser, batch.legal_entity, batch.currency, batch.preinvoices,
                                       batch.total)
    threshold = adv.billing_threshold
    ids = [p.id for p in group]
    subject = content_hash({"preinvoices": [[p.id, p.content_hash] for p in group], "total": str(total),
                            "threshold": str(threshold)})

    key = f"below_threshold:{adv.id}:{le.id}:{currency}:{ctx.period_label or ctx.period_end.isoformat()}"
    exc = open_exception(
        s, kind="below_threshold", key=key, legal_entity_id=le.id, advertiser_id=adv.id, preinvoice_id=None,
        billing_run_id=ctx.billing_run_id, period_start=min(p.period_start for p in group),
        period_end=ctx.period_end, amount=total, currency=currency, cause="below_threshold", summary=line,
        evidence={"preinvoice_ids": ids, "total": str(total), "threshold": str(threshold),
                  "periods": [[p.period_start.isoformat(), p.period_end.isoformat()] for p in group]},
        subject_hash=subject, started_by=ctx.actor, now=ctx.now, signing_key=ctx.key,
    )
    for old in _open_threshold_exceptions(s, adv.id, exclude=exc.id):  # superseded by this run's skip
        close_exception(s, old.id, reason=f"superseded by exception {exc.id}", actor=ctx.actor,
                        signing_key=ctx.key, now=ctx.now)


def _open_threshold_exceptions(s: Session, advertiser_id: str, *, exclude: int | None) -> list[BillingException]:
    q = select(BillingException).where(BillingException.advertiser_id == advertiser_id,
                                       BillingException.kind == "below_threshold",
                                       BillingException.state.in_(OPEN_EXCEPTION_STATES))
    if exclude is not None:
        q = q.where(BillingException.id != exclude)
    return list(s.execute(q).scalars())


# --------------------------------------------------------------------------- finalize


def next_number(s: Session, legal_entity_id: str, series: str, year: int) -> tuple[int, str]:
    """Advance the gapless sequence of (legal entity, series, year) and format the number.

    The sequence row is read ``FOR UPDATE`` (PostgreSQL) inside the finalizing transaction; on SQLite
    the transaction is ``BEGIN IMMEDIATE``. It is locked once per transaction and then advanced in
    memory (flushed with the invoices): a chunk of a billing run numbers all its invoices from one
    lock. A rollback gives every number of the transaction back, so there are no gaps.
    """
    row = _sequence(s, legal_entity_id, series, year)
    row.last_seq += 1
    return row.last_seq, format_number(series, year=year, seq=row.last_seq)


def _sequence(s: Session, legal_entity_id: str, series: str, year: int) -> NumberSequence:
    """The sequence row, locked for this transaction (cached in the session for the transaction)."""
    tx = s.get_transaction()
    cache = s.info.get("_number_sequences")
    if cache is None or cache[0] is not tx:
        cache = (tx, {})
        s.info["_number_sequences"] = cache
    rows: dict[tuple[str, str, int], NumberSequence] = cache[1]
    found = rows.get((legal_entity_id, series, year))
    if found is not None:
        return found
    q = (select(NumberSequence).where(NumberSequence.legal_entity_id == legal_entity_id,
                                      NumberSequence.series == series, NumberSequence.year == year)
         .with_for_update().execution_options(populate_existing=True))
    row = s.execute(q).scalar_one_or_none()
    if row is None:
        _insert_sequence(s, legal_entity_id, series, year)
        row = s.execute(q).scalar_one()
    rows[(legal_entity_id, series, year)] = row
    return row


def _insert_sequence(s: Session, legal_entity_id: str, series: str, year: int) -> None:
    values = {"legal_entity_id": legal_entity_id, "series": series, "year": year, "last_seq": 0}
    if is_sqlite(s):
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
    s.execute(dialect_insert(NumberSequence).values(**values).on_conflict_do_nothing())


def with_overrides(snapshot: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The parties snapshot with a pre-invoice's header overrides: the ``recipient`` (an addressee line
    above the buyer's address) and ``notes`` printed on the invoice."""
    out = dict(snapshot)
    if overrides.get("recipient"):
        out["buyer"] = {**dict(out.get("buyer") or {}), "recipient": str(overrides["recipient"])}
    if overrides.get("notes"):
        out["notes"] = [str(overrides["notes"])]
    return out


def parties(adv: Advertiser, le: LegalEntity, *, po_number: str | None = None) -> dict[str, Any]:
    """Seller and buyer as they are at finalization (the document must not change when master data does).
    ``po_number``: the buyer's purchase-order number the invoice is billed under (EN 16931 BT-13),
    kept with the buyer (absent when there is none, so older snapshots hash as they did)."""
    out: dict[str, dict[str, Any]] = {
        "seller": {"id": le.id, "name": le.name, "country": le.country, "vat_id": le.vat_id, "address": le.address,
                   "street": le.street, "postcode": le.postcode, "city": le.city,
                   "iban": le.iban, "bic": le.bic, "bank_name": le.bank_name, "currency": le.currency,
                   "register_court": le.register_court, "register_number": le.register_number,
                   "managing_directors": [n for n in (le.managing_directors or "").splitlines() if n.strip()]},
        "buyer": {"id": adv.id, "name": adv.name, "country": adv.country, "vat_id": adv.vat_id,
                  "address": adv.address, "street": adv.street, "postcode": adv.postcode, "city": adv.city,
                  "customer_number": adv.customer_number, "email": adv.email, "locale": adv.locale,
                  "payment_terms_days": adv.payment_terms_days},
    }
    if po_number:
        out["buyer"]["po_number"] = po_number
    return out


def _approval_json(p: PreInvoice) -> dict[str, Any]:
    return {"preinvoice_id": p.id, "approved_by": p.approved_by,
            "approved_at": p.approved_at.isoformat() if p.approved_at else None, "content_hash": p.approved_hash}


def _decision_json(d: Decision, pid: int | None, kind: str) -> dict[str, Any]:
    return {"preinvoice_id": pid, "exception_id": d.exception_id, "kind": kind, "decision": d.decision,
            "actor_id": d.actor_id, "actor_name": d.actor_name, "reason": d.reason,
            "decided_at": d.decided_at.isoformat(), "subject_hash": d.subject_hash}


def approvals_of(s: Session, group: Sequence[PreInvoice],
                 decided: frozenset[int] | None = None) -> list[dict[str, Any]]:
    """Who approved what: each pre-invoice's approval (hash-bound) and the decisions on its exceptions."""
    out = [_approval_json(p) for p in group]
    ids = [p.id for p in group]
    if decided is not None and not decided.intersection(ids):
        return out  # known up front: no decisions on these pre-invoices
    rows = s.execute(select(Decision, BillingException.preinvoice_id, BillingException.kind)
                     .join(BillingException, BillingException.id == Decision.exception_id)
                     .where(BillingException.preinvoice_id.in_(ids)).order_by(Decision.id)).all()
    out.extend(_decision_json(d, pid, kind) for d, pid, kind in rows)
    return out


def _approvals_prefetched(group: Sequence[PreInvoice], pre: Prefetched) -> list[dict[str, Any]]:
    """:func:`approvals_of` from prefetched decisions (in decision order, as its query gives them)."""
    decisions = sorted((d for p in group for d in pre.decisions.get(p.id, ())), key=lambda d: d[0])
    return [_approval_json(p) for p in group] + [d for _, d in decisions]


def invoice_lines(group: Sequence[PreInvoice], branches: dict[str, str] | None = None,
                  line_ids: frozenset[int] | None = None) -> list[InvoiceLineDraft]:
    """The invoice lines of the pre-invoices (``line_ids``: only these lines), grouped on the document by
    campaign (and service period); on a consolidated partner invoice (``branches``: advertiser id → name)
    by branch and campaign, so that every line says which branch it is for."""
    def block(p: PreInvoice) -> str:
        name = p.campaign.name if p.campaign is not None else ONE_OFF
        return f"{branches[p.advertiser_id]} – {name}" if branches else name

    return [
        InvoiceLineDraft(description=x.description, quantity=x.quantity, unit=x.unit, unit_price=x.unit_price,
                         amount=x.amount, campaign=block(p), item_id=x.item_id, period_start=p.period_start,
                         period_end=p.period_end, preinvoice_id=p.id, preinvoice_line_id=x.id,
                         computation=dict(x.computation or {}))
        for p in group for x in sorted(p.lines, key=lambda r: r.position)
        if line_ids is None or x.id in line_ids
    ]


def _vat(adv: Advertiser, le: LegalEntity, supply: str = "services") -> VatTreatment:
    t = vat_treatment(seller_country=le.country, buyer_country=adv.country, buyer_vat_id=adv.vat_id,
                      supply=supply)
    if isinstance(t, VatProblem):  # the check stage holds these; reaching here is a bug
        raise NotAllowed(f"{adv.name}: {t.message}", code="vat")
    return t


def finalize(s: Session, batch: Batch, ctx: Context, out: Outcome) -> Invoice:
    """Number and store the invoices of the batch (:func:`invoice_parts`, usually one); mark its
    pre-invoices invoiced. Returns the last one."""
    parts = invoice_parts(batch, supplies_of(s, [batch.preinvoices]))
    steps = [_prepare_invoice(s, part, ctx, out, None) for part in parts]
    _number(s, steps, ctx)
    _write_steps(s, steps, ctx)
    return out.invoices[-1]


def _prepare_invoice(s: Session, batch: Batch, ctx: Context, out: Outcome, pre: Prefetched | None) -> Pending:
    """Build and number the invoice of a batch (inserted by :func:`_insert_invoices`)."""
    adv, le, currency, group = batch.advertiser, batch.legal_entity, batch.currency, batch.preinvoices
    approvals = _approvals_prefetched(group, pre) if pre is not None else approvals_of(s, group, ctx.decided)
    overrides = dict(group[0].overrides or {}) if len(group) == 1 else {}  # split_for_invoices: alone
    terms = int(overrides.get("payment_terms_days", adv.payment_terms_days))
    service_end = max((p.period_end for p in group), default=None)
    issued = ctx.issue_date or invoice_date(adv.invoice_date_rule or le.invoice_date_rule, run_day=ctx.today,
                                            service_end=service_end)
    fx = None
    if currency != le.currency:
        fx = fx_for(ctx.rates, currency, le, [p.campaign for p in group if p.campaign is not None], issue=issued,
                    service_end=service_end)
        if fx is None:  # the check stage holds these; an explicit --issue-date may move the day
            raise Invalid(f"{adv.name}: " + missing_rate_text(
                currency, le.currency, rule=le.fx_rule, on=rate_day(le.fx_rule, issue=issued, service_end=service_end),
                max_age_days=le.fx_max_age_days), code="fx")
    due = due_date(adv.due_date_rule or le.due_date_rule, issue=issued, terms_days=terms)
    the_parties = with_overrides(parties(adv, le, po_number=batch.po_number), overrides)
    if batch.partner is not None:  # addressed to the partner, at its head office
        the_parties["buyer"].update(name=batch.partner.name, partner=batch.partner.id,
                                    branches=[name for _, name in batch.branches])
    draft = build_invoice(lines=invoice_lines(group, dict(batch.branches) if batch.partner else None, batch.line_ids),
                          currency=currency, vat=batch.vat or _vat(adv, le), fx=fx, issue_date=issued,
                          payment_terms_days=terms, due_date=due, parties=the_parties, approvals=approvals)
    out.log.append("")  # its "created" line, once it is numbered
    return Pending(_line_rows(draft), batch, draft, out, log_at=len(out.log) - 1)


def _number(s: Session, steps: Sequence[Pending | Skipped], ctx: Context) -> None:
    """Number the built invoices, in order, from the sequence rows locked here: the short serialized
    step of a chunk. Everything before it (reads, checks, building the invoices) runs without the
    lock, so chunks settled in parallel (distributed runs) wait for each other only from here to their
    commit; the numbers commit or roll back with the chunk, so they stay gapless."""
    for step in steps:
        if not isinstance(step, Pending):
            continue
        adv, le, draft = step.batch.advertiser, step.batch.legal_entity, step.draft
        seq, number = next_number(s, le.id, le.invoice_series, draft.issue_date.year)
        step.row = _invoice_row(draft, le_id=le.id, advertiser_id=adv.id, series=le.invoice_series, seq=seq,
                                number=number, ctx=ctx)
        step.out.log[step.log_at] = created_line(number, step.batch.partner.name if step.batch.partner else adv.name)


def _insert_invoices(s: Session, pending: Sequence[Pending]) -> list[Invoice]:
    """Insert the invoices and their lines with two bulk INSERTs instead of a unit-of-work flush of
    thousands of objects. Only the invoices' ids come back; the invoices are then attached to the
    session as persistent objects (their ``lines`` load on first access)."""
    if not pending:
        return []
    ids = s.scalars(insert(Invoice).returning(Invoice.id, sort_by_parameter_order=True),
                    [p.row for p in pending]).all()
    lines = [{**x, "invoice_id": i} for p, i in zip(pending, ids, strict=True) for x in p.lines]
    if lines:
        s.execute(insert(InvoiceLine), lines)
    invoices = []
    for p, i in zip(pending, ids, strict=True):
        inv = Invoice(id=i, **p.row)
        make_transient_to_detached(inv)  # it is in the database: attach it as it is, nothing to write
        s.add(inv)
        invoices.append(inv)
    return invoices


def _write_steps(s: Session, steps: Sequence[Pending | Skipped], ctx: Context) -> None:
    """Insert the invoices (at once), then, in the order the advertisers were settled: each invoice's
    audit record (written in groups with one INSERT), its pre-invoices marked invoiced, carried-over
    threshold exceptions closed, events; each skip's exception. The audit chain reads as if every
    advertiser had been settled on its own."""
    invoices = iter(_insert_invoices(s, [x for x in steps if isinstance(x, Pending)]))
    entries: list[audit.Entry] = []
    for step in steps:
        if isinstance(step, Skipped):
            audit.record_many(s, key=ctx.key, entries=entries, now=ctx.now)  # keep the records in order
            entries = []
            _open_skip_exception(s, step, ctx)
            continue
        inv = next(invoices)
        step.out.invoices.append(inv)
        entries.append(_invoice_entry(inv, step.draft, ctx, None))
        notify(s, "invoice.finalized", invoice_id=inv.id, billing_run_id=ctx.billing_run_id)
        for p in step.batch.preinvoices:  # the invoice's audit record names these pre-invoices and their hashes
            p.state = "invoiced"
            if p.invoice_id is None:  # split over several invoices (:func:`invoice_parts`): the first
                p.invoice_id = inv.id
            p.updated_at = ctx.now
            notify(s, "preinvoice.changed", preinvoice_id=p.id)
        _note_decided_invoiced(s, step.batch.preinvoices, inv.id, ctx)
        adv = step.batch.advertiser
        if ctx.period_label is not None and not ctx.ignore_threshold and adv.id in ctx.threshold_waiting:

            audit.record_many(s, key=ctx.key, entries=entries, now=ctx.now)
            entries = []
            for old in _open_threshold_exceptions(s, adv.id, exclude=None):  # the waiting items are billed now
                close_exception(s, old.id, reason=f"invoiced in {inv.number}", actor=ctx.actor,
                                signing_key=ctx.key, now=ctx.now)
    audit.record_many(s, key=ctx.key, entries=entries, now=ctx.now)


def _note_decided_invoiced(s: Session, group: Sequence[PreInvoice], invoice_id: int, ctx: Context) -> None:
    """``exception.invoiced`` for each decided (approved / forced) exception on the invoice's
    pre-invoices: its message and thread name the invoice (and get its PDF). Only pre-invoices with
    decisions on record are looked up."""
    pids = [p.id for p in group if ctx.decided is None or p.id in ctx.decided]
    if not pids:
        return
    for eid in s.scalars(select(BillingException.id).where(BillingException.preinvoice_id.in_(pids),
                                                         BillingException.state.in_(("approved", "forced")))
                         .order_by(BillingException.id)):
        notify(s, "exception.invoiced", exception_id=int(eid), invoice_ids=[invoice_id])


def store_invoice(s: Session, draft: InvoiceDraft, *, le: LegalEntity, advertiser_id: str, series: str,
                  ctx: Context, references_invoice_id: int | None = None) -> Invoice:
    """Take the next number, insert the invoice and its lines, audit, and notify after commit."""
    seq, number = next_number(s, le.id, series, draft.issue_date.year)
    inv = Invoice(**_invoice_row(draft, le_id=le.id, advertiser_id=advertiser_id, series=series, seq=seq,
                                 number=number, ctx=ctx, references_invoice_id=references_invoice_id))
    inv.lines = [InvoiceLine(**x) for x in _line_rows(draft)]
    s.add(inv)
    s.flush()
    _audit_invoice(s, inv, draft, ctx, references_invoice_id)
    return inv


def _invoice_row(draft: InvoiceDraft, *, le_id: str, advertiser_id: str, series: str, seq: int, number: str,
                 ctx: Context, references_invoice_id: int | None = None) -> dict[str, Any]:
    """The invoice's column values (every column, so bulk inserts batch uniformly)."""
    return {
        "number": number, "kind": draft.kind, "legal_entity_id": le_id, "advertiser_id": advertiser_id,
        "series": series, "year": draft.issue_date.year, "seq": seq, "issue_date": draft.issue_date,
        "due_date": draft.due_date, "service_start": draft.service_start, "service_end": draft.service_end,
        "currency": draft.currency, "net": draft.net, "vat": draft.vat, "gross": draft.gross,
        "vat_rate": draft.vat_rate, "vat_category": draft.vat_category, "vat_note": draft.vat_note, "fx": draft.fx,
        "references_invoice_id": references_invoice_id, "reason": draft.reason,
        "billing_run_id": ctx.billing_run_id, "parties": dict(draft.parties),
        "approvals": [dict(a) for a in draft.approvals],
        "content_hash": invoice_hash(draft, number=number, legal_entity_id=le_id, advertiser_id=advertiser_id),
        "created_by": ctx.actor, "created_at": ctx.now, "pdf_state": "pending", "pdf_path": None,
        "pdf_sha256": None, "pdf_attempts": 0, "pdf_error": None,
    }


def _line_rows(draft: InvoiceDraft) -> list[dict[str, Any]]:
    return [
        {"position": i, "preinvoice_id": x.preinvoice_id, "preinvoice_line_id": x.preinvoice_line_id,
         "item_id": x.item_id, "campaign": x.campaign, "description": x.description, "quantity": x.quantity,
         "unit": x.unit, "unit_price": x.unit_price, "amount": x.amount, "period_start": x.period_start,
         "period_end": x.period_end, "computation": dict(x.computation), "credited_line_id": x.credited_line_id}
        for i, x in enumerate(draft.lines)
    ]


def _invoice_entry(inv: Invoice, draft: InvoiceDraft, ctx: Context, references_invoice_id: int | None) -> audit.Entry:
    return audit.Entry(
        actor=ctx.actor, action=f"{draft.kind}.finalized", subject_type="invoice", subject_id=inv.id,
        payload={"number": inv.number, "content_hash": inv.content_hash, "currency": inv.currency,
                 "net": str(inv.net), "vat": str(inv.vat), "gross": str(inv.gross),
                 # these pre-invoices move to ``invoiced`` in this same record's transaction
                 "preinvoices": sorted({x.preinvoice_id for x in draft.lines if x.preinvoice_id}),
                 "references": references_invoice_id, "billing_run_id": ctx.billing_run_id})


def _audit_invoice(s: Session, inv: Invoice, draft: InvoiceDraft, ctx: Context,
                   references_invoice_id: int | None) -> None:
    e = _invoice_entry(inv, draft, ctx, references_invoice_id)
    audit.record(s, key=ctx.key, actor=e.actor, action=e.action, subject_type=e.subject_type,
                 subject_id=e.subject_id, payload=e.payload, now=ctx.now)
    notify(s, "invoice.finalized", invoice_id=inv.id, billing_run_id=ctx.billing_run_id)


# --------------------------------------------------------------------------- withdraw


def withdraw_items(s: Session, *, advertiser_id: str, preinvoice_ids: list[int], actor: str,
                   signing_key: Ed25519PrivateKey | None, reason: str | None, now: datetime) -> list[int]:
    """Reject on a below-threshold skip: the waiting pre-invoices are cancelled (never billed).
    Returns the ids cancelled; pre-invoices already invoiced or of another advertiser are refused."""
    if not preinvoice_ids:
        return []
    pis = list(s.execute(select(PreInvoice).where(PreInvoice.id.in_(preinvoice_ids)).with_for_update()).scalars())
    found = {p.id for p in pis}
    missing = sorted(set(preinvoice_ids) - found)
    if missing:
        raise NotFound(f"pre-invoice(s) not found: {', '.join(map(str, missing))}")
    out = []
    for p in sorted(pis, key=lambda x: x.id):
        if p.advertiser_id != advertiser_id:
            raise NotAllowed(f"pre-invoice {p.id} belongs to another advertiser", code="advertiser")
        if p.state == "cancelled":
            continue
        if p.state == "invoiced":
            raise NotAllowed(f"pre-invoice {p.id} is already invoiced", code="state")
        previous = p.state
        p.state = "cancelled"
        p.hold_reason = reason
        p.updated_at = now
        record_preinvoice_change(s, signing_key, actor, "preinvoice.cancelled", p,
                          {"reason": reason, "previous_state": previous}, now)
        out.append(p.id)
    return out

