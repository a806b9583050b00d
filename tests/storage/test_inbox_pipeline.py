"""Issue 21, schedules for the whole pipeline: files dropped into ``BILLBOT_INBOX_DIR/<source>/`` are
imported by the ``import_inbox`` task (third-party reports from ``<source>/third_party/``), moved to
processed/ or failed/ with the reason; ``preinvoices_create`` runs like ``billbot preinvoices create``;
both are schedulable."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from billing.errors import Invalid
from bot import context, jobs
from bot.workflows.schedules import add_schedule
from storage.db import Database
from storage.models import DeliveryFact, PreInvoice, SyncRun

DATA = Path(__file__).resolve().parents[1] / "data" / "gam"


@pytest.fixture
def inbox(scenario: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BILLBOT_JOBS", "inline")
    monkeypatch.setenv("BILLBOT_INBOX_DIR", str(tmp_path / "inbox"))
    monkeypatch.setenv("BILLBOT_SOURCE_GAM_KIND", "gam")
    monkeypatch.setenv("BILLBOT_SOURCE_TRACKER_KIND", "hasoffers")
    context.reset()
    (tmp_path / "inbox" / "gam" / "third_party").mkdir(parents=True)
    (tmp_path / "inbox" / "tracker").mkdir(parents=True)
    (tmp_path / "inbox" / "bank").mkdir(parents=True)  # the bank's folder is not a delivery source
    yield tmp_path / "inbox"
    jobs.shutdown()


def test_inbox_files_are_imported_per_source_and_moved(scenario: Database, key: Any, inbox: Path) -> None:
    gam = inbox / "gam"
    shutil.copy(DATA / "csv_dump.tsv", gam / "2026-02-05.tsv")
    shutil.copy(DATA / "total_line_item_level.csv", gam / "third_party" / "client-report.csv")
    (gam / "2026-02-06.csv.part").write_text("still arriving")
    (gam / "broken.csv").write_text("not,a,report\n1,2,3\n")
    (inbox / "tracker" / "stats.csv").write_text("x\n")

    out = jobs.submit("import_inbox").result()
    assert sorted((r["source"], r["file"], r["party"]) for r in out["imported"]) == [
        ("gam", "2026-02-05.tsv", "first_party"), ("gam", "client-report.csv", "third_party")]
    assert set(out["failed"]) == {"gam/broken.csv", "tracker/stats.csv"}
    assert "BILLBOT_SOURCE_TRACKER_KIND: set gam or logs" in out["failed"]["tracker/stats.csv"]
    assert [p.name for p in (gam / "processed").iterdir()] == ["2026-02-05.tsv"]
    assert [p.name for p in (gam / "third_party" / "processed").iterdir()] == ["client-report.csv"]
    assert (gam / "failed" / "broken.csv.reason.txt").exists()
    assert sorted(p.name for p in gam.iterdir() if p.is_file()) == ["2026-02-06.csv.part"]
    assert (inbox / "tracker" / "stats.csv").exists()  # left where it is: nothing billbot can read it as
    with scenario.read() as s:
        facts = {(f.party, f.day.isoformat(), f.impressions) for f in s.execute(select(DeliveryFact)).scalars()}
        runs = [(r.source, r.mode, r.file_name) for r in s.execute(select(SyncRun).order_by(SyncRun.id)).scalars()]
    assert ("first_party", "2026-02-05", 16000) in facts and ("third_party", "2026-02-03", 19500) in facts
    assert ("gam", "report", "2026-02-05.tsv") in runs and ("gam", "report", "client-report.csv") in runs

    again = jobs.submit("import_inbox", source="gam").result()  # nothing new: nothing imported
    assert again["imported"] == [] and again["log"] == ["inbox: no files waiting"]


def test_preinvoices_create_is_a_task_and_both_are_schedulable(scenario: Database, key: Any, inbox: Path) -> None:
    out = jobs.submit("preinvoices_create", period="2026-02").result()
    with scenario.read() as s:
        ids = list(s.execute(select(PreInvoice.id)).scalars())
    assert out["period"] == "2026-02" and out["created"] == ids and ids
    assert out["log"][0].startswith(f"2026-02: {len(ids)} created")
    assert jobs.submit("preinvoices_create", period="2026-02").result()["unchanged"] == ids  # idempotent

    for task, args in (("import_inbox", {"source": "gam"}), ("preinvoices_create", {"period": "previous_month"})):
        row = add_schedule(scenario, task=task, args=args, cron="0 6 * * *", timezone="Europe/Berlin", actor="cli",
                           signing_key=key)
        assert (row.task, row.args) == (task, args)
    with pytest.raises(Invalid, match="a preinvoices_create schedule needs period="):
        add_schedule(scenario, task="preinvoices_create", args={}, cron="0 6 * * *", actor="cli", signing_key=key)
