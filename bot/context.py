"""Process-wide wiring: settings → database → signing key. Workflows take these as parameters;
surfaces (CLI, Slack handlers, jobs) get them here."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage.db import Database
from storage.files import secure_var_dir
from storage.settings import Settings, get_settings

if TYPE_CHECKING:
    from bot.workflows.documents import PdfRenderer


@lru_cache(maxsize=4)
def _db(url: str, migrate: bool) -> Database:
    db = Database(url)
    if migrate:
        from storage.migrate import upgrade

        upgrade(db)
    return db


_db_lock = threading.Lock()
_secured: set[Path] = set()


def get_db(migrate: bool = True) -> Database:
    """The configured database; start-up migrates it to the latest revision. Locked: two threads'
    first calls (web thread + job thread) must not run Alembic at the same time."""
    with _db_lock:
        s = get_settings()
        if s.var_dir not in _secured:  # once per process: a var/ left readable by others is fixed at start
            secure_var_dir(s.var_dir)
            _secured.add(s.var_dir)
        return _db(s.db_url, migrate)


def get_key() -> Ed25519PrivateKey:
    from bot.signing import current_key

    s = get_settings()
    return current_key(str(s.key_path), generate=not s.database_url.startswith("postgresql"))


def settings() -> Settings:
    return get_settings()


def documents_dir() -> Path:
    """Where rendered invoice PDFs are kept: ``<BILLBOT_VAR_DIR>/documents``."""
    return get_settings().var_dir / "documents"


def pdf_renderer() -> PdfRenderer:
    """The PDF renderer the rendering workflows take (:mod:`bot.documents.pdf`, WeasyPrint)."""
    from bot.documents import pdf  # lazy: only processes that render load the renderer's modules

    return pdf


def reset() -> None:
    """Forget cached settings/database (tests change the environment between cases)."""
    from bot.signing import load_key
    from storage.db import dispose_all

    get_settings.cache_clear()
    _db.cache_clear()
    load_key.cache_clear()
    dispose_all()
