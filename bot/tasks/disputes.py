"""The evidence pack of a disputed invoice, built after the dispute opened (issue 20): PDF rendering
may be needed, so it runs as a job, not in the request that opened the dispute."""

from __future__ import annotations

import hashlib
from typing import Any

from bot import context
from bot.slack.client import get_client
from bot.slack.disputes import post_evidence_pack
from bot.tasks.registry import task
from bot.workflows import disputes
from bot.workflows.documents import safe_name
from bot.workflows.evidence import build_evidence_pack

DISPUTE_EVIDENCE = "dispute_evidence"


@task(DISPUTE_EVIDENCE, queue="documents", lock=lambda kw: f"dispute_evidence:{kw.get('dispute_id')}")
def dispute_evidence(*, dispute_id: int) -> Any:
    """Build the disputed invoice's evidence pack into ``<documents>/evidence/``, record where it went
    on the dispute, and upload it into the dispute's Slack thread."""
    db, key = context.get_db(), context.get_key()
    v = disputes.get_dispute(db, dispute_id)
    out_dir = context.documents_dir()
    out = out_dir / "evidence" / f"dispute-{v.id}-{safe_name(v.invoice)}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    path = build_evidence_pack(db, v.invoice, out, renderer=context.pdf_renderer(), out_dir=out_dir, key=key)
    disputes.store_evidence(db, dispute_id, str(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    post_evidence_pack(get_client(), db, dispute_id, path, sha)
    return {"dispute": dispute_id, "path": str(path), "sha256": sha}
