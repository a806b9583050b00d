"""billbot's own files are private: ``var/`` (database, WAL, signing key, PDFs, evidence) is 0700 and
every file in it 0600 — invoices, signed decisions and the key are nobody else's business on a
shared machine. Writes are atomic (a temporary file, then ``os.replace``), created 0600 from the start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` and its missing parents, created 0700 (existing folders are left as they are)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(d, PRIVATE_DIR)  # mkdir's mode is reduced by the umask
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, the file 0600 (its folder made 0700 if missing)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, PRIVATE_FILE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def touch_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist (a SQLite database before its first
    connection: SQLite gives its WAL and shared-memory files the database file's mode).

    An existing file is never opened here: closing any descriptor of a SQLite database drops every
    POSIX lock this process holds on it (fcntl locks are per process), which would let another
    process write under a reader's feet. ``O_EXCL`` creates or fails without opening."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    os.close(fd)


def secure_var_dir(var_dir: Path) -> None:
    """Make an existing ``var/`` private: the folder and its sub-folders 0700, every file 0600
    (a ``var/`` left 0755/0644 by an earlier billbot is fixed at start). Only what this user owns."""
    if not var_dir.is_dir():
        return
    uid = os.getuid()
    for root, dirs, files in os.walk(var_dir):
        rp = Path(root)
        _chmod_own(rp, PRIVATE_DIR, uid)
        for name in files:
            _chmod_own(rp / name, PRIVATE_FILE, uid)
        dirs[:] = [d for d in dirs if not (rp / d).is_symlink()]


def _chmod_own(p: Path, mode: int, uid: int) -> None:
    """chmod ``p`` if this user owns it and it is too open. Other processes write and replace files in
    ``var/`` meanwhile (a PDF's temporary file): one that is gone, or not ours, is left alone."""
    try:
        st = p.lstat()
        if st.st_uid == uid and not p.is_symlink() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(p, mode)
    except (FileNotFoundError, PermissionError):
        pass
