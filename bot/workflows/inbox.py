"""Watched inbox folders for file sources (issue 21): ``BILLBOT_INBOX_DIR/<source>/``.

The pattern of the bank's folder (:func:`bot.workflows.payments.import_inbox`): every file dropped
into ``<inbox>/<source>/`` is imported (oldest first) as that source's ``import report`` (a source of
kind ``gam``; files in ``<inbox>/<source>/third_party/`` are the client's or an auditor's figures) or
``import logs`` (kind ``logs``, the default log rule), one import per file, then moved to
``processed/`` — or to ``failed/`` with a ``.reason.txt`` when it cannot be read. Files a transfer
client is still writing (``.part``, ``.tmp`` …) and hidden files wait. A file whose source is busy
(a sync or import running) stays for the next pass. Importing a file twice changes nothing (the
rows are keyed), so a crash between the import's commit and the move is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from billing.errors import Conflict, Invalid
from bot.workflows.payments import PARTIAL_SUFFIXES, _move
from bot.workflows.sync import import_logs, import_report
from storage.db import Database
from storage.sources.base import get_source_config

RESERVED = frozenset({"bank", "processed", "failed", "third_party"})  # folders that are not file sources
FILE_KINDS = ("gam", "logs")


@dataclass
class SourceInboxResult:
    imported: list[dict[str, Any]] = field(default_factory=list)  # file, source, party, sync_run_id, counts
    failed: dict[str, str] = field(default_factory=dict)  # "<source>/<file>" → reason
    waiting: list[str] = field(default_factory=list)  # files left for the next pass (source busy)
    log: list[str] = field(default_factory=list)


def inbox_sources(inbox: Path) -> list[str]:
    """The source folders under ``inbox`` (every directory but the bank's)."""
    if not inbox.is_dir():
        return []
    return sorted(p.name for p in inbox.iterdir() if p.is_dir() and p.name not in RESERVED
                  and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
             and not p.name.lower().endswith(PARTIAL_SUFFIXES) and not p.name.endswith(".reason.txt")]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def import_source_inbox(db: Database, inbox: Path, *, sources: list[str] | None = None, actor: str,
                        key: Ed25519PrivateKey | None, now: datetime | None = None) -> SourceInboxResult:
    """Import the files waiting in ``inbox/<source>/`` for ``sources`` (default: every source folder)."""
    res = SourceInboxResult()
    for source in sources or inbox_sources(inbox):
        folder = inbox / source
        try:
            cfg = get_source_config(source)
        except Invalid as e:
            _fail_all(res, source, folder, e.message)
            continue
        kind = cfg.kind
        if kind not in FILE_KINDS:
            why = (f"BILLBOT_SOURCE_{source.upper().replace('-', '_')}_KIND: set gam or logs to import files "
                   f"from {folder}" + (f" (it is {kind}, a source synced over its API)" if kind else ""))
            _fail_all(res, source, folder, why)
            continue
        parties = [(folder, "first_party")] + ([(folder / "third_party", "third_party")] if kind == "gam" else [])
        for where, party in parties:
            for path in _files(where):
                try:
                    if kind == "gam":
                        r = import_report(db, path=path, source=source, third_party=party == "third_party",
                                          actor=actor, signing_key=key, now=now)
                    else:
                        r = import_logs(db, path=path, source=source, actor=actor, signing_key=key, now=now)
                except Conflict as e:  # the source is busy: the file waits for the next pass
                    res.waiting.append(f"{source}/{path.name}")
                    res.log.append(f"{source}/{path.name}: waits ({e.message})")
                    continue
                except Invalid as e:
                    res.failed[f"{source}/{path.name}"] = e.message
                    res.log.append(f"{source}/{path.name}: failed ({e.message})")
                    _move(path, where / "failed").with_suffix(path.suffix + ".reason.txt").write_text(e.message + "\n")
                    continue
                _move(path, where / "processed")
                res.imported.append({"file": path.name, "source": source, "party": party,
                                     "sync_run_id": r.sync_run_id, "counts": r.counts})
                until = f"; data until {r.data_until.isoformat()}" if r.data_until else ""
                res.log.append(f"{source}/{path.name}: imported ({party.replace('_', ' ')}){until}")
    if not res.log:
        res.log.append("inbox: no files waiting")
    return res


def _fail_all(res: SourceInboxResult, source: str, folder: Path, why: str) -> None:
    """A source folder billbot cannot import from: its files are left in place and the reason named."""
    for path in _files(folder):
        res.failed[f"{source}/{path.name}"] = why
    res.log.append(f"{source}: {why}")
