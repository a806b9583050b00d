"""Change sets: money-moving changes of existing master data wait for a second person (issue 14).

``billbot load`` applies new records and non-money fields at once; a changed rate, rate type, amount,
booked quantity, billing threshold, tolerance, VAT data or payment terms of an EXISTING record is held
(:data:`storage.loader.MONEY_FIELDS`) in a change set: posted to Slack with its diff and
Approve/Reject, listed by ``billbot changes list``. Someone other than its author (an ``approver``
or ``finance_manager``) approves it, and only then do the values change — if they are still what
the change set was made on; a change set made stale by another change is refused, never half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.errors import Conflict, Invalid, NotAllowed, NotFound
from billing.signatures import content_hash
from bot.workflows import audit
from bot.workflows.effects import notify
from bot.workflows.users import access_user_with_role
from storage.db import Database
from storage.loader import MODELS, canonical_value
from storage.models import ChangeSet, User

DECIDER_ROLES = frozenset({"approver", "finance_manager"})
INT_FIELDS = frozenset({"payment_terms_days", "fx_max_age_days"})
DECIMAL_FIELDS = frozenset({"amount", "rate", "booked_quantity", "tolerance", "billing_threshold", "fx_rate"})

ChangeDecision = Literal["approve", "reject"]


def open_change_set(s: Session, *, diff: list[dict[str, Any]], author: str, source: str,
                    key: Ed25519PrivateKey | None, now: datetime) -> ChangeSet:
    """Hold ``diff`` for approval, in the caller's transaction. Loading the same file again while it
    waits opens no second one (the same diff is the same change set)."""
    digest = content_hash(diff)
    same = s.execute(select(ChangeSet).where(ChangeSet.state == "pending", ChangeSet.subject_hash == digest)
                     ).scalars().first()
    if same is not None:
        return same
    cs = ChangeSet(author=author, source=source[:200], state="pending", diff=diff, subject_hash=digest,
                   created_at=now)
    s.add(cs)
    s.flush()
    audit.record(s, key=key, actor=author, action="change_set.opened", subject_type="change_set", subject_id=cs.id,
                 payload={"source": cs.source, "diff": diff, "subject_sha256": digest}, now=now)
    notify(s, "change_set.opened", change_set_id=cs.id)
    return cs


def access_change_set_for_decision(s: Session, actor: str, cs: ChangeSet, decision: ChangeDecision) -> User:
    """Who may decide on a change set: a known user, with a deciding role, not its author, while it waits."""
    user = access_user_with_role(s, actor, DECIDER_ROLES, "deciding on a change set")
    if cs.author == actor:
        raise NotAllowed(f"change set {cs.id} is your own change: someone else must {decision} it",
                         code="own_change")
    if cs.state != "pending":
        raise Conflict(f"change set {cs.id} was already {cs.state} by {cs.decided_by}", code="already_decided")
    return user


def check_may_decide(db: Database, *, change_set_id: int, actor: str, decision: ChangeDecision) -> None:
    """Refuse early (before a reason modal opens) what :func:`decide_change_set` would refuse."""
    with db.read() as s:
        cs = s.get(ChangeSet, change_set_id)
        if cs is None:
            raise NotFound(f"change set {change_set_id} not found")
        access_change_set_for_decision(s, actor, cs, decision)


def decide_change_set(
    db: Database, *, change_set_id: int, decision: ChangeDecision, actor: str, key: Ed25519PrivateKey | None,
    reason: str | None = None, subject_hash: str | None = None, now: datetime | None = None,
) -> ChangeSet:
    """Approve (apply the diff) or reject a change set: one transaction, a conditional UPDATE
    (``WHERE state = 'pending'``) so a second click or a concurrent one changes nothing."""
    now = now or datetime.now(UTC)
    if decision == "reject" and not (reason or "").strip():
        raise Invalid("a rejection needs a reason")
    with db.transaction() as s:
        cs = s.get(ChangeSet, change_set_id)
        if cs is None:
            raise NotFound(f"change set {change_set_id} not found")
        access_change_set_for_decision(s, actor, cs, decision)
        if subject_hash is not None and subject_hash != cs.subject_hash:
            raise Conflict(f"change set {cs.id} is not the one you looked at", code="stale")
        state = "approved" if decision == "approve" else "rejected"
        result = s.execute(update(ChangeSet).where(ChangeSet.id == cs.id, ChangeSet.state == "pending")
                        .values(state=state, decided_by=actor, decided_at=now, reason=(reason or "").strip() or None)
                        .execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"change set {cs.id} was decided by someone else at the same moment", code="already_decided")
        if decision == "approve":
            _apply(s, cs)
        audit.record(s, key=key, actor=actor, action=f"change_set.{state}", subject_type="change_set",
                     subject_id=cs.id, now=now,
                     payload={"author": cs.author, "diff": cs.diff, "subject_sha256": cs.subject_hash,
                              "reason": (reason or "").strip() or None})
        notify(s, "change_set.decided", change_set_id=cs.id)
        s.refresh(cs)
        return cs


def _typed(field: str, v: Any) -> Any:
    if v is None:
        return None
    if field in INT_FIELDS:
        return int(v)
    if field in DECIMAL_FIELDS:
        return Decimal(str(v))
    return v


def _apply(s: Session, cs: ChangeSet) -> None:
    """Set every field of the diff — each must still hold the value the change set was made on."""
    stale: list[str] = []
    rows = []
    for d in cs.diff:
        obj = s.get(MODELS[d["kind"]], d["id"])
        if obj is None:
            stale.append(f"{d['kind']} {d['id']} no longer exists")
            continue
        now_value = canonical_value(getattr(obj, d["field"]))
        if now_value != d["before"]:
            stale.append(f"{d['kind']} {d['id']} {d['field']} is now {now_value}, not {d['before']}")
        rows.append((obj, d))
    if stale:
        raise Conflict(f"change set {cs.id} is stale ({'; '.join(stale)}): load the file again", code="stale")
    for obj, d in rows:
        setattr(obj, d["field"], _typed(d["field"], d["after"]))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ChangeSetView:
    id: int
    author: str
    source: str
    state: str
    diff: list[dict[str, Any]]
    subject_hash: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "author": self.author, "source": self.source, "state": self.state, "diff": self.diff,
                "subject_hash": self.subject_hash, "created_at": self.created_at.isoformat(),
                "decided_by": self.decided_by,
                "decided_at": self.decided_at.isoformat() if self.decided_at else None, "reason": self.reason}


def _view(cs: ChangeSet) -> ChangeSetView:
    return ChangeSetView(cs.id, cs.author, cs.source, cs.state, list(cs.diff), cs.subject_hash, cs.created_at,
                         cs.decided_by, cs.decided_at, cs.reason)


def list_change_sets(db: Database, *, state: str | None = None) -> list[ChangeSetView]:
    with db.read() as s:
        q = select(ChangeSet).order_by(ChangeSet.id)
        if state:
            q = q.where(ChangeSet.state == state)
        return [_view(c) for c in s.execute(q).scalars()]


def get_change_set(db: Database, change_set_id: int) -> ChangeSetView:
    with db.read() as s:
        cs = s.get(ChangeSet, change_set_id)
        if cs is None:
            raise NotFound(f"change set {change_set_id} not found")
        return _view(cs)


def store_message(db: Database, change_set_id: int, channel: str, ts: str) -> None:
    """Remember where the change set's Slack message is (so a decision updates it in place)."""
    with db.transaction() as s:
        s.execute(update(ChangeSet).where(ChangeSet.id == change_set_id).values(channel=channel, message_ts=ts))
