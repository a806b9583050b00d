"""Issue 21: ``/billing import [source]`` and ``/billing preinvoices create PERIOD`` typed in Slack run
the pipeline's steps in the background and report into their progress message."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import PreInvoice, SyncRun
from tests import factories as f
from tests.slack.helpers import ephemerals

DATA = Path(__file__).resolve().parents[1] / "data" / "gam"


def _final(world: Any) -> str:
    msg = world.api.message("CBILLING", world.api.calls_to("chat.update")[-1]["ts"])
    return "\n".join(b["text"]["text"] for b in msg["blocks"] if b.get("text"))


def test_import_and_preinvoices_create_from_slack(world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage.settings import get_settings

    monkeypatch.setenv("BILLBOT_INBOX_DIR", str(tmp_path / "inbox"))
    monkeypatch.setenv("BILLBOT_SOURCE_GAM_KIND", "gam")
    get_settings.cache_clear()  # BILLBOT_INBOX_DIR is read when the task runs
    (tmp_path / "inbox" / "gam").mkdir(parents=True)
    shutil.copy(DATA / "csv_dump.tsv", tmp_path / "inbox" / "gam" / "2026-02-05.tsv")

    assert world.as_user(f.OPERATOR).command("import gam").status == 200
    world.wait()
    text = _final(world)
    assert "Import of the gam inbox" in text and "— done" in text and "gam/2026-02-05.tsv: imported" in text
    assert (tmp_path / "inbox" / "gam" / "processed" / "2026-02-05.tsv").exists()
    with world.db.read() as s:
        assert s.execute(select(SyncRun.file_name).where(SyncRun.source == "gam")).scalars().all() == ["2026-02-05.tsv"]

    assert world.as_user(f.OPERATOR).command("preinvoices create 2026-02").status == 200
    world.wait()
    text = _final(world)
    with world.db.read() as s:
        ids = list(s.execute(select(PreInvoice.id)).scalars())
    assert ids and "Pre-invoices 2026-02" in text and f"2026-02: {len(ids)} created" in text and "— done" in text

    # starting the pipeline is an operator's job
    world.as_user(f.APPROVER).command("import")
    world.wait()
    assert ephemerals(world, f.APPROVER) == [
        ":no_entry: Only operators may start syncs and billing runs or change schedules."]


def test_status_shows_each_sources_freshness_target(world: Any) -> None:
    from datetime import UTC, date, datetime, timedelta

    from storage.loader import load_scenario

    load_scenario(world.db, {"freshness": {"tracker": {"days": 2}, "gam": {"days": 5}}})
    f.source_state(world.db, "tracker", datetime(2026, 3, 1, 8, tzinfo=UTC), data_until=date(2026, 2, 20))
    assert world.as_user(f.NOBODY).command("status").status == 200
    world.wait()
    [answer] = world.api.calls_to("response_url")
    text = "\n".join(b["text"]["text"] for b in answer["blocks"] if b.get("text"))
    # judged against the last closed month of today (the command reads the real clock)
    month_end = datetime.now(UTC).date().replace(day=1) - timedelta(days=1)
    assert "• *tracker*: last sync" in text
    assert f", data until 2026-02-20 · target: data until {month_end.isoformat()} by" in text
    assert "• *gam*: never synced · target: data until" in text
