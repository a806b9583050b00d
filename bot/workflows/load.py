"""Loading scenario files and the demo, with an audit record of what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from bot.workflows.audit import record
from storage.db import Database
from storage.loader import LoadResult, load_scenario


def load(
    db: Database, data: dict[str, Any] | Path, *, actor: str, signing_key: Ed25519PrivateKey | None, what: str
) -> LoadResult:
    """Validate and load a scenario atomically; a reload that changes nothing writes no audit record."""

    def audit(s: Session, res: LoadResult) -> None:
        record(s, key=signing_key, actor=actor, action="scenario.loaded", subject_type="scenario",
               subject_id=what[:64], payload=res.as_dict())

    return load_scenario(db, data, actor=actor, audit=audit)
