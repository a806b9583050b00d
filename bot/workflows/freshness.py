"""Data freshness (issue 21): a target per source, and the ``stale_source`` check that holds pre-invoices
billed from data that does not reach their period's end.

A source's target comes from the scenario's ``freshness:`` map (``source: {days: 2, block: true}``,
kept as JSON in the kv table under :data:`storage.loader.FRESHNESS_KEY`): the source's ``data until``
(:class:`~storage.models.SourceState`) must reach a billing period's last day within ``days`` days after
it. Only sources with a target are checked.

The check: a pre-invoice *depends on* a source when the source delivered rows (delivery facts or
conversions) for one of its items. While such a source's ``data until`` is before the pre-invoice's
period end, a ``stale_source`` exception (key ``stale_source:preinvoice:<id>``) is open on it, so it is
``pending`` and a billing run holds it. The exception is a check like any other: shown in the
exceptions channel with the sources and dates, blocking by default (``block: false`` makes it a note
in the result only), overridable with Force and a reason by a finance manager (bill the data as it is;
Approve is refused: stale data is synced, not approved), Reject holds the pre-invoice. When the data
catches up, the next ``preinvoices create`` or ``billbot run`` recomputes the pre-invoice from the new
data and closes the exception (``exception.closed``), and the system approves it as usual.

A missed target (the period end plus ``days`` passed, the data still short) is named in the
exception (``target_missed``) and its summary; and the minute sweep raises it to the operators once per
source and month (:func:`claim_missed`, audited ``freshness.missed``; posted by :mod:`bot.slack.freshness`
to the exceptions channel, mentioning every operator), whether or not a pre-invoice exists yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.signatures import content_hash
from bot.workflows import audit
from bot.workflows.effects import notify
from bot.workflows.exceptions import close_exception, open_exception
from storage.db import Database
from storage.loader import FRESHNESS_KEY
from storage.models import (
    OPEN_EXCEPTION_STATES,
    BillingException,
    Conversion,
    DeliveryFact,
    PreInvoice,
    Setting,
    SourceState,
    UserRole,
)

KIND = "stale_source"

SYSTEM = "system"


@dataclass(frozen=True)
class Target:
    source: str
    days: int
    block: bool = True


def exception_key(preinvoice_id: int) -> str:
    return f"{KIND}:preinvoice:{preinvoice_id}"


def targets(s: Session) -> dict[str, Target]:
    """The freshness targets loaded from the scenario, by source."""
    row = s.get(Setting, FRESHNESS_KEY)
    if row is None:
        return {}
    raw = json.loads(row.value or "{}")
    return {k: Target(k, int(v.get("days", 2)), bool(v.get("block", True))) for k, v in sorted(raw.items())}


@dataclass(frozen=True)
class Stale:
    source: str
    data_until: date | None
    period_end: date
    days: int
    target_missed: bool
    block: bool

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "data_until": self.data_until.isoformat() if self.data_until else None,
                "period_end": self.period_end.isoformat(), "target_days": self.days,
                "target_missed": self.target_missed, "block": self.block}

    def text(self) -> str:
        until = self.data_until.isoformat() if self.data_until else "no data yet"
        missed = (f"; target missed (due {(self.period_end + timedelta(days=self.days)).isoformat()})"
                  if self.target_missed else "")
        return f"{self.source}: data until {until}, before the period end {self.period_end.isoformat()}{missed}"


def _sources_of(s: Session, pis: Sequence[PreInvoice], wanted: set[str]) -> dict[int, set[str]]:
    """Per pre-invoice: the sources with a target that delivered rows for one of its items."""
    items: dict[str, set[int]] = {}
    for pi in pis:
        for ln in pi.lines:
            if ln.item_id:
                items.setdefault(ln.item_id, set()).add(pi.id)
    if not items or not wanted:
        return {}
    out: dict[int, set[str]] = {}
    ids = list(items)
    for model in (DeliveryFact, Conversion):
        for i in range(0, len(ids), 500):
            rows = s.execute(select(model.item_id, model.source).distinct()
                             .where(model.item_id.in_(ids[i:i + 500]), model.source.in_(wanted))).all()
            for item_id, source in rows:
                for pid in items.get(str(item_id), ()):
                    out.setdefault(pid, set()).add(str(source))
    return out


def stale_sources(s: Session, pis: Sequence[PreInvoice], today: date) -> dict[int, list[Stale]]:
    """Per pre-invoice: the sources it depends on whose data ends before its period end."""
    tg = targets(s)
    if not tg or not pis:
        return {}
    deps = _sources_of(s, pis, set(tg))
    states = {st.source: st for st in s.execute(select(SourceState).where(SourceState.source.in_(list(tg)))).scalars()}
    out: dict[int, list[Stale]] = {}
    for pi in pis:
        for src in sorted(deps.get(pi.id, ())):
            st = states.get(src)
            until = st.data_until if st is not None else None
            if until is not None and until >= pi.period_end:
                continue
            t = tg[src]
            out.setdefault(pi.id, []).append(Stale(src, until, pi.period_end, t.days,
                                                   today > pi.period_end + timedelta(days=t.days), t.block))
    return out


def check(s: Session, pis: Sequence[PreInvoice], *, actor: str, key: Ed25519PrivateKey | None,
          now: datetime) -> dict[int, list[Stale]]:
    """Open (or update) the ``stale_source`` exception of every pre-invoice fed by stale data (blocking
    targets only), close the open ones whose data caught up. Runs in the caller's transaction; returns
    the stale sources per pre-invoice (blocking or not)."""
    stale = stale_sources(s, pis, now.date())
    open_ids = {int(pid): int(eid) for eid, pid in s.execute(
        select(BillingException.id, BillingException.preinvoice_id).where(
            BillingException.kind == KIND, BillingException.state.in_(OPEN_EXCEPTION_STATES),
            BillingException.preinvoice_id.in_([p.id for p in pis]))).all() if pid is not None} if pis else {}
    for pi in pis:
        found = [x for x in stale.get(pi.id, ()) if x.block]
        if found:
            evidence = {"sources": [x.as_dict() for x in found], "target_missed": any(x.target_missed for x in found),
                        "preinvoice": pi.id, "period_end": pi.period_end.isoformat()}
            missed = " Freshness target missed." if evidence["target_missed"] else ""
            open_exception(
                s, kind=KIND, key=exception_key(pi.id), legal_entity_id=pi.legal_entity_id,
                advertiser_id=pi.advertiser_id, preinvoice_id=pi.id, billing_run_id=None,
                period_start=pi.period_start, period_end=pi.period_end, amount=pi.net, currency=pi.currency,
                cause=KIND, summary="Stale source data: " + "; ".join(x.text() for x in found) + "." + missed,
                evidence=evidence,
                subject_hash=content_hash({"evidence": evidence, "content_hash": pi.content_hash}),
                started_by=None, now=now, signing_key=key)
        elif pi.id in open_ids:
            close_exception(s, open_ids[pi.id], reason="the source data now reaches the period end", actor=actor,
                            signing_key=key, now=now)
    return stale


def hold_approved(s: Session, pis: Sequence[PreInvoice], *, key: Ed25519PrivateKey | None, now: datetime) -> list[int]:
    """Approved pre-invoices that a stale source now blocks go back to ``pending`` (audited)."""
    blocked = {int(pid) for pid in s.execute(select(BillingException.preinvoice_id).where(
        BillingException.kind == KIND, BillingException.state.in_(OPEN_EXCEPTION_STATES),
        BillingException.preinvoice_id.in_([p.id for p in pis]))).scalars() if pid is not None} if pis else set()
    moved: list[int] = []
    for pi in pis:
        if pi.id in blocked and pi.state == "approved":
            pi.state = "pending"
            pi.updated_at = now
            audit.record(s, key=key, actor=SYSTEM, action="preinvoice.pending", subject_type="preinvoice",
                         subject_id=pi.id, payload={"why": KIND}, now=now)
            notify(s, "preinvoice.changed", preinvoice_id=pi.id)
            moved.append(pi.id)
    return moved


# --------------------------------------------------------------------------- the freshness report


@dataclass(frozen=True)
class SourceFreshness:
    source: str
    data_until: date | None
    last_success_at: datetime | None
    target_days: int | None  # None: no target
    period_end: date  # the last day of the month before ``today``: the period the target is about
    due: date | None
    state: str  # ok | waiting (not yet due) | missed | no target


def report(s: Session, today: date) -> list[SourceFreshness]:
    """Every known source (and every source with a target) with its freshness against the last
    closed month: ``ok`` when its data reaches the month's end, ``waiting`` while the target's days
    run, ``missed`` after."""
    tg = targets(s)
    states = {st.source: st for st in s.execute(select(SourceState)).scalars()}
    month_end = today.replace(day=1) - timedelta(days=1)
    out: list[SourceFreshness] = []
    for src in sorted(set(states) | set(tg)):
        st = states.get(src)
        until = st.data_until if st is not None else None
        t = tg.get(src)
        due = month_end + timedelta(days=t.days) if t is not None else None
        if t is None:
            state = "no target"
        elif until is not None and until >= month_end:
            state = "ok"
        elif due is not None and today > due:
            state = "missed"
        else:
            state = "waiting"
        out.append(SourceFreshness(src, until, st.last_success_at if st is not None else None,
                                   t.days if t is not None else None, month_end, due, state))
    return out


# --------------------------------------------------------------------------- missed targets


def _alert_key(r: SourceFreshness) -> str:
    return f"freshness.missed:{r.source}:{r.period_end.isoformat()}"


def claim_missed(db: Database, *, today: date, key: Ed25519PrivateKey | None, now: datetime) -> list[SourceFreshness]:
    """The sources whose target for the last closed month was missed and not yet told, each claimed once
    (a kv row per source and month, inserted in the transaction that records ``freshness.missed``)."""
    with db.read() as s:
        missed = [r for r in report(s, today) if r.state == "missed"]
        told = set(s.execute(select(Setting.key).where(Setting.key.in_([_alert_key(r) for r in missed]))).scalars()) \
            if missed else set()
    out = []
    for r in missed:
        if _alert_key(r) in told:
            continue
        try:
            with db.transaction() as s:
                s.add(Setting(key=_alert_key(r), value=now.isoformat()))
                s.flush()
                audit.record(s, key=key, actor=SYSTEM, action="freshness.missed", subject_type="source",
                             subject_id=r.source, now=now, payload={
                                 "data_until": r.data_until.isoformat() if r.data_until else None,
                                 "period_end": r.period_end.isoformat(), "due": r.due.isoformat() if r.due else None,
                                 "target_days": r.target_days})
        except IntegrityError:  # another sweep claimed it first
            continue
        out.append(r)
    return out


def release_missed(db: Database, r: SourceFreshness) -> None:
    """Hand a claim back (the alert could not be posted): the next sweep tries again."""
    with db.transaction() as s:
        row = s.get(Setting, _alert_key(r))
        if row is not None:
            s.delete(row)


def operators(db: Database) -> list[str]:
    with db.read() as s:
        return sorted(str(u) for u in s.execute(select(UserRole.slack_id).where(UserRole.role == "operator")).scalars())
