"""The daily dunning proposal in Slack, and the letters once sent: PDFs (same renderer as invoices)
written to ``var/dunning/`` and attached in the proposal's thread (until a dispatch channel exists)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from slack_sdk import WebClient

from bot.blocks.dunning import proposal_blocks
from bot.documents.letters import render_letter
from bot.workflows.dunning import Letter, letter_rendered, run_dunning
from storage.db import Database
from storage.models import LegalEntity
from storage.settings import get_settings


def post_proposal(client: WebClient, db: Database, *, today: date, channel: str | None = None) -> dict[str, Any]:
    letters = run_dunning(db, today=today, actor="scheduler", key=None, dry_run=True)
    resp = client.chat_postMessage(channel=channel or get_settings().managers_channel,
                                   blocks=proposal_blocks(letters, today=today),
                                   text=f"Dunning proposal {today.isoformat()}: {len(letters)} letter(s)")
    return {"channel": resp["channel"], "ts": resp["ts"], "letters": len(letters)}


def deliver(client: WebClient, db: Database, letters: list[Letter], *, channel: str | None,
            thread_ts: str | None) -> list[str]:
    """Render each sent letter, keep it under var/dunning/, attach it in the thread. Returns the paths."""
    out = Path(get_settings().var_dir) / "dunning"
    out.mkdir(parents=True, exist_ok=True)
    with db.read() as s:
        sellers = {le.id: le.name for le in s.query(LegalEntity)}
    paths = []
    for x in letters:
        path = out / f"{x.invoice}-L{x.level}.pdf"
        data = render_letter(x, seller=sellers.get(x.legal_entity, x.legal_entity))
        path.write_bytes(data)
        if x.id is not None:
            letter_rendered(db, x.id, str(path))
        if channel:
            client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=data, filename=path.name,
                                   title=f"{x.name.replace('_', ' ')} {x.invoice}")
        paths.append(str(path))
    return paths


def show_outcome(client: WebClient, *, channel: str | None, ts: str | None, letters: list[Letter], today: date,
                 outcome: str) -> None:
    if channel and ts:
        client.chat_update(channel=channel, ts=ts, blocks=proposal_blocks(letters, today=today, outcome=outcome),
                           text=outcome)
