"""The append-only, hash-chained, signed audit log.

:func:`record` is called by every workflow inside its own transaction. It locks the single
``audit_head`` row (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the write transaction is
already ``BEGIN IMMEDIATE``), so concurrent writers queue up and the chain never forks.
:func:`record_many` appends the same records for a batch of state changes with one INSERT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from billing.signatures import GENESIS, canonical_json, chain_hash, content_hash, key_id, sign, verify
from storage.models import AuditHead, AuditLog

_AUDIT_LOG = cast(Table, AuditLog.__table__)


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
    row = AuditLog(**_next(s, key, Entry(actor, action, subject_type, subject_id, payload), now))
    s.add(row)
    return row


@dataclass(frozen=True)
class Entry:
    """One record for :func:`record_many`: what :func:`record` takes besides the session, key and time."""

    actor: str
    action: str
    subject_type: str
    subject_id: str | int
    payload: dict[str, Any]


def record_many(s: Session, *, key: Ed25519PrivateKey | None, entries: Sequence[Entry],
                now: datetime | None = None) -> None:
    """Append several signed records, in order, with one INSERT: exactly the records (chain,
    hashes, signatures) that calling :func:`record` for each entry in turn would write — for the
    thousands of state changes of a pre-invoice batch or a billing run."""
    rows = [_next(s, key, e, now) for e in entries]
    if rows:  # a Core executemany: the rows carry their ids, no ORM bookkeeping needed
        s.connection().execute(insert(_AUDIT_LOG), rows)


def _next(s: Session, key: Ed25519PrivateKey | None, e: Entry, now: datetime | None) -> dict[str, Any]:
    """The column values of the next record in the chain; advances the (locked) head."""
    head = _head(s)
    at = (now or datetime.now(UTC)).astimezone(UTC)
    text = canonical_json(e.payload)
    seq = head.last_id + 1
    prev = head.last_hash
    h = chain_hash(seq=seq, at=at.isoformat(), actor=e.actor, action=e.action,
                   subject=f"{e.subject_type}:{e.subject_id}", payload=text, prev_hash=prev)
    head.last_id = seq
    head.last_hash = h
    return {"id": seq, "at": at, "actor": e.actor, "action": e.action, "subject_type": e.subject_type,
            "subject_id": str(e.subject_id), "payload": text, "prev_hash": prev, "record_hash": h,
            "signature": sign(key, h) if key is not None else None,
            "key_id": _key_id(key) if key is not None else None}


_key_ids: dict[int, tuple[Ed25519PrivateKey, str]] = {}


def _key_id(key: Ed25519PrivateKey) -> str:
    """The key's fingerprint, computed once per key object (the key is kept, so its id stays its own)."""
    found = _key_ids.get(id(key))
    if found is None or found[0] is not key:
        if len(_key_ids) > 64:  # tests make many keys; a process normally has one
            _key_ids.clear()
        found = (key, key_id(key.public_key()))
        _key_ids[id(key)] = found
    return found[1]


# --------------------------------------------------------------------------- anchors against truncation


def publish_anchor(s: Session, *, key: Ed25519PrivateKey, path: Path, now: datetime | None = None) -> dict[str, Any]:
    """Sign the chain head (sequence number + hash) and append it to the anchor file, outside the
    database. Cutting records from the end of the chain (and resetting the head) then no longer goes
    unnoticed: :func:`check_anchors` finds a published anchor missing. Returns the anchor."""
    head = s.get(AuditHead, 1)
    seq, h = (head.last_id, head.last_hash) if head is not None else (0, GENESIS)
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    body = {"seq": seq, "hash": h, "at": at}
    anchor = {**body, "key_id": _key_id(key), "signature": sign(key, content_hash(body))}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(anchor, sort_keys=True) + "\n")
    return anchor


def read_anchors(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_anchors(s: Session, path: Path, public: Ed25519PublicKey | None) -> str | None:
    """The first problem with the published anchors, or None: a bad anchor signature, an anchor
    whose record is no longer in the chain (or has another hash), a chain shorter than the last anchor."""
    anchors = read_anchors(path)
    if not anchors:
        return None
    last = max(int(a["seq"]) for a in anchors)
    head = s.get(AuditHead, 1)
    length = s.execute(select(func.count()).select_from(AuditLog)).scalar_one()
    for a in anchors:
        body = {"seq": a["seq"], "hash": a["hash"], "at": a["at"]}
        if public is not None and not verify(public, content_hash(body), str(a.get("signature") or "")):
            return f"anchor of record {a['seq']} ({a['at']}) in {path} has a bad signature"
        if int(a["seq"]) == 0:
            continue
        row = s.get(AuditLog, int(a["seq"]))
        if row is None or row.record_hash != a["hash"]:
            return (f"published anchor of record {a['seq']} ({a['at']}) is no longer in the chain: "
                    "records were removed or rewritten")
    if length < last or (head is not None and head.last_id < last):
        return f"the chain has {length} record(s) but an anchor was published at record {last}: it was cut"
    return None


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
