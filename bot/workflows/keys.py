"""The signing-key registry as the surfaces use it: rotate the deployment's key, list the keys to trust.

The registry itself (table ``signing_keys``, registration and hand-over records) lives with the audit
log in :mod:`bot.workflows.audit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from billing.signatures import key_id
from bot.workflows.audit import key_registry, public_pem, rotate_key
from storage.db import Database


@dataclass(frozen=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    record: int


def rotate(db: Database, *, old: Ed25519PrivateKey, new: Ed25519PrivateKey, actor: str,
           now: datetime | None = None) -> Rotation:
    """Retire ``old`` for ``new`` in one transaction: the hand-over record (signed by the old key), the
    old key's end of validity and the new key's entry in the registry. The caller installs the new
    key file only after this commits (a failed rotation leaves the old key in force)."""
    with db.transaction() as s:
        rec = rotate_key(s, old=old, new=new, actor=actor, now=now or datetime.now(UTC))
        return Rotation(key_id(old.public_key()), key_id(new.public_key()), rec.id)


def trusted_keys(db: Database, current: Ed25519PublicKey | None) -> list[Ed25519PublicKey]:
    """Every key of the registry (retired ones sign old records and packs), and the current key."""
    with db.read() as s:
        keys = [k.public for k in key_registry(s).values()]
    if current is not None and key_id(current) not in {key_id(k) for k in keys}:
        keys.append(current)
    return keys


def export_pem(keys: list[Ed25519PublicKey]) -> bytes:
    return "".join(public_pem(k) for k in keys).encode()
