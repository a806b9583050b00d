"""The deployment's Ed25519 signing key: loaded from ``SIGNING_KEY_PATH`` (PEM, PKCS#8), generated
on first start in embedded mode. In distributed mode a missing key is an error (every process must
sign with the same key).

``billbot keys rotate`` replaces the file atomically (:func:`stage_key`, then :func:`install_key` after
the hand-over is committed); :func:`current_key` notices the new file by its modification time, so a
running process signs with the new key from its next transaction on."""

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


def current_key(path: str, generate: bool = True) -> Ed25519PrivateKey:
    """:func:`load_key`, re-read when the file changed (a rotation)."""
    try:
        stamp = Path(path).stat().st_mtime_ns
    except FileNotFoundError:
        stamp = 0
    return load_key(path, generate, stamp)


def stage_key(path: Path) -> tuple[Ed25519PrivateKey, Path]:
    """A fresh key written (0600) next to ``path`` as ``<name>.new``; :func:`install_key` moves it in."""
    key = Ed25519PrivateKey.generate()
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return key, staged


def install_key(staged: Path, path: Path) -> None:
    """Replace the key file atomically (the retired private key is not kept: it must sign nothing more)."""
    os.replace(staged, path)


@lru_cache(maxsize=8)
def load_key(path: str, generate: bool = True, stamp: int = 0) -> Ed25519PrivateKey:  # stamp: cache key only
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
