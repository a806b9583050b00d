"""The deployment's Ed25519 signing key: loaded from ``SIGNING_KEY_PATH`` (PEM, PKCS#8), generated
on first start in embedded mode. In distributed mode a missing key is an error (every process must
sign with the same key)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from billing.errors import BillingError
from storage.files import private_dir


@lru_cache(maxsize=8)
def load_key(path: str, generate: bool = True) -> Ed25519PrivateKey:
    p = Path(path)
    if not p.exists():
        if not generate:
            raise BillingError(f"SIGNING_KEY_PATH: no key at {p}", code="signing_key")
        private_dir(p.parent)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return key
    loaded = load_pem_private_key(p.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise BillingError(f"SIGNING_KEY_PATH: {p} is not an Ed25519 key", code="signing_key")
    return loaded
