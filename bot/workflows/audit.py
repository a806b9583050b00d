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
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from billing.errors import BillingError
from billing.signatures import GENESIS, canonical_json, chain_hash, content_hash, key_id, sign, verify
from storage.models import AuditHead, AuditLog, SigningKey

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
    if key is not None:
        _ensure_registered(s, key, at)
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


# --------------------------------------------------------------------------- the key registry


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def _ensure_registered(s: Session, key: Ed25519PrivateKey, at: datetime) -> None:
    """Every key that signs is in the registry (table ``signing_keys``) and, with its public key, in
    the audit log itself — registered by a ``key.registered`` record the first time it signs (a new
    deployment's key, or one that signed before the registry existed). Called with the head locked,
    so two writers never register the same key twice. A retired key signs nothing more: a process
    still holding it after ``billbot keys rotate`` is refused rather than writing records that fail
    verification. Looked up once per transaction."""
    tx = s.get_transaction()
    kid = _key_id(key)
    if s.info.get("_audit_key") == (tx, kid):
        return
    s.info["_audit_key"] = (tx, kid)  # before recording: the registration record itself is signed by it
    row = s.get(SigningKey, kid)
    if row is not None:
        if row.retired_at_record is not None:
            s.info.pop("_audit_key", None)
            raise BillingError(f"signing key {kid} was retired at audit record {row.retired_at_record} "
                               "(`billbot keys rotate`); restart with the current key", code="signing_key")
        return
    pem = public_pem(key.public_key())
    values = _next(s, key, Entry("system", "key.registered", "signing_key", kid,
                                 {"key_id": kid, "public_key": pem, "valid_from": at.isoformat()}), at)
    s.add(AuditLog(**values))
    s.add(SigningKey(key_id=kid, public_key=pem, valid_from=at, registered_at_record=values["id"],
                     created_by="system"))
    s.flush()


@dataclass(frozen=True)
class RegisteredKey:
    key_id: str
    public: Ed25519PublicKey
    pem: str
    registered_at_record: int | None
    retired_at_record: int | None
    valid_from: datetime
    valid_until: datetime | None


def key_registry(s: Session) -> dict[str, RegisteredKey]:
    """Every registered key by id (retired ones too), for verifying old records and packs."""
    out: dict[str, RegisteredKey] = {}
    for r in s.execute(select(SigningKey).order_by(SigningKey.registered_at_record)).scalars():
        loaded = load_pem_public_key(r.public_key.encode())
        if not isinstance(loaded, Ed25519PublicKey):  # pragma: no cover - only ever written from Ed25519 keys
            raise BillingError(f"signing key {r.key_id} in the registry is not an Ed25519 key", code="signing_key")
        out[r.key_id] = RegisteredKey(r.key_id, loaded, r.public_key, r.registered_at_record, r.retired_at_record,
                                      r.valid_from, r.valid_until)
    return out


