"""Pre-invoices: create/update drafts per campaign and period, edit lines, approve, hold, override.

States (DESIGN.md): ``draft`` → ``pending`` (open exceptions) → ``approved`` → ``invoiced``; side states
``held`` (rejected, needs correction) and ``cancelled``.

- :func:`create_preinvoices` is idempotent: one pre-invoice per campaign and billing period (the
  unique key), updated in place; manual and edited lines survive a recomputation.
- Approval binds to the content hash. Any change of content (a recomputation with new delivery data,
  an edit) voids the approval and is recorded; the pre-invoice is then checked again.
- People handle exceptions only: after checks and variance checks, a pre-invoice with no problems
  and no open exception is approved by the system (actor ``system``), recorded like any other.

Every state change writes an audit record in the caller's transaction and queues
``preinvoice.changed`` (preinvoice_id) for after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, or_, select
from sqlalchemy.orm import Session, joinedload, make_transient_to_detached, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from billing.checks import run_checks
from billing.delivery import DayFigures
from billing.errors import Invalid, NotAllowed, NotFound
from billing.fx import Rate
from billing.money import ZERO, money, quantum
from billing.periods import Period, parse_period
from billing.preinvoice import (
    MANUAL_KINDS,
    CampaignSpec,
    LineDraft,
    booked_share,
    content_hash,
    draft_campaign,
    merge_lines,
    net_of,
)
from billing.tax import VatProblem, vat_amount, vat_treatment
from billing.variance import DEFAULT_TOLERANCE
from bot.workflows import audit, freshness, variance_checks
from bot.workflows.effects import notify
from bot.workflows.exceptions import open_exception, open_exceptions_for, reset_approvals
from bot.workflows.fx import rates_around
from storage.db import Database
from storage.mapping import campaign_spec, check_input, line_drafts, preinvoice_hash
from storage.models import (
    OPEN_EXCEPTION_STATES,
    Advertiser,
    BillingException,
    Campaign,
    Conversion,
    DeliveryFact,
    PreInvoice,
    PreInvoiceLine,
)
from storage.queries import among, open_exception_counts, resolve_advertisers

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SYSTEM = "system"
EDITABLE_STATES = ("draft", "pending", "approved", "held")


# --------------------------------------------------------------------------- writing lines


def _set_lines(pi: PreInvoice, lines: Sequence[LineDraft]) -> None:
    """Make ``pi.lines`` equal ``lines`` in order, updating rows in place where ids match."""
    by_id = {x.id: x for x in pi.lines}
    keep: list[PreInvoiceLine] = []
    for pos, d in enumerate(lines):
        row = by_id.get(d.id) if d.id is not None else None
        if row is None:
            row = PreInvoiceLine(preinvoice=pi)
        _assign(row, pos, d)
        keep.append(row)
    pi.lines[:] = keep


def _assign(row: PreInvoiceLine, pos: int, d: LineDraft) -> None:
    values: dict[str, Any] = {
        "position": pos, "item_id": d.item_id, "kind": d.kind, "description": d.description,
        "quantity": d.quantity, "unit": d.unit, "unit_price": d.unit_price, "amount": d.amount,
        "computation": dict(d.computation), "edited": d.edited,
    }
    for k, v in values.items():
        if getattr(row, k) != v:
            setattr(row, k, v)


# --------------------------------------------------------------------------- lookups


def delivery_days(s: Session, item_ids: Sequence[str], lo: date, hi: date) -> dict[str, list[DayFigures]]:
    """First-party figures per item and day in ``[lo, hi]`` — one query for the facts, one for the
    conversions (the only source of approved conversions for cpa/cpl). Core queries: tens of
    thousands of (item, day) rows need no ORM row machinery."""
    if not item_ids:
        return {}
    wanted = set(item_ids)
    f, c = DeliveryFact.__table__.c, Conversion.__table__.c
    fq = (select(f.item_id, f.day, func.coalesce(func.sum(f.impressions), 0), func.coalesce(func.sum(f.clicks), 0),
                 func.count())
          .where(f.party == "first_party", f.day >= lo, f.day <= hi)
          .group_by(f.item_id, f.day))
    cq = (select(c.item_id, c.day, func.count(), func.count().filter(c.status == "approved"))
          .where(c.day >= lo, c.day <= hi, c.item_id.is_not(None))
          .group_by(c.item_id, c.day))
    f_among, c_among = among(s, f.item_id, wanted), among(s, c.item_id, wanted)
    if f_among is not None and c_among is not None:
        fq, cq = fq.where(f_among), cq.where(c_among)
    conn = s.connection()
    convs: dict[tuple[str, date], tuple[int, int]] = {
        (item_id, day): (int(n), int(approved or 0))
        for item_id, day, n, approved in conn.execute(cq).all() if item_id in wanted}
    out: dict[str, list[DayFigures]] = {}
    none = (0, 0)
    for item_id, day, imps, clicks, n in conn.execute(fq).all():  # fetchall: far cheaper than row by row
        if item_id in wanted:
            rows, approved = convs.pop((item_id, day), none) if convs else none
            out.setdefault(item_id, []).append(DayFigures(day, int(imps), int(clicks), n, approved, rows))
    for (item_id, day), (rows, approved) in convs.items():  # conversions on days without facts
        out.setdefault(item_id, []).append(DayFigures(day, 0, 0, 0, approved, rows))
    return out


# --------------------------------------------------------------------------- state changes


def record_change(s: Session, key: Ed25519PrivateKey | None, actor: str, action: str, pi: PreInvoice,  # noqa: PLR0917
                  payload: dict[str, Any], now: datetime) -> None:
    """Record ``action`` on ``pi`` in the audit log and queue ``preinvoice.changed`` for after commit."""
    audit.record(s, key=key, actor=actor, action=action, subject_type="preinvoice", subject_id=pi.id,
                 payload=payload, now=now)
    notify(s, "preinvoice.changed", preinvoice_id=pi.id)


def _approve(s: Session, pi: PreInvoice, *, actor: str, key: Ed25519PrivateKey | None, now: datetime) -> None:
    e = _approved(pi, actor=actor, now=now)
    record_change(s, key, actor, e.action, pi, e.payload, now)


def _approved(pi: PreInvoice, *, actor: str, now: datetime) -> audit.Entry:
    """Approve ``pi`` (bound to its content hash); returns the audit entry the caller must record."""
    pi.state = "approved"
    pi.approved_hash = pi.content_hash
    pi.approved_by = actor
    pi.approved_at = now
    pi.updated_at = now
    return audit.Entry(actor, "preinvoice.approved", "preinvoice", pi.id,
                       {"content_hash": pi.content_hash, "net": str(pi.net)})


def _void_approval(s: Session, pi: PreInvoice, *, actor: str, key: Ed25519PrivateKey | None, now: datetime,
                   why: str) -> None:
    old = pi.approved_hash
    pi.state = "draft"
    pi.approved_hash = None
    pi.approved_by = None
    pi.approved_at = None
    record_change(s, key, actor, "preinvoice.approval_voided", pi,
           {"approved_hash": old, "content_hash": pi.content_hash, "why": why}, now)


def _recompute(pi: PreInvoice) -> bool:
    """Refresh net and content hash from the lines; True when the content changed."""
    new = preinvoice_hash(pi)
    pi.net = net_of(line_drafts(pi))
    if new == pi.content_hash:
        return False
    pi.content_hash = new
    pi.version = (pi.version or 0) + 1
    return True


def evaluate(
    s: Session, pis: Sequence[PreInvoice], *, actor: str, key: Ed25519PrivateKey | None, now: datetime,
    rates: Sequence[Rate] | None = None, default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> None:
    """Check → variance checks → system approval, for pre-invoices in draft or pending.

    Problems are stored on the pre-invoice (shown, never raised one by one); the variance checks
    (another module, optional) open exceptions; a pre-invoice without problems and without open
    exceptions is approved by the system, one with open exceptions is ``pending``.
    """
    todo = [p for p in pis if p.state in ("draft", "pending")]
    if not todo:
        return
    on = now.date()
    rates = list(rates) if rates is not None else rates_around(s, on, since=min(p.period_end for p in todo))
    for pi in todo:
        problems = run_checks(check_input(pi, pi.advertiser, pi.advertiser.legal_entity, rates, on))
        if list(pi.problems or []) != problems:
            pi.problems = problems
    s.flush()
    clean = [p for p in todo if not p.problems]
    _run_variance_checks(s, [p.id for p in clean if p.campaign_id is not None], actor=actor, key=key, now=now,
                         default_tolerance=default_tolerance)  # a one-off has no booking to compare with
    freshness.check(s, clean, actor=actor, key=key, now=now)  # stale source data: a stale_source exception
    open_counts = open_exception_counts(s, [p.id for p in clean])
    entries: list[audit.Entry] = []  # recorded in this order with one INSERT
    for pi in clean:
        if open_counts.get(pi.id):
            if pi.state != "pending":
                pi.state = "pending"
                pi.updated_at = now
                entries.append(audit.Entry(SYSTEM, "preinvoice.pending", "preinvoice", pi.id,
                                           {"open_exceptions": open_counts[pi.id]}))
                notify(s, "preinvoice.changed", preinvoice_id=pi.id)
        else:
            entries.append(_approved(pi, actor=SYSTEM, now=now))
            notify(s, "preinvoice.changed", preinvoice_id=pi.id)
    audit.record_many(s, key=key, entries=entries, now=now)
    for pi in todo:
        if pi.problems and pi.state == "pending":
            pi.state = "draft"


def _run_variance_checks(s: Session, ids: list[int], *, actor: str, key: Ed25519PrivateKey | None,
                         now: datetime, default_tolerance: Decimal) -> None:
    if ids:  # looked up on the module at call time (tests switch the variance checks off there)
        variance_checks.run_variance_checks(s, ids, actor=actor, now=now, signing_key=key,
                                            default_tolerance=default_tolerance)


# --------------------------------------------------------------------------- create / update


@dataclass(frozen=True)
class CreateResult:
    period: str
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    voided: list[int] = field(default_factory=list)
    approved: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    problems: dict[int, list[str]] = field(default_factory=dict)
    stale: dict[int, list[str]] = field(default_factory=dict)  # stale_source per pre-invoice (issue 21)


def create_preinvoices(
    db: Database, *, period: str, advertisers: list[str] | None = None, actor: str,
    key: Ed25519PrivateKey | None, now: datetime, default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> CreateResult:
    """Create or update the pre-invoices of every billing period that ends within ``period``
    (e.g. ``2026-02``), in one transaction. Idempotent: running it twice changes nothing.
    ``default_tolerance``: the variance tolerance where no master data sets one."""
    p = parse_period(period)
    with db.transaction() as s:
        return create_preinvoices_in(s, p, advertisers=advertisers, actor=actor, key=key, now=now,
                                     default_tolerance=default_tolerance)


def create_preinvoices_in(  # noqa: C901, PLR0915 - one pass: distribute, compare with the stored draft, update in place
    s: Session, p: Period, *, advertisers: list[str] | None, actor: str, key: Ed25519PrivateKey | None,
    now: datetime, default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> CreateResult:
    adv_ids = resolve_advertisers(s, advertisers)
    cq = (select(Campaign)
          .options(selectinload(Campaign.items),
                   joinedload(Campaign.advertiser).joinedload(Advertiser.legal_entity))
          .where(Campaign.bill_me.is_(True), Campaign.start <= p.end, Campaign.end >= p.start)
          .order_by(Campaign.id))
    if adv_ids is not None:
        cq = cq.where(Campaign.advertiser_id.in_(adv_ids))
    campaigns = list(s.execute(cq).unique().scalars())
    specs = {c.id: campaign_spec(c) for c in campaigns}

    def wanted(per: Period) -> bool:
        return p.start <= per.end <= p.end

    # the delivery of every delivery item, over the whole span of the periods we build
    lo = min((c.start for c in campaigns), default=p.start)
    dq_items = [i.id for c in campaigns for i in c.items if i.billing == "delivery"]
    delivery = delivery_days(s, dq_items, max(lo, _span_start(specs.values(), p)), p.end)
    drafts = {cid: draft_campaign(spec, wanted, delivery) for cid, spec in specs.items()}

    existing: dict[str, list[PreInvoice]] = {}
    eq = (select(PreInvoice).options(selectinload(PreInvoice.lines))
          .where(PreInvoice.period_end >= _span_start(specs.values(), p), PreInvoice.period_start <= p.end))
    if adv_ids is not None:
        eq = eq.where(PreInvoice.advertiser_id.in_(adv_ids))
    for pi in s.execute(eq).scalars():
        if pi.campaign_id in specs:
            existing.setdefault(pi.campaign_id, []).append(pi)

    res = CreateResult(period=p.label)
    touched: list[PreInvoice] = []
    new: list[tuple[Campaign, Period, Sequence[LineDraft]]] = []
    by_campaign = {c.id: c for c in campaigns}
    for cid, period_drafts in drafts.items():
        c = by_campaign[cid]
        for d in period_drafts:
            found = _match(existing.get(cid, ()), d.period)
            if found is None:
                new.append((c, d.period, d.lines))
                continue
            pi = found
            if pi.state in ("invoiced", "cancelled"):
                res.unchanged.append(pi.id)
                continue
            if _update(s, pi, d.period, d.lines, actor=actor, key=key, now=now, res=res):
                res.updated.append(pi.id)
            else:
                res.unchanged.append(pi.id)
            touched.append(pi)
    created = _insert_preinvoices(s, new, actor=actor, now=now)
    s.flush()  # the updated ones
    audit.record_many(s, key=key, now=now, entries=[audit.Entry(
        actor, "preinvoice.created", "preinvoice", pi.id,
        {"campaign": pi.campaign_id, "period": [pi.period_start.isoformat(), pi.period_end.isoformat()],
         "net": str(pi.net), "content_hash": pi.content_hash}) for pi in created])
    for pi in created:
        notify(s, "preinvoice.changed", preinvoice_id=pi.id)
        res.created.append(pi.id)
    touched = created + touched
    rates = rates_around(s, now.date(), since=min((p.period_end for p in touched), default=None))
    before = {pi.id: pi.state for pi in touched}
    evaluate(s, touched, actor=actor, key=key, now=now, rates=rates, default_tolerance=default_tolerance)
    for pi in touched:
        if pi.state == "approved" and before[pi.id] != "approved":
            res.approved.append(pi.id)
        elif pi.state == "pending":
            res.pending.append(pi.id)
        if pi.problems:
            res.problems[pi.id] = list(pi.problems)
    stale = freshness.stale_sources(s, touched, now.date())
    res.stale.update({pid: [x.text() for x in found] for pid, found in stale.items()})
    return res


def refresh_stale(
    s: Session, p: Period, *, advertisers: list[str] | None, actor: str, key: Ed25519PrivateKey | None,
    now: datetime, default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> list[dict[str, Any]]:
    """Before a billing run of ``p``: the data freshness of the pre-invoices it would bill (issue 21).

    A pre-invoice whose ``stale_source`` exception is open but whose data now reaches its period end is
    recomputed from the new data (its exception closes and the system approves it as usual); one fed by
    a source whose data ends before its period end gets a ``stale_source`` exception (an approved one goes
    back to ``pending``), so the run holds it. Returns the stale sources found, one dict per pre-invoice
    and source (``problem: stale_source``). Nothing is read when no source has a target and no
    ``stale_source`` exception is open."""
    adv_ids = resolve_advertisers(s, advertisers)
    targets = freshness.targets(s)
    oq = select(BillingException.preinvoice_id).where(BillingException.kind == freshness.KIND,
                                                      BillingException.state.in_(OPEN_EXCEPTION_STATES))
    open_stale = {int(i) for i in s.execute(oq).scalars() if i is not None}
    if not targets and not open_stale:
        return []
    q = (select(PreInvoice).options(selectinload(PreInvoice.lines))
         .where(PreInvoice.invoice_id.is_(None), PreInvoice.state.in_(("draft", "pending", "approved")),
                PreInvoice.period_end <= p.end).order_by(PreInvoice.id))
    if adv_ids is not None:
        q = q.where(PreInvoice.advertiser_id.in_(adv_ids))
    pis = list(s.execute(q).scalars())
    stale = freshness.stale_sources(s, pis, now.date())
    caught = [pi for pi in pis if pi.id in open_stale and not any(x.block for x in stale.get(pi.id, ()))]
    for pi in caught:  # recompute from the data that came in, then checked as any new draft
        create_preinvoices_in(s, Period(pi.period_end, pi.period_end), advertisers=[pi.advertiser_id], actor=actor,
                              key=key, now=now, default_tolerance=default_tolerance)
    rest = [pi for pi in pis if pi not in caught and pi.id in stale]
    freshness.check(s, rest, actor=actor, key=key, now=now)
    freshness.hold_approved(s, rest, key=key, now=now)
    return [{"problem": freshness.KIND, "preinvoice": pi.id, "advertiser": pi.advertiser_id, **x.as_dict()}
            for pi in rest for x in stale.get(pi.id, ())]


def _span_start(specs: Iterable[CampaignSpec], p: Period) -> date:
    """The earliest start of any billing period ending within ``p`` (weeks and quarters reach back)."""
    starts = [per.start for c in specs for per in c.periods() if p.start <= per.end <= p.end]
    return min(starts, default=p.start)


def _match(candidates: Iterable[PreInvoice], per: Period) -> PreInvoice | None:
    """The stored pre-invoice for this billing period: same dates, else one that overlaps (the
    campaign's dates moved, which clips its first or last period differently)."""
    overlap = None
    for pi in candidates:
        if pi.period_start == per.start and pi.period_end == per.end:
            return pi
        if pi.period_start <= per.end and pi.period_end >= per.start and pi.state not in ("invoiced", "cancelled"):
            overlap = pi
    return overlap


def _insert_preinvoices(s: Session, new: Sequence[tuple[Campaign, Period, Sequence[LineDraft]]], *, actor: str,
                        now: datetime) -> list[PreInvoice]:
    """Insert new drafts with their lines: two bulk INSERTs instead of a unit-of-work flush of
    thousands of objects. Only the ids come back; the objects are built from the values written
    (as a flush leaves them: the same Decimals, not the database's rendering of them) and attached
    to the session as persistent. Net and content hash come straight from the drafts — the values
    :func:`_recompute` derives from the rows (the hash covers neither ids nor positions)."""
    if not new:
        return []
    rows: list[dict[str, Any]] = [{
        "campaign_id": c.id, "advertiser_id": c.advertiser_id, "legal_entity_id": c.advertiser.legal_entity_id,
        "period_start": per.start, "period_end": per.end, "state": "draft", "currency": c.advertiser.currency,
        "net": net_of(lines), "content_hash": content_hash(campaign_id=c.id, period_start=per.start,
                                                           period_end=per.end, currency=c.advertiser.currency,
                                                           lines=lines),
        "approved_hash": None, "approved_by": None, "approved_at": None, "created_by": actor, "edited_by": None,
        "hold_reason": None, "problems": [], "invoice_id": None, "version": 1, "created_at": now, "updated_at": now,
    } for c, per, lines in new]
    pi_ids = s.scalars(insert(PreInvoice).returning(PreInvoice.id, sort_by_parameter_order=True), rows).all()
    line_rows: list[dict[str, Any]] = [{
        "preinvoice_id": pid, "position": pos, "item_id": d.item_id, "kind": d.kind, "description": d.description,
        "quantity": d.quantity, "unit": d.unit, "unit_price": d.unit_price, "amount": d.amount,
        "computation": dict(d.computation), "edited": d.edited,
    } for pid, (_, _, lines) in zip(pi_ids, new, strict=True) for pos, d in enumerate(lines)]
    line_ids = s.scalars(insert(PreInvoiceLine).returning(PreInvoiceLine.id, sort_by_parameter_order=True),
                         line_rows).all() if line_rows else []
    by_pi: dict[int, list[PreInvoiceLine]] = {pid: [] for pid in pi_ids}
    for line_id, values in zip(line_ids, line_rows, strict=True):
        by_pi[values["preinvoice_id"]].append(_persistent(PreInvoiceLine(id=line_id, **values)))
    pis = []
    for pid, values in zip(pi_ids, rows, strict=True):
        pi = _persistent(PreInvoice(id=pid, **values))
        set_committed_value(pi, "lines", by_pi[pid])
        s.add(pi)  # cascades to its lines
        pis.append(pi)
    return pis


def _persistent(obj: _T) -> _T:
    """Mark an object built with its primary key as one that is in the database (nothing to write)."""
    make_transient_to_detached(obj)
    return obj


def _update(s: Session, pi: PreInvoice, per: Period, computed: Sequence[LineDraft], *, actor: str,
            key: Ed25519PrivateKey | None, now: datetime, res: CreateResult) -> bool:
    if (pi.period_start, pi.period_end) != (per.start, per.end):
        pi.period_start, pi.period_end = per.start, per.end
    _set_lines(pi, merge_lines(line_drafts(pi), computed))
    old = pi.content_hash
    if not _recompute(pi):
        return False
    pi.updated_at = now
    record_change(s, key, actor, "preinvoice.updated", pi, {"old_hash": old, "content_hash": pi.content_hash,
                                                     "net": str(pi.net)}, now)
    if pi.state == "approved":
        _void_approval(s, pi, actor=actor, key=key, now=now, why="recomputed with changed content")
        res.voided.append(pi.id)
    elif pi.state == "held":
        pi.state = "draft"  # the correction a hold asked for: check it again
    return True


# --------------------------------------------------------------------------- edits


def _editable(s: Session, preinvoice_id: int) -> PreInvoice:
    pi = s.execute(
        select(PreInvoice).options(selectinload(PreInvoice.lines),
                                   joinedload(PreInvoice.advertiser).joinedload(Advertiser.legal_entity))
        .where(PreInvoice.id == preinvoice_id).with_for_update(of=PreInvoice)
    ).unique().scalar_one_or_none()
    if pi is None:
        raise NotFound(f"pre-invoice {preinvoice_id} not found")
    if pi.state not in EDITABLE_STATES:
        raise NotAllowed(f"pre-invoice {preinvoice_id} is {pi.state} and can no longer be edited", code="state")
    return pi


def _after_edit(s: Session, pi: PreInvoice, *, actor: str, key: Ed25519PrivateKey | None, now: datetime,
                action: str, payload: dict[str, Any], default_tolerance: Decimal, always_check: bool = False) -> None:
    """An edit changes content: record it, void any approval, check the pre-invoice again.

    Maker-checker: an edit of a pre-invoice that was approved (by the system or a person) or held
    after a Reject opens a ``manual_change`` exception with the before/after diff, so the pre-invoice
    waits (``pending``) for an approver other than the editor instead of being approved by the system;
    ``always_check`` (header overrides) opens it whatever the state was."""
    old, net_before, state_before, approved_by = pi.content_hash, pi.net, pi.state, pi.approved_by
    _recompute(pi)
    pi.edited_by = actor
    pi.updated_at = now
    record_change(s, key, actor, action, pi, {**payload, "old_hash": old, "content_hash": pi.content_hash}, now)
    if pi.state == "approved":
        _void_approval(s, pi, actor=actor, key=key, now=now, why=action)
    what = action.removeprefix("preinvoice.").replace("_", " ")
    for exc in open_exceptions_for(s, pi.id):  # approvals of the old content do not count for the new
        reset_approvals(s, exc, why=f"{what} by {actor}", actor=actor, signing_key=key, now=now)
    pi.state = "draft"
    pi.hold_reason = None
    s.flush()
    if always_check or state_before in ("approved", "held") or _has_manual_change(s, pi.id):
        _open_manual_change(s, pi, actor=actor, key=key, now=now, what=what, payload=payload,
                            net_before=net_before, state_before=state_before, approved_by=approved_by)
    evaluate(s, [pi], actor=actor, key=key, now=now, default_tolerance=default_tolerance)


def manual_change_key(preinvoice_id: int) -> str:
    return f"manual_change:{preinvoice_id}"


def _has_manual_change(s: Session, preinvoice_id: int) -> bool:
    """An open manual change stays bound to the latest content: a further edit updates it."""
    return any(e.key == manual_change_key(preinvoice_id) for e in open_exceptions_for(s, preinvoice_id))


def _open_manual_change(s: Session, pi: PreInvoice, *, actor: str, key: Ed25519PrivateKey | None,
                        now: datetime, what: str, payload: dict[str, Any], net_before: Decimal,
                        state_before: str, approved_by: str | None) -> None:
    diff = dict(payload)
    q = quantum(pi.currency)  # the same text on SQLite and PostgreSQL (NUMERIC(20,6))
    before, after = net_before.quantize(q), pi.net.quantize(q)
    evidence = {"change": what, "editor": actor, "state_before": state_before, "approved_by": approved_by,
                "net_before": str(before), "net_after": str(after), "diff": diff}
    open_exception(
        s, kind="manual_change", key=manual_change_key(pi.id), legal_entity_id=pi.legal_entity_id,
        advertiser_id=pi.advertiser_id, preinvoice_id=pi.id, billing_run_id=None, period_start=pi.period_start,
        period_end=pi.period_end, amount=pi.net, currency=pi.currency, cause="manual_change",
        summary=f"Pre-invoice #{pi.id} changed by hand after it was {state_before} ({what}): "
                f"net {before} → {after} {pi.currency}",
        evidence=evidence, subject_hash=pi.content_hash, started_by=actor, now=now, signing_key=key)


def _amount(value: str | Decimal | None, currency: str, what: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return money(value if isinstance(value, Decimal) else str(value), currency)
    except Invalid as e:
        raise Invalid(f"{what}: {e.message}") from None


def _decimal(value: str | Decimal | None, what: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return money(value if isinstance(value, Decimal) else str(value))
    except Invalid as e:
        raise Invalid(f"{what}: {e.message}") from None


def edit_line(
    db: Database, preinvoice_id: int, line_id: int, *, actor: str, key: Ed25519PrivateKey | None, now: datetime,
    description: str | None = None, quantity: str | Decimal | None = None, unit_price: str | Decimal | None = None,
    amount: str | Decimal | None = None, default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> int:
    """Change a line. Without an explicit amount it becomes quantity × unit price (half-up).
    The line is marked edited, so recomputations keep it; an approval is voided."""
    with db.transaction() as s:
        pi = _editable(s, preinvoice_id)
        row = next((x for x in pi.lines if x.id == line_id), None)
        if row is None:
            raise NotFound(f"line {line_id} is not on pre-invoice {preinvoice_id}")
        before = {"description": row.description, "quantity": str(row.quantity),
                  "unit_price": str(row.unit_price), "amount": str(row.amount)}
        q = _decimal(quantity, "quantity")
        up = _decimal(unit_price, "unit price")
        amt = _amount(amount, pi.currency, "amount")
        if description is not None:
            if not description.strip():
                raise Invalid("description must not be empty")
            row.description = description.strip()
        if q is not None:
            row.quantity = q
        if up is not None:
            row.unit_price = up
        if amt is not None:
            row.amount = amt
        elif q is not None or up is not None:
            row.amount = (row.quantity * row.unit_price).quantize(quantum(pi.currency), rounding=ROUND_HALF_UP)
        row.edited = True
        _after_edit(s, pi, actor=actor, key=key, now=now, default_tolerance=default_tolerance,
                    action="preinvoice.line_edited",
                    payload={"line": line_id, "before": before,
                             "after": {"description": row.description, "quantity": str(row.quantity),
                                       "unit_price": str(row.unit_price), "amount": str(row.amount)}})
        return pi.id


def add_line(
    db: Database, preinvoice_id: int, *, kind: str, description: str, amount: str | Decimal | None = None,
    quantity: str | Decimal = "1", unit_price: str | Decimal | None = None, unit: str = "unit", actor: str,
    key: Ed25519PrivateKey | None, now: datetime, default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> int:
    """Add a ``bonus``, ``discount`` or ``manual`` line (discounts are always negative). Returns the line id."""
    if kind not in MANUAL_KINDS:
        raise Invalid(f"kind must be one of {', '.join(MANUAL_KINDS)}, got {kind!r}")
    if not description.strip():
        raise Invalid("description must not be empty")
    with db.transaction() as s:
        pi = _editable(s, preinvoice_id)
        q = _decimal(quantity, "quantity") or Decimal(1)
        up = _decimal(unit_price, "unit price")
        amt = _amount(amount, pi.currency, "amount")
        if amt is None and up is None:
            raise Invalid("give an amount or a unit price")
        if amt is None:
            assert up is not None
            amt = (q * up).quantize(quantum(pi.currency), rounding=ROUND_HALF_UP)
        if kind == "discount":
            amt = -abs(amt)
        if up is None:
            up = amt / q if q else amt
        row = PreInvoiceLine(position=len(pi.lines), kind=kind, description=description.strip(),
                             quantity=q, unit=unit, unit_price=up, amount=amt, computation={}, edited=False)
        pi.lines.append(row)
        s.flush()
        _after_edit(s, pi, actor=actor, key=key, now=now, default_tolerance=default_tolerance,
                    action="preinvoice.line_added",
                    payload={"line": row.id, "kind": kind, "description": row.description, "amount": str(amt)})
        return int(row.id)


def delete_line(db: Database, preinvoice_id: int, line_id: int, *, actor: str, key: Ed25519PrivateKey | None,
                now: datetime, default_tolerance: Decimal = DEFAULT_TOLERANCE) -> int:
    """Delete a line. A computed item line comes back on the next recomputation unless the
    pre-invoice is edited otherwise; manual lines are gone for good."""
    with db.transaction() as s:
        pi = _editable(s, preinvoice_id)
        row = next((x for x in pi.lines if x.id == line_id), None)
        if row is None:
            raise NotFound(f"line {line_id} is not on pre-invoice {preinvoice_id}")
        pi.lines.remove(row)
        for pos, x in enumerate(sorted(pi.lines, key=lambda r: r.position)):
            x.position = pos
        _after_edit(s, pi, actor=actor, key=key, now=now, default_tolerance=default_tolerance,
                    action="preinvoice.line_deleted",
                    payload={"line": line_id, "kind": row.kind, "description": row.description,
                             "amount": str(row.amount)})
        return pi.id


# --------------------------------------------------------------------------- decisions' consequences


def _locked(s: Session, preinvoice_id: int) -> PreInvoice:
    pi = s.execute(select(PreInvoice).options(selectinload(PreInvoice.lines))
                   .where(PreInvoice.id == preinvoice_id).with_for_update()).scalar_one_or_none()
    if pi is None:
        raise NotFound(f"pre-invoice {preinvoice_id} not found")
    return pi


def approve_preinvoice(s: Session, preinvoice_id: int, *, actor: str, signing_key: Ed25519PrivateKey | None,
                       now: datetime) -> PreInvoice:
    """Approve the pre-invoice's current content (the approval binds to its content hash).

    Locks the row (``SELECT … FOR UPDATE``; ``BEGIN IMMEDIATE`` on SQLite) so a concurrent edit
    cannot slip between the hash and the approval. Refused for invoiced/cancelled pre-invoices and
    for pre-invoices with problems.
    """
    pi = _locked(s, preinvoice_id)
    if pi.state in ("invoiced", "cancelled"):
        raise NotAllowed(f"pre-invoice {preinvoice_id} is {pi.state}", code="state")
    if pi.problems:
        raise NotAllowed(f"pre-invoice {preinvoice_id} has problems: {'; '.join(pi.problems)}", code="has_problems")
    _recompute(pi)
    pi.hold_reason = None
    _approve(s, pi, actor=actor, key=signing_key, now=now)
    return pi


def hold_preinvoice(s: Session, preinvoice_id: int, *, reason: str | None, actor: str,
                    signing_key: Ed25519PrivateKey | None, now: datetime) -> PreInvoice:
    """Hold a pre-invoice for correction (a rejected variance): it is not billed until edited or
    recomputed and checked again."""
    pi = _locked(s, preinvoice_id)
    if pi.state in ("invoiced", "cancelled"):
        raise NotAllowed(f"pre-invoice {preinvoice_id} is {pi.state}", code="state")
    pi.state = "held"
    pi.hold_reason = reason or "held for correction"
    pi.approved_hash = None
    pi.approved_by = None
    pi.approved_at = None
    pi.updated_at = now
    record_change(s, signing_key, actor, "preinvoice.held", pi, {"reason": pi.hold_reason}, now)
    return pi


def override_to_booked(s: Session, preinvoice_id: int, *, actor: str, signing_key: Ed25519PrivateKey | None,
                       now: datetime) -> PreInvoice:
    """Force on a variance: bill the booked amount. Every delivery-item line is set to the item's
    booked amount pro rata (by days) for the period, marked edited so recomputations keep it, and
    the new content is approved by ``actor``."""
    pi = _locked(s, preinvoice_id)
    if pi.state in ("invoiced", "cancelled"):
        raise NotAllowed(f"pre-invoice {preinvoice_id} is {pi.state}", code="state")
    if pi.campaign_id is None:
        raise NotAllowed(f"pre-invoice {preinvoice_id} is a one-off: it has no booked amount", code="one_off")
    campaign = s.execute(select(Campaign).options(selectinload(Campaign.items),
                                                  joinedload(Campaign.advertiser).joinedload(Advertiser.legal_entity))
                         .where(Campaign.id == pi.campaign_id)).unique().scalar_one()
    spec = campaign_spec(campaign)
    items = {i.id: i for i in spec.items}
    per = Period(pi.period_start, pi.period_end)
    changes = []
    for row in pi.lines:
        item = items.get(row.item_id or "")
        if row.kind != "item" or item is None or item.billing != "delivery":
            continue
        booked = booked_share(spec, item, per).quantize(quantum(pi.currency), rounding=ROUND_HALF_UP)
        changes.append({"line": row.id, "from": str(row.amount), "to": str(booked)})
        row.amount = booked
        row.quantity = Decimal(1)
        row.unit = "booked"
        row.unit_price = booked
        row.computation = {**(row.computation or {}), "override": "booked", "has_data": True}
        row.edited = True
    old = pi.content_hash
    _recompute(pi)
    pi.edited_by = actor
    record_change(s, signing_key, actor, "preinvoice.overridden_to_booked", pi,
           {"changes": changes, "old_hash": old, "content_hash": pi.content_hash}, now)
    pi.problems = [p for p in (pi.problems or []) if not p.startswith("no delivery data")]
    if pi.problems:
        raise NotAllowed(f"pre-invoice {preinvoice_id} has problems: {'; '.join(pi.problems)}", code="has_problems")
    pi.hold_reason = None
    _approve(s, pi, actor=actor, key=signing_key, now=now)
    return pi


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class LineView:
    id: int
    position: int
    item: str | None
    kind: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    edited: bool


@dataclass(frozen=True)
class PreInvoiceView:
    id: int
    campaign_id: str | None  # None: a one-off pre-invoice
    campaign: str
    advertiser_id: str
    advertiser: str
    legal_entity_id: str
    period_start: date
    period_end: date
    state: str
    currency: str
    net: Decimal
    vat: Decimal
    gross: Decimal
    vat_rate: Decimal | None
    content_hash: str
    approved_hash: str | None
    approved_by: str | None
    approved_at: datetime | None
    problems: list[str]
    hold_reason: str | None
    invoice_id: int | None
    lines: list[LineView]
    overrides: dict[str, Any] = field(default_factory=dict)  # header overrides (payment terms, recipient, notes)


def view(pi: PreInvoice) -> PreInvoiceView:
    adv, le = pi.advertiser, pi.advertiser.legal_entity
    t = vat_treatment(seller_country=le.country, buyer_country=adv.country, buyer_vat_id=adv.vat_id)
    rate = None if isinstance(t, VatProblem) else t.rate
    vat = vat_amount(pi.net, rate, pi.currency) if rate is not None else ZERO
    return PreInvoiceView(
        id=pi.id, campaign_id=pi.campaign_id, campaign=pi.campaign.name if pi.campaign is not None else "one-off",
        advertiser_id=adv.id, advertiser=adv.name,
        legal_entity_id=pi.legal_entity_id, period_start=pi.period_start, period_end=pi.period_end, state=pi.state,
        currency=pi.currency, net=pi.net, vat=vat, gross=pi.net + vat, vat_rate=rate, content_hash=pi.content_hash,
        approved_hash=pi.approved_hash, approved_by=pi.approved_by, approved_at=pi.approved_at,
        problems=list(pi.problems or []), hold_reason=pi.hold_reason, invoice_id=pi.invoice_id,
        lines=[LineView(x.id, x.position, x.item_id, x.kind, x.description, x.quantity, x.unit, x.unit_price,
                        x.amount, bool(x.edited)) for x in sorted(pi.lines, key=lambda r: r.position)],
        overrides=dict(pi.overrides or {}),
    )


def _view_query() -> Any:
    return select(PreInvoice).options(
        selectinload(PreInvoice.lines), joinedload(PreInvoice.campaign),
        joinedload(PreInvoice.advertiser).joinedload(Advertiser.legal_entity))


def list_preinvoices(db: Database, *, period: str | None = None, advertisers: list[str] | None = None,
                     states: list[str] | None = None) -> list[PreInvoiceView]:
    with db.read() as s:
        q = _view_query()
        if period:
            p = parse_period(period)
            q = q.where(PreInvoice.period_end >= p.start, PreInvoice.period_end <= p.end)
        adv_ids = resolve_advertisers(s, advertisers)
        if adv_ids is not None:
            q = q.where(PreInvoice.advertiser_id.in_(adv_ids))
        if states:
            q = q.where(or_(*[PreInvoice.state == st for st in states]))
        q = q.order_by(PreInvoice.advertiser_id, PreInvoice.campaign_id, PreInvoice.period_start)
        return [view(pi) for pi in s.execute(q).unique().scalars()]


def get_preinvoice(db: Database, preinvoice_id: int) -> PreInvoiceView:
    with db.read() as s:
        pi = s.execute(_view_query().where(PreInvoice.id == preinvoice_id)).unique().scalar_one_or_none()
        if pi is None:
            raise NotFound(f"pre-invoice {preinvoice_id} not found")
        return view(pi)

