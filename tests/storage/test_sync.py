"""Syncs against the fake HasOffers tracker: what each mode pulls, paging, rate limits, failures,
idempotence, the per-source lock and the watermark."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing.errors import Conflict
from bot.workflows import effects
from bot.workflows.sync import run_sync, sync_log, sync_status
from storage.db import Database
from storage.models import (
    Advertiser,
    Affiliate,
    AuditLog,
    Conversion,
    DeliveryFact,
    Employee,
    ExternalId,
    QuarantineRow,
    SourceState,
    SyncRun,
)
from storage.sources import SourceError
from tests.fakes.tracker import FakeTracker
from tests.storage.conftest import NOW, Sleeps, connector, conversion, stat

ENTITY_CALLS = ["Employee::findAll", "Advertiser::findAll", "Affiliate::findAll"]


def _sync(db: Database, key, sleeps: Sleeps, mode: str = "standard", now: datetime = NOW, **kw):  # type: ignore[no-untyped-def]
    return run_sync(db, source="tracker", mode=mode, actor="U01OPERATOR", signing_key=key, now=now,
                    connector=connector(sleeps, **kw))


def _facts(db: Database) -> dict[tuple[str, date], DeliveryFact]:
    with db.read() as s:
        return {(f.item_id, f.day): f for f in s.execute(select(DeliveryFact).where(DeliveryFact.source == "tracker"))
                .scalars()}


def _watermark(db: Database) -> str | None:
    with db.read() as s:
        st = s.get(SourceState, "tracker")
        return st.watermark if st else None


def test_standard_sync_pulls_entities_stats_and_conversions(scenario: Database, key, source_env: FakeTracker,
                                                           sleeps: Sleeps) -> None:
    t = source_env
    t.stats += [stat("2026-02-08", "101", "5", 1000, 10, revenue="4.2"),
                stat("2026-02-08", "101", "6", 500, 5, revenue="2.10"),  # second affiliate: summed into the item
                stat("2026-02-09", "102", "5", 0, 30, conversions=2, revenue="50.00")]
    t.conversions += [conversion("c1", "2026-02-09 00:30:00", "approved"),
                      conversion("c2", "2026-02-09 10:00:00", "pending")]
    with effects.recorded() as events:
        res = _sync(scenario, key, sleeps)
    seen = [payload["sync_run_id"] for name, payload in events if name == "sync.finished"]

    assert t.called() == [*ENTITY_CALLS, "Report::getStats", "Report::getConversions"]
    assert res.state == "done" and seen == [res.sync_run_id]
    facts = _facts(scenario)
    display = facts[("elbe-display", date(2026, 2, 8))]
    assert (display.impressions, display.clicks, display.revenue, display.currency) == (1500, 15, Decimal("6.3"), "EUR")
    assert facts[("elbe-leads", date(2026, 2, 9))].conversions == 2
    with scenario.read() as s:
        assert s.get(Employee, "tracker-1").name == "Erika Muster"
        adv = s.get(Advertiser, "tracker-17")
        assert (adv.name, adv.legal_entity_id, adv.currency, adv.country, adv.source) == (
            "Autohaus Elbe KG", "northwind-media", "EUR", "DE", "tracker")
        assert s.get(Affiliate, "tracker-5").name == "Deal Portal"
        assert s.execute(select(ExternalId.our_id).where(ExternalId.kind == "advertiser", ExternalId.external_id == "18")
                         ).scalar_one() == "tracker-18"
        convs = {c.external_id: c for c in s.execute(select(Conversion)).scalars()}
        # 00:30 in Berlin is still the 9th; stored in UTC (23:30 on the 8th)
        assert convs["c1"].day == date(2026, 2, 9)
        assert convs["c1"].occurred_at == datetime(2026, 2, 8, 23, 30, tzinfo=UTC)
        assert (convs["c2"].status, convs["c2"].item_id, convs["c2"].affiliate_id) == ("pending", "elbe-leads",
                                                                                        "tracker-5")
        run = s.get(SyncRun, res.sync_run_id)
        assert run.lock_key is None and run.state == "done" and run.data_until == date(2026, 2, 9)
        actions = [a for (a,) in s.execute(select(AuditLog.action).order_by(AuditLog.id))]
        assert actions[-2:] == ["sync.started", "sync.finished"]
    assert res.counts["inserted"] == 1 + 2 + 1 + 2 + 2  # employee, advertisers, affiliate, facts, conversions
    assert res.watermark_after == "stats=2026-02-09;conv=2026-02-09 10:00:00"
    assert sync_log(scenario, res.sync_run_id)[-1].startswith(f"Sync #{res.sync_run_id} of tracker finished")


def test_partial_sync_pulls_stats_and_rechecks_pending_conversions(scenario: Database, key, source_env: FakeTracker,
                                                                   sleeps: Sleeps) -> None:
    t = source_env
    t.stats.append(stat("2026-02-08", "101"))
    t.conversions += [conversion("c1", "2026-02-08 12:00:00", "pending"),
                      conversion("c2", "2026-02-08 13:00:00", "approved")]
    _sync(scenario, key, sleeps)
    t.calls.clear()
    t.conversions[0]["status"] = "approved"  # the advertiser approved it meanwhile
    t.conversions.append(conversion("c3", "2026-02-09 08:00:00", "pending"))  # new: partial does not pull it
    t.stats.append(stat("2026-02-09", "101", impressions=7))

    res = _sync(scenario, key, sleeps, mode="partial", now=NOW + timedelta(hours=1))

    assert t.called() == ["Report::getStats", "Report::getConversions"]
    recheck = [c for c in t.calls if c.name == "Report::getConversions"][0]
    assert recheck.params["filters[Stat.id][values][]"] == ["c1"]
    with scenario.read() as s:
        assert {c.external_id: c.status for c in s.execute(select(Conversion)).scalars()} == {
            "c1": "approved", "c2": "approved"}
    assert res.by_kind["conversions"]["updated"] == 1
    assert res.by_kind["stats"] == {"inserted": 1, "updated": 0, "unchanged": 1, "quarantined": 0, "duplicates": 0,
                                    "ignored": 0}
    # nothing pending any more: the next partial sync only asks for stats
    t.calls.clear()
    _sync(scenario, key, sleeps, mode="partial", now=NOW + timedelta(hours=2))
    assert t.called() == ["Report::getStats"]


def test_paging_over_many_pages(scenario: Database, key, source_env: FakeTracker, sleeps: Sleeps) -> None:
    t = source_env
    days = [date(2026, 1, 12) + timedelta(days=i) for i in range(29)]
    for d in days:
        for aff in range(1, 9):  # 29 days × 2 offers × 8 affiliates = 464 rows → 47 pages of 10
            t.stats.append(stat(d.isoformat(), "101", str(aff), impressions=100 + aff))
            t.stats.append(stat(d.isoformat(), "102", str(aff), clicks=aff))
    res = _sync(scenario, key, sleeps, page_limit=10)
    pages = [c.page for c in t.calls if c.name == "Report::getStats"]
    assert pages == list(range(1, 48))
    facts = _facts(scenario)
    assert len(facts) == 58
    assert all(facts[("elbe-display", d)].impressions == sum(100 + a for a in range(1, 9)) for d in days)
    assert facts[("elbe-leads", days[0])].clicks == 36
    assert res.by_kind["stats"]["inserted"] == 58


def test_rate_limit_is_waited_out_with_retry_after(scenario: Database, key, source_env: FakeTracker,
                                                   sleeps: Sleeps) -> None:
    t = source_env
    t.stats += [stat("2026-02-08", "101"), stat("2026-02-09", "101")]
    t.fail("Report::getStats", page=2, status=429, retry_after="7", times=2)
    res = _sync(scenario, key, sleeps, page_limit=1)
    assert sleeps == [7.0, 7.0]
    statuses = [c.status for c in t.calls if c.name == "Report::getStats"]
    assert statuses == [200, 429, 429, 200]
    assert res.state == "done" and len(_facts(scenario)) == 2


def test_server_errors_back_off_and_recover(scenario: Database, key, source_env: FakeTracker, sleeps: Sleeps) -> None:
    source_env.stats.append(stat("2026-02-08", "101"))
    source_env.fail("Report::getStats", status=503, times=2)
    res = _sync(scenario, key, sleeps)
    assert sleeps == [0.01, 0.02]  # exponential backoff without Retry-After
    assert res.state == "done"


def test_slow_page_times_out_and_is_retried(scenario: Database, key, source_env: FakeTracker, sleeps: Sleeps) -> None:
    source_env.stats.append(stat("2026-02-08", "101"))
    source_env.fail("Report::getStats", page=1, delay=1.0)
    res = _sync(scenario, key, sleeps, timeout=0.2)
    assert res.state == "done" and len(sleeps) == 1
    assert len(_facts(scenario)) == 1


def test_500_mid_sync_keeps_the_watermark_and_a_rerun_completes(scenario: Database, key, source_env: FakeTracker,
                                                                sleeps: Sleeps) -> None:
    t = source_env
    t.stats.append(stat("2026-02-05", "101"))
    first = _sync(scenario, key, sleeps)
    assert _watermark(scenario) == first.watermark_after == "stats=2026-02-05"
    for d in ("2026-02-06", "2026-02-07", "2026-02-08", "2026-02-09"):
        t.stats.append(stat(d, "101"))
    t.fail("Report::getStats", page=3, status=500, times=4)  # every attempt at page 3 fails

    with pytest.raises(SourceError, match=r"Report::getStats page=3: HTTP 500 after 4 attempts"):
        _sync(scenario, key, sleeps, page_limit=1, now=NOW + timedelta(days=1))

    assert _watermark(scenario) == "stats=2026-02-05"
    with scenario.read() as s:
        failed = s.execute(select(SyncRun).order_by(SyncRun.id.desc())).scalars().first()
        assert (failed.state, failed.lock_key, failed.watermark_before) == ("failed", None, "stats=2026-02-05")
        assert "HTTP 500" in failed.error
        assert s.scalar(select(func.count()).select_from(DeliveryFact)) == 1  # nothing half-written
    assert "watermark unchanged" in sync_log(scenario, failed.id)[-1]
    status = sync_status(scenario, now=NOW + timedelta(days=1))
    row = next(r for r in status if r["source"] == "tracker")
    assert row["last_sync_run_id"] == first.sync_run_id and row["last_failure"]["sync_run_id"] == failed.id

    rerun = _sync(scenario, key, sleeps, page_limit=1, now=NOW + timedelta(days=1))
    assert rerun.state == "done" and rerun.watermark_before == "stats=2026-02-05"
    assert rerun.watermark_after == "stats=2026-02-09"
    assert rerun.by_kind["stats"] == {"inserted": 4, "updated": 0, "unchanged": 1, "quarantined": 0, "duplicates": 0,
                                      "ignored": 0}
    assert len(_facts(scenario)) == 5


def test_rerun_of_a_finished_sync_is_all_unchanged(scenario: Database, key, source_env: FakeTracker,
                                                   sleeps: Sleeps) -> None:
    t = source_env
    t.stats += [stat("2026-02-08", "101"), stat("2026-02-08", "102", conversions=3)]
    t.conversions += [conversion("c1", "2026-02-08 12:00:00"), conversion("c2", "2026-02-08 12:05:00")]
    first = _sync(scenario, key, sleeps)
    assert first.counts["inserted"] > 0
    again = _sync(scenario, key, sleeps, now=NOW + timedelta(minutes=5))
    assert again.counts["inserted"] == again.counts["updated"] == again.counts["quarantined"] == 0
    # everything comes again except c1: conversions are pulled from the watermark (c2's time) on
    assert again.counts["unchanged"] == first.counts["inserted"] - 1
    # a changed figure at the tracker is an update, the rest stays unchanged
    t.stats[0]["impressions"] = 999
    third = _sync(scenario, key, sleeps, now=NOW + timedelta(minutes=10))
    assert third.by_kind["stats"]["updated"] == 1 and third.by_kind["stats"]["unchanged"] == 1


def test_incremental_watermark_drives_the_requested_range(scenario: Database, key, source_env: FakeTracker,
                                                          sleeps: Sleeps) -> None:
    t = source_env
    t.stats.append(stat("2026-02-03", "101"))
    t.conversions.append(conversion("c1", "2026-02-03 18:00:00"))
    _sync(scenario, key, sleeps)
    first = [c for c in t.calls if c.name == "Report::getStats"][0]
    assert first.params["filters[Stat.date][values][]"] == ["2026-01-11", "2026-02-10"]  # lookback of 30 days
    t.calls.clear()
    _sync(scenario, key, sleeps, now=NOW + timedelta(days=1))
    stats_call = [c for c in t.calls if c.name == "Report::getStats"][0]
    conv_call = [c for c in t.calls if c.name == "Report::getConversions"][0]
    assert stats_call.params["filters[Stat.date][values][]"] == ["2026-02-03", "2026-02-11"]
    assert stats_call.params["data_start"] == ["2026-02-03"]
    assert conv_call.params["filters[Stat.datetime][values]"] == ["2026-02-03 18:00:00"]


def test_a_second_sync_of_the_same_source_is_refused(scenario: Database, key, source_env: FakeTracker,
                                                     sleeps: Sleeps) -> None:
    source_env.stats.append(stat("2026-02-08", "101"))
    source_env.fail("Employee::findAll", delay=1.0)  # keeps the first sync busy for a second
    errors: list[BaseException] = []

    def first() -> None:
        try:
            run_sync(scenario, source="tracker", mode="standard", actor="U01OPERATOR", signing_key=key,
                     connector=connector(sleeps, timeout=5.0))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    th = threading.Thread(target=first)
    th.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with scenario.read() as s:
                if s.execute(select(SyncRun).where(SyncRun.lock_key.is_not(None))).first():
                    break
            time.sleep(0.02)
        with pytest.raises(Conflict, match=r"a standard sync of tracker is already running \(sync #1, started by "
                                           r"U01OPERATOR"):
            run_sync(scenario, source="tracker", mode="partial", actor="U02OTHER", signing_key=key,
                     connector=connector(sleeps))
        status = {r["source"]: r for r in sync_status(scenario)}
        assert status["tracker"]["running"]["started_by"] == "U01OPERATOR"
    finally:
        th.join(timeout=10)
    assert not errors
    with scenario.read() as s:
        assert [r.state for r in s.execute(select(SyncRun).order_by(SyncRun.id)).scalars()] == ["done"]


def test_stale_lock_is_taken_over(scenario: Database, key, source_env: FakeTracker, sleeps: Sleeps) -> None:
    with scenario.transaction() as s:
        s.add(SyncRun(source="tracker", mode="standard", state="running", started_at=NOW - timedelta(hours=7),
                      started_by="crashed", counts={}, lock_key="source:tracker"))
    res = _sync(scenario, key, sleeps)
    assert res.state == "done"
    with scenario.read() as s:
        assert [r.state for r in s.execute(select(SyncRun).order_by(SyncRun.id)).scalars()] == ["failed", "done"]


def test_error_envelope_fails_the_sync_without_retrying(scenario: Database, key, source_env: FakeTracker,
                                                        sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLBOT_SOURCE_TRACKER_TOKEN", "wrong")
    with pytest.raises(SourceError, match="Invalid NetworkToken"):
        _sync(scenario, key, sleeps)
    assert sleeps == [] and len(source_env.calls) == 1
    with scenario.read() as s:
        assert s.execute(select(SyncRun.state)).scalar_one() == "failed"


def test_bad_tracker_rows_are_quarantined_with_page_and_row(scenario: Database, key, source_env: FakeTracker,
                                                            sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> None:
    t = source_env
    t.stats += [stat("2026-02-08", "101"), stat("2026-02-08", "999"), stat("2026-01-32", "101"),
                stat("2026-02-09", "101", clicks=-3)]
    t.conversions += [conversion("c1", "2026-02-08 12:00:00", currency="XXY"),
                      conversion("c2", "yesterday"), conversion("c3", "2026-02-08 12:00:00", status="weird")]
    monkeypatch.delenv("BILLBOT_SOURCE_TRACKER_LEGAL_ENTITY")
    res = _sync(scenario, key, sleeps, page_limit=2)
    with scenario.read() as s:
        rows = {(q.location, q.reason) for q in s.execute(select(QuarantineRow)).scalars()}
    stats_rows = {r for r in rows if r[0].startswith("Report::getStats")}
    # the fake sorts by date: page 1 = [2026-01-32, 2026-02-08/101], page 2 = [2026-02-08/999, 2026-02-09]
    assert stats_rows == {("Report::getStats page 1:1", "unparseable date '2026-01-32'"),
                          ("Report::getStats page 2:1", "unknown offer '999'"),
                          ("Report::getStats page 2:2", "negative clicks -3")}
    reasons = {r for _loc, r in rows}
    assert "unparseable date '2026-01-32'" in reasons
    assert "negative clicks -3" in reasons
    assert "unknown currency 'XXY'" in reasons
    assert "unparseable date 'yesterday'" in reasons
    assert any(r.startswith("unknown status 'weird'") for r in reasons)
    assert sum(1 for r in reasons if r.startswith("no legal entity")) == 1  # both advertisers, same reason
    assert res.counts["quarantined"] == 3 + 3 + 2
    assert len(_facts(scenario)) == 1
    # each keeps the row as the API gave it, as one line of JSON (written out only for the bad rows)
    with scenario.read() as s:
        raws = {q.location: q.raw for q in s.execute(select(QuarantineRow)).scalars()}
    assert json.loads(raws["Report::getStats page 2:1"])["offer_id"] == "999"
    assert all(isinstance(json.loads(raw), dict) and "\n" not in raw for raw in raws.values())