def rotate_key(s: Session, *, old: Ed25519PrivateKey, new: Ed25519PrivateKey, actor: str,
               now: datetime | None = None) -> AuditLog:
    """Retire ``old`` and start ``new``: one ``key.rotated`` record, signed by the old key (the hand-over)
    and carrying the new public key with the new key's signature over the hand-over (proof that whoever
    rotated holds it). From the next record on only ``new`` signs."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    old_id, new_id = _key_id(old), _key_id(new)
    if old_id == new_id:
        raise BillingError("the new key is the current key", code="signing_key")
    if s.get(SigningKey, new_id) is not None:
        raise BillingError(f"key {new_id} is already in the registry; rotate to a fresh key", code="signing_key")
    pem = public_pem(new.public_key())
    handover = {"old_key_id": old_id, "new_key_id": new_id, "new_public_key": pem, "at": at.isoformat()}
    rec = record(s, key=old, actor=actor, action="key.rotated", subject_type="signing_key", subject_id=new_id,
                 payload={**handover, "new_key_proof": sign(new, content_hash(handover))}, now=at)
    s.flush()
    previous = s.get(SigningKey, old_id)
    assert previous is not None  # registered by the record above at the latest
    previous.valid_until = at
    previous.retired_at_record = rec.id
    s.add(SigningKey(key_id=new_id, public_key=pem, valid_from=at, registered_at_record=rec.id, created_by=actor))
    s.info.pop("_audit_key", None)
    return rec


def check_registry(s: Session, keys: dict[str, RegisteredKey]) -> str | None:
    """The first problem of the registry itself, or None: each key must be the one its audit record
    introduced (same PEM); the first key registers itself, every later one arrives by a hand-over
    signed by the key it replaces."""
    active: str | None = None
    for k in sorted(keys.values(), key=lambda k: k.registered_at_record or 0):
        rec = s.get(AuditLog, k.registered_at_record) if k.registered_at_record else None
        if rec is None or rec.subject_type != "signing_key" or rec.subject_id != k.key_id:
            return f"key {k.key_id} in the registry has no audit record introducing it"
        body = json.loads(rec.payload)
        if rec.action == "key.rotated":
            if body.get("new_public_key") != k.pem:
                return f"key {k.key_id} in the registry is not the key record {rec.id} handed over to"
            if rec.key_id != active or body.get("old_key_id") != active:
                return (f"key {k.key_id} was handed over (record {rec.id}) by {rec.key_id}, "
                        f"not by the active key {active}")
            proof = {x: body.get(x) for x in ("old_key_id", "new_key_id", "new_public_key", "at")}
            if not verify(k.public, content_hash(proof), str(body.get("new_key_proof") or "")):
                return f"the hand-over to key {k.key_id} (record {rec.id}) lacks the new key's proof"
        elif rec.action == "key.registered":
            if body.get("public_key") != k.pem:
                return f"key {k.key_id} in the registry is not the key record {rec.id} registered"
            if active is not None:
                return (f"key {k.key_id} appeared at record {rec.id} while key {active} was active, without a "
                        "hand-over (`billbot keys rotate`)")
        else:
            return f"key {k.key_id}: record {rec.id} ({rec.action}) does not introduce a key"
        active = k.key_id
    return None


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


def check_anchors(s: Session, path: Path, public: Ed25519PublicKey | None,
                  registry: dict[str, RegisteredKey] | None = None) -> str | None:
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
        signer = registry[a["key_id"]].public if registry and a.get("key_id") in registry else public
        if signer is not None and not verify(signer, content_hash(body), str(a.get("signature") or "")):
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


def verify_chain(s: Session, public: Ed25519PublicKey | None,  # noqa: C901 - one check per line, each named
                 registry: dict[str, RegisteredKey] | None = None) -> VerifyResult:
    """Recompute every record's hash, its link to the previous one, and its signature — by the key
    the record names, looked up in ``registry`` (retired keys too, up to their hand-over), else by
    ``public``. Names the first broken record."""
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
        if registry:
            problem = _signature_problem(row, h, registry, public)
            if problem is not None:
                return VerifyResult(False, n, row.id, problem)
        elif public is not None:
            if not row.signature or not verify(public, h, row.signature):
                return VerifyResult(False, n, row.id, f"record {row.id} has a bad signature")
        prev = row.record_hash
        expected_seq += 1
    head = s.get(AuditHead, 1)
    if head is not None and head.last_id != n:
        return VerifyResult(False, n, n + 1, f"the log ends at record {n} but the head says {head.last_id}")
    return VerifyResult(True, n)


def _signature_problem(row: AuditLog, h: str, registry: dict[str, RegisteredKey],
                       public: Ed25519PublicKey | None) -> str | None:
    if not row.signature:
        return f"record {row.id} is not signed"
    found = registry.get(row.key_id or "")
    if found is None:
        if public is not None and row.key_id == key_id(public) and verify(public, h, row.signature):
            return None  # the current key, before it was registered
        return f"record {row.id} was signed by key {row.key_id}, which is not in the key registry"
    if found.retired_at_record is not None and row.id > found.retired_at_record:
        return (f"record {row.id} was signed by key {row.key_id} after it was retired at record "
                f"{found.retired_at_record}")
    if not verify(found.public, h, row.signature):
        return f"record {row.id} has a bad signature (key {row.key_id})"
    return None
