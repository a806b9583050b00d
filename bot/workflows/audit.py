"""The append-only, hash-chained, signed audit log.

:func:`record` is called by every workflow inside its own transaction. It locks the single
``audit_head`` row (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the write transaction is
already ``BEGIN IMMEDIATE``), so concurrent writers queue up and the chain never forks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.signatures import GENESIS, canonical_json, chain_hash, key_id, sign, verify
from storage.models import AuditHead, AuditLog


def _head(s: Session) -> AuditHead:
    """The chain head, locked once per transaction and then reused: a billing run writes thousands
    of records and must not pay a round trip (or a flush) for each."""
    tx = s.get_transaction()
    cached = s.info.get("_audit_head")
    if cached is not None and cached[0] is tx:
        head: AuditHead = cached[1]
        return head
    found = s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if found is None:  # the migration seeds it; this covers databases made with create_all
        found = AuditHead(id=1, last_id=0, last_hash=GENESIS)
        s.add(found)
        s.flush()
    s.info["_audit_head"] = (tx, found)
    return found


def record(
    s: Session,
    *,
    key: Ed25519PrivateKey | None,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | int,
    payload: dict[str, Any],
    now: datetime | None = None,
) -> AuditLog:
    """Append one signed record; returns it (its id is the chain sequence number; it is written
    with the caller's transaction)."""
    head = _head(s)
    at = (now or datetime.now(UTC)).astimezone(UTC)
    text = canonical_json(payload)
    seq = head.last_id + 1
    subject = f"{subject_type}:{subject_id}"
    h = chain_hash(seq=seq, at=at.isoformat(), actor=actor, action=action, subject=subject,
                   payload=text, prev_hash=head.last_hash)
    row = AuditLog(
        id=seq, at=at, actor=actor, action=action, subject_type=subject_type,
        subject_id=str(subject_id), payload=text, prev_hash=head.last_hash, record_hash=h,
        signature=sign(key, h) if key is not None else None,
        key_id=key_id(key.public_key()) if key is not None else None,
    )
    s.add(row)
    head.last_id = seq
    head.last_hash = h
    return row


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad: int | None = None
    problem: str | None = None


def verify_chain(s: Session, public: Ed25519PublicKey | None) -> VerifyResult:
    """Recompute every record's hash, its link to the previous one, and its signature.
    Names the first broken record."""
    prev = GENESIS
    n = 0
    expected_seq = 1
    for row in s.execute(select(AuditLog).order_by(AuditLog.id)).scalars():
        n += 1
        if row.id != expected_seq:
            return VerifyResult(False, n, row.id, f"record {expected_seq} is missing (found {row.id})")
        if row.prev_hash != prev:
            return VerifyResult(False, n, row.id, f"record {row.id} does not link to record {row.id - 1}")
        h = chain_hash(seq=row.id, at=row.at.isoformat(), actor=row.actor, action=row.action,
                       subject=f"{row.subject_type}:{row.subject_id}", payload=row.payload, prev_hash=prev)
        if h != row.record_hash:
            return VerifyResult(False, n, row.id, f"record {row.id} was changed (hash mismatch)")
        if public is not None:
            if not row.signature or not verify(public, h, row.signature):
                return VerifyResult(False, n, row.id, f"record {row.id} has a bad signature")
        prev = row.record_hash
        expected_seq += 1
    head = s.get(AuditHead, 1)
    if head is not None and head.last_id != n:
        return VerifyResult(False, n, n + 1, f"the log ends at record {n} but the head says {head.last_id}")
    return VerifyResult(True, n)
