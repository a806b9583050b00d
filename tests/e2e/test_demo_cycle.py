"""`billbot demo` + `billbot cycle`: the headless cycle through the real data paths, end to end."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from bot.cli import app
from storage.db import Database
from storage.models import BillingException, Conversion, DeliveryFact, Invoice, QuarantineRow, SyncRun

SIZE = "12"


def _counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {m.__name__: int(s.execute(select(func.count()).select_from(m)).scalar_one())
                for m in (Invoice, BillingException, DeliveryFact, Conversion, QuarantineRow)}


def test_cycle_bills_the_demo_and_leaves_decisions_waiting(db: Database) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--size", SIZE])
    assert res.exit_code == 0, res.output
    assert "bill them with `billbot cycle`" in res.stdout
    assert _counts(db)["DeliveryFact"] == 0  # master data only; the delivery is in var/demo/
    assert (Path(os.environ["BILLBOT_VAR_DIR"]) / "demo" / "manifest.json").is_file()

    env_before = {k: v for k, v in os.environ.items() if k.startswith("BILLBOT_SOURCE_")}
    res = runner.invoke(app, ["cycle", "--period", "2026-10", "--verbose"])  # the job log printed, not to a file
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    steps = ["Demo tracker (HasOffers Network API v3) on http://127.0.0.1:", "Partial sync #1 of tracker (",
             "Display report gam-display.csv → gam, sync #2:",
             "Client's click report client-analytics.csv → client-analytics (third party), sync #3:",
             "Booking log bookings.jsonl → dealer-logs, sync #4:", "Pre-invoices 2026-10: 12 created,",
             "Billing run 1 for 2026-10:"]
    assert [line[:len(s)] for line, s in zip(lines, steps, strict=False)] == steps
    assert any(re.fullmatch(r"  Document INV-2026-\d{6} created for Autohaus .+", line) for line in lines)
    assert any(re.fullmatch(r"  Skipped items with a total of \d+\.\d\d EUR for .+ \(threshold 250\.00 EUR\)", line)
               for line in lines)
    assert any(line.startswith("  Report::getStats: ") for line in lines)
    assert re.search(r"Cycle 2026-10: \d+ invoices created, [1-9]\d* skipped below threshold, [1-9]\d* held, "
                     r"6 rows quarantined", res.stdout)
    with db.read() as s:
        assert s.execute(select(SyncRun.mode).where(SyncRun.source == "tracker")).scalar_one() == "partial"
    exceptions = json.loads(runner.invoke(app, ["exceptions", "list", "--json"]).stdout)
    kinds = Counter(e["kind"] for e in exceptions)
    assert kinds["variance"] >= 1 and kinds["below_threshold"] >= 1
    # the demo tracker's source configuration was for the cycle only
    assert {k: v for k, v in os.environ.items() if k.startswith("BILLBOT_SOURCE_")} == env_before

    before = _counts(db)
    assert before["Invoice"] >= 1 and before["QuarantineRow"] == 6
    res = runner.invoke(app, ["cycle", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["summary"]["created"] == 0 and out["run"]["created"] == []
    assert all(r["inserted"] == 0 and r["updated"] == 0 for r in out["syncs"])
    assert out["preinvoices"]["created"] == [] and out["preinvoices"]["updated"] == []
    assert _counts(db) == before  # nothing new: no invoice, exception, fact, conversion or quarantined row

    # without --verbose: the steps and the run's totals, and the job log in a file that is named
    res = runner.invoke(app, ["cycle"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) <= 50 and not any(line.startswith("  Document ") for line in lines)
    assert "Billing run 3 for 2026-10: done" in lines  # 1: the first cycle, 2: the --json one
    [named] = [line for line in lines if line.startswith("Full job log (")]
    log_file = Path(re.search(r": (\S+\.log) ", named)[1])  # type: ignore[index]
    assert log_file.parent == Path(os.environ["BILLBOT_VAR_DIR"]) / "logs" and log_file.is_file()
    assert any(line.startswith("Report::getStats: ") for line in log_file.read_text(encoding="utf-8").splitlines())


def test_demo_refuses_to_mix_inline_and_file_delivery(db: Database) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["cycle"])
    assert res.exit_code == 2 and "no demo files (run `billbot demo` first)" in res.stderr
    assert runner.invoke(app, ["demo", "--size", "3", "--inline-delivery", "--json"]).exit_code == 0
    assert _counts(db)["DeliveryFact"] > 0
    res = runner.invoke(app, ["demo", "--size", "3"])
    assert res.exit_code == 2 and "would count it twice" in res.stderr
    res = runner.invoke(app, ["demo", "--size", "3", "--inline-delivery"])  # the same way again is fine
    assert res.exit_code == 0 and "nothing changed" in res.stdout


def test_a_synced_demo_is_only_reloaded_as_it_is(db: Database) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--size", "3"]).exit_code == 0
    assert runner.invoke(app, ["demo", "--size", "4"]).exit_code == 0  # nothing synced yet: any demo
    assert runner.invoke(app, ["cycle", "--json"]).exit_code == 0
    res = runner.invoke(app, ["demo", "--size", "5"])
    assert res.exit_code == 2 and "holds the demo with --size 4 --seed 1, already synced" in res.stderr
    res = runner.invoke(app, ["demo", "--size", "4"])
    assert res.exit_code == 0 and "nothing changed" in res.stdout


def test_a_clock_inside_the_period_still_syncs_the_whole_period() -> None:
    from collections.abc import Iterator

    from bot.cli.cycle_cmds import _AsOf
    from storage.sources.base import Batch, SourceConfig

    seen: list[datetime] = []

    class Inner:
        config = SourceConfig(name="tracker", kind="hasoffers", url="http://127.0.0.1:1")

        def fetch(self, *, mode: str, watermark: str | None, pending_ids: list[str], now: datetime,
                  on_progress: object = None) -> Iterator[Batch]:
            seen.append(now)
            return iter(())

        def advance_watermark(self, old: str | None, *, max_day: object, max_occurred: object) -> str | None:
            return "stats=2026-10-31"

    morning_after = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)
    conn = _AsOf(Inner(), morning_after)  # type: ignore[arg-type]
    list(conn.fetch(mode="partial", watermark=None, pending_ids=[], now=datetime(2026, 10, 20, tzinfo=UTC)))
    list(conn.fetch(mode="partial", watermark=None, pending_ids=[], now=datetime(2026, 12, 1, tzinfo=UTC)))
    assert seen == [morning_after, datetime(2026, 12, 1, tzinfo=UTC)]
    assert conn.config.name == "tracker"
    assert conn.advance_watermark(None, max_day=None, max_occurred=None) == "stats=2026-10-31"
