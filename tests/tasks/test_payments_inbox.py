"""The watched folder: bank files dropped into BILLBOT_INBOX_DIR/bank/ are imported by the scheduled
``payments_inbox`` task, one import per file, and moved to processed/ (or failed/ with the reason)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from bot import context, jobs
from bot.workflows import payments as wf
from bot.workflows.schedules import add_schedule
from storage.db import Database
from tests.factories import base, invoice, utc

BANK = Path(__file__).resolve().parents[1] / "fixtures" / "bank"


@pytest.fixture
def inbox(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BILLBOT_JOBS", "inline")
    monkeypatch.setenv("BILLBOT_INBOX_DIR", str(tmp_path / "inbox"))
    context.reset()
    (tmp_path / "inbox" / "bank").mkdir(parents=True)
    yield tmp_path / "inbox" / "bank"
    jobs.shutdown()


def test_dropped_files_are_imported_once_and_moved(db: Database, key: Any, inbox: Path) -> None:
    base(db)
    invoice(db, number="INV-2026-000004", created_at=utc(2026, 3, 1, 9), gross="1000.00", advertiser="adv-2")
    shutil.copy(BANK / "camt053_v02.xml", inbox / "STMT-0405.xml")
    shutil.copy(BANK / "mt940.sta", inbox / "MT940-0408.sta")
    (inbox / "STMT-0406.xml.part").write_text("<still arriving")  # a transfer in progress is left alone
    (inbox / "garbage.xml").write_text("<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pain.001.001.03'/>")

    out = jobs.submit("payments_inbox").result()
    assert sorted(r["file"] for r in out["imported"]) == ["MT940-0408.sta", "STMT-0405.xml"]
    assert "not a camt.053 or camt.054 document" in out["failed"]["garbage.xml"]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["MT940-0408.sta", "STMT-0405.xml"]
    assert (inbox / "failed" / "garbage.xml.reason.txt").read_text().startswith("garbage.xml: not a camt")
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["STMT-0406.xml.part"]
    before = len(wf.list_payments(db))

    # the bank sends the same statement again under the same name: imported (no change), kept beside the first
    shutil.copy(BANK / "camt053_v02.xml", inbox / "STMT-0405.xml")
    again = jobs.submit("payments_inbox").result()
    assert [(r["file"], r["inserted"]) for r in again["imported"]] == [("STMT-0405.xml", 0)]
    assert len(wf.list_payments(db)) == before
    assert len(list((inbox / "processed").iterdir())) == 3


def test_the_inbox_can_be_scheduled(db: Database, key: Any) -> None:
    row = add_schedule(db, task="payments_inbox", args={}, cron="*/10 * * * *", timezone="Europe/Berlin",
                       actor="cli", signing_key=key)
    assert row.task == "payments_inbox"
