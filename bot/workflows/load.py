"""Loading scenario files and the demo, with an audit record of what changed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from bot.workflows.audit import record
from bot.workflows.change_sets import open_change_set
from storage.db import Database
from storage.loader import LoadResult, load_scenario


def load(
    db: Database, data: dict[str, Any] | Path, *, actor: str, signing_key: Ed25519PrivateKey | None, what: str
) -> LoadResult:
    """Validate and load a scenario atomically; a reload that changes nothing writes no audit record.

    New records and fields that move no money apply at once; money-moving changes of existing
    records (rates, amounts, thresholds, tolerances, VAT data, payment terms) are held in a change set
    that waits for someone other than ``actor`` (:mod:`bot.workflows.change_sets`)."""

    def audit(s: Session, res: LoadResult) -> None:
        now = datetime.now(UTC)
        if res.held:
            res.change_set = open_change_set(s, diff=res.held, author=actor, source=what, key=signing_key, now=now).id
        if res.changed:
            record(s, key=signing_key, actor=actor, action="scenario.loaded", subject_type="scenario",
                   subject_id=what[:64], payload=res.as_dict(), now=now)

    return load_scenario(db, data, actor=actor, audit=audit, hold_money_changes=True)
