"""Canonical JSON, content hashes and Ed25519 signatures for decisions and the audit chain.

Pure: keys are passed in. The canonical form is JSON with sorted keys, no insignificant
whitespace, UTF-8, and Decimals / dates written as strings, so the same content always hashes
the same on every machine and database.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

GENESIS = "0" * 64


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"not canonicalizable: {type(o).__name__}")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def content_hash(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return sha256_hex(canonical_json(obj))


def chain_hash(
    *, seq: int, at: str, actor: str, action: str, subject: str, payload: str, prev_hash: str
) -> str:
    """The hash of one audit record, covering the previous record's hash (the chain)."""
    return content_hash(
        {"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject,
         "payload": payload, "prev": prev_hash}
    )


def sign(key: Ed25519PrivateKey, record_hash: str) -> str:
    return base64.b64encode(key.sign(bytes.fromhex(record_hash))).decode()


def verify(public: Ed25519PublicKey, record_hash: str, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature), bytes.fromhex(record_hash))
    except (InvalidSignature, ValueError):
        return False
    return True


def key_id(public: Ed25519PublicKey) -> str:
    """Short fingerprint of a public key (first 16 hex of SHA-256 of its raw bytes)."""
    return sha256_hex(public.public_bytes(Encoding.Raw, PublicFormat.Raw))[:16]
