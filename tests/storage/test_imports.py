"""Ad-server report and server-log imports: mapping through the crosswalk, dedupe, quarantine of every
kind of bad row, idempotent reruns, and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import select
from typer.testing import CliRunner

from billing.errors import Invalid
from bot.cli import app
from bot.workflows.sync import import_logs, import_report, quarantine_list, sync_status
from storage.db import Database
from storage.models import Conversion, DeliveryFact, SourceState, SyncRun
from storage.sources.server_logs import LogRule
from tests import factories as f
from tests.storage.conftest import NOW

API_CSV = """\
Dimension.DATE,Dimension.LINE_ITEM_ID,DimensionAttribute.LINE_ITEM_NAME,Column.AD_SERVER_IMPRESSIONS,Column.AD_SERVER_CLICKS,Column.AD_SERVER_CPM_AND_CPC_REVENUE
2026-02-01,5550001,Display Feb,18000,40,75600000
2026-02-02,5550001,Display Feb,17000,35,71400000
2026-02-02,5550002,Leads Feb,1200,80,5040000
"""

UI_CSV = """\
Date,Line item,Line item ID,Ad server impressions,Ad server clicks,Ad server CPM and CPC revenue
2026-02-01,Display Feb,5550001,"17,500",39,€73.50
"Feb 2, 2026",Display Feb,5550001,"16,900",35,€70.98

Total,,,"34,400",74,€144.48
"""

BAD_CSV = """\
Date,Line item ID,Ad server impressions,Ad server clicks,Ad server CPM and CPC revenue,Currency code
2026-02-01,5550001,1000,5,4.20,EUR
2026-13-45,5550001,1000,5,4.20,EUR
2026-02-03,5550001,-200,5,4.20,EUR
2026-02-04,5550001,1000,5,4.20,XYZ
2026-02-05,9999999,1000,5,4.20,EUR
2026-02-06,5550001,lots,5,4.20,EUR
2026-02-07,5550001,1000,5,4.2.0,EUR
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _facts(db: Database, source: str = "gam") -> dict[tuple[str, date, str], DeliveryFact]:
    with db.read() as s:
        q = select(DeliveryFact).where(DeliveryFact.source == source)
        return {(f.item_id, f.day, f.party): f for f in s.execute(q).scalars()}


def test_api_csv_dump_maps_line_items_and_revenue_micros(scenario: Database, key, tmp_path: Path) -> None:
    path = _write(tmp_path, "gam-api.csv", API_CSV)
    res = import_report(scenario, path=path, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (res.counts["inserted"], res.counts["quarantined"]) == (3, 0)
    facts = _facts(scenario)
    f = facts[("elbe-display", date(2026, 2, 1), "first_party")]
    assert (f.impressions, f.clicks, f.revenue) == (18000, 40, Decimal("75.6"))
    assert facts[("elbe-leads", date(2026, 2, 2), "first_party")].revenue == Decimal("5.04")
    with scenario.read() as s:
        run = s.get(SyncRun, res.sync_run_id)
        assert (run.mode, run.file_name, run.state, run.data_until) == ("report", "gam-api.csv", "done", date(2026, 2, 2))
        assert len(run.file_sha256) == 64
        assert s.get(SourceState, "gam").data_until == date(2026, 2, 2)
    again = import_report(scenario, path=path, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert again.counts == {"inserted": 0, "updated": 0, "unchanged": 3, "quarantined": 0, "duplicates": 0,
                            "ignored": 0}


def test_ui_export_with_separators_and_total_row_as_third_party(scenario: Database, key, tmp_path: Path) -> None:
    path = _write(tmp_path, "gam-ui.csv", UI_CSV)
    res = import_report(scenario, path=path, source="gam", third_party=True, actor="U01OPERATOR", signing_key=key,
                        now=NOW)
    assert (res.counts["inserted"], res.counts["ignored"], res.counts["quarantined"]) == (2, 1, 0)
    facts = _facts(scenario)
    assert set(facts) == {("elbe-display", date(2026, 2, 1), "third_party"),
                          ("elbe-display", date(2026, 2, 2), "third_party")}
    f = facts[("elbe-display", date(2026, 2, 2), "third_party")]
    assert (f.impressions, f.revenue) == (16900, Decimal("70.98"))


def test_xlsx_ui_export_below_a_title_block(scenario: Database, key, tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["Delivery report — Northwind Media"])
    ws.append(["Date range: Feb 1, 2026 - Feb 2, 2026"])
    ws.append([])
    ws.append(["Date", "Line item ID", "Ad server impressions", "Ad server clicks", "Ad server CPM and CPC revenue"])
    ws.append([datetime(2026, 2, 1), 5550001, 18000, 40, 75.6])
    ws.append(["2026-02-02", "5550002", 1200, 80, 5.04])
    ws.append(["not a date", "5550002", 1, 1, 1])
    path = tmp_path / "gam.xlsx"
    wb.save(path)
    res = import_report(scenario, path=path, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (res.counts["inserted"], res.counts["quarantined"]) == (2, 1)
    assert _facts(scenario)[("elbe-display", date(2026, 2, 1), "first_party")].revenue == Decimal("75.6")
    assert [(q["location"], q["reason"]) for q in quarantine_list(scenario, source="gam")] == [
        ("gam.xlsx:7", "unparseable date 'not a date'")]


def test_every_kind_of_bad_report_row_is_quarantined(scenario: Database, key, tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv", BAD_CSV)
    res = import_report(scenario, path=path, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (res.counts["inserted"], res.counts["quarantined"]) == (1, 6)
    got = {(q["location"], q["reason"], q["raw"]) for q in quarantine_list(scenario, source="gam")}
    assert got == {
        ("bad.csv:3", "unparseable date '2026-13-45'", "2026-13-45,5550001,1000,5,4.20,EUR"),
        ("bad.csv:4", "negative impressions -200", "2026-02-03,5550001,-200,5,4.20,EUR"),
        ("bad.csv:5", "unknown currency 'XYZ'", "2026-02-04,5550001,1000,5,4.20,XYZ"),
        ("bad.csv:6", "unknown line item '9999999'", "2026-02-05,9999999,1000,5,4.20,EUR"),
        ("bad.csv:7", "not a whole number: impressions 'lots'", "2026-02-06,5550001,lots,5,4.20,EUR"),
        ("bad.csv:8", "not an amount: revenue '4.2.0'", "2026-02-07,5550001,1000,5,4.2.0,EUR"),
    }
    # re-running the same file changes nothing: no new facts, no second copy of the quarantine
    again = import_report(scenario, path=path, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (again.counts["unchanged"], again.counts["inserted"], again.counts["quarantined"]) == (1, 0, 6)
    assert len(quarantine_list(scenario, source="gam")) == 6


def test_a_file_that_is_no_report_is_refused(scenario: Database, key, tmp_path: Path) -> None:
    path = _write(tmp_path, "other.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(Invalid, match="no Google Ad Manager header"):
        import_report(scenario, path=path, source="gam", actor="U01OPERATOR", signing_key=key)
    with scenario.read() as s:
        assert s.execute(select(SyncRun)).first() is None


COMBINED_LOG = """\
203.0.113.7 - - [03/Feb/2026:10:15:32 +0100] "POST /test-drive/bookings?campaign=elbe&booking_id=B-1001 HTTP/1.1" 201 512 "https://elbe.example/probefahrt" "Mozilla/5.0"
203.0.113.7 - - [03/Feb/2026:10:15:33 +0100] "POST /test-drive/bookings?campaign=elbe&booking_id=B-1001 HTTP/1.1" 201 512 "https://elbe.example/probefahrt" "Mozilla/5.0"
198.51.100.4 - - [03/Feb/2026:23:59:59 +0100] "POST /test-drive/bookings?campaign=elbe&booking_id=B-1002 HTTP/1.1" 200 87 "-" "curl/8.0"
198.51.100.4 - - [04/Feb/2026:00:30:00 +0100] "GET /test-drive/bookings?campaign=elbe HTTP/1.1" 200 1024 "-" "curl/8.0"
198.51.100.4 - - [04/Feb/2026:00:31:00 +0100] "POST /test-drive/bookings?campaign=elbe&booking_id=B-1003 HTTP/1.1" 500 17 "-" "curl/8.0"
198.51.100.9 - - [04/Feb/2026:09:00:00 +0100] "POST /test-drive/bookings?campaign=unknown-dealer&booking_id=B-2001 HTTP/1.1" 201 12 "-" "-"
198.51.100.9 - - [99/Xyz/2026:09:00:00 +0100] "POST /test-drive/bookings?campaign=elbe&booking_id=B-2002 HTTP/1.1" 201 12 "-" "-"
198.51.100.9 - - [04/Feb/2026:09:05:00 +0100] "POST /test-drive/bookings?campaign=elbe HTTP/1.1" 201 12 "-" "-"
this is not a log line
"""


def test_combined_log_events_dedupe_and_quarantine(scenario: Database, key, tmp_path: Path) -> None:
    path = _write(tmp_path, "access.log", COMBINED_LOG)
    res = import_logs(scenario, path=path, source="dealer-logs", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert res.counts == {"inserted": 2, "updated": 0, "unchanged": 0, "quarantined": 4, "duplicates": 1,
                          "ignored": 2}
    with scenario.read() as s:
        events = {c.external_id: c for c in s.execute(select(Conversion)).scalars()}
    assert set(events) == {"B-1001", "B-1002"}
    e = events["B-1002"]
    assert (e.kind, e.status, e.item_id, e.day) == ("event", "approved", "elbe-leads", date(2026, 2, 3))
    assert e.occurred_at == datetime(2026, 2, 3, 22, 59, 59, tzinfo=UTC)
    assert {(q["location"], q["reason"]) for q in quarantine_list(scenario, source="dealer-logs")} == {
        ("access.log:6", "unknown campaign 'unknown-dealer'"),
        ("access.log:7", "unparseable date '99/Xyz/2026:09:00:00 +0100'"),
        ("access.log:8", "no event id"),
        ("access.log:9", "unparseable log line (neither combined log format nor JSON)"),
    }
    again = import_logs(scenario, path=path, source="dealer-logs", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (again.counts["inserted"], again.counts["updated"], again.counts["unchanged"]) == (0, 0, 2)


def test_a_booking_repeated_in_a_later_log_counts_once(scenario: Database, key, tmp_path: Path) -> None:
    first = _write(tmp_path, "day1.log", COMBINED_LOG.splitlines()[0] + "\n")
    later = _write(tmp_path, "day2.log", COMBINED_LOG.splitlines()[1].replace("10:15:33", "11:00:00") + "\n")
    import_logs(scenario, path=first, source="dealer-logs", actor="U01OPERATOR", signing_key=key, now=NOW)
    res = import_logs(scenario, path=later, source="dealer-logs", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (res.counts["inserted"], res.counts["unchanged"]) == (0, 1)
    with scenario.read() as s:
        (e,) = s.execute(select(Conversion)).scalars()
    assert e.occurred_at == datetime(2026, 2, 3, 9, 15, 32, tzinfo=UTC)  # the first booking's time stays


def test_json_lines_with_a_custom_rule(scenario: Database, key, tmp_path: Path) -> None:
    lines = [
        {"ts": "2026-02-05T08:00:00Z", "method": "POST", "path": "/api/v2/dealers/elbe/bookings", "status": 201,
         "body": {"dealer": "elbe", "booking": {"id": "X1"}}},
        {"ts": "2026-02-05T08:01:00Z", "method": "POST", "path": "/api/v2/dealers/elbe/bookings", "status": 201,
         "body": {"dealer": "elbe", "booking": {"id": "X1"}}},
        {"ts": "2026-02-05T08:02:00Z", "method": "POST", "path": "/api/v2/dealers/elbe/bookings", "status": 422,
         "body": {"dealer": "elbe", "booking": {"id": "X2"}}},
        {"ts": "2026-02-05T08:03:00Z", "method": "POST", "path": "/api/v2/health", "status": 200},
    ]
    path = _write(tmp_path, "app.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n{broken json\n")
    rule = LogRule(method="POST", path=None, path_regex=r"^/api/v2/dealers/[^/]+/bookings$", campaign="dealer",
                   event_id="booking.id")
    res = import_logs(scenario, path=path, source="dealer-logs", rule=rule, actor="U01OPERATOR", signing_key=key,
                      now=NOW)
    assert (res.counts["inserted"], res.counts["duplicates"], res.counts["ignored"], res.counts["quarantined"]) == (
        1, 1, 2, 1)


def test_cli_imports_status_and_quarantine(scenario: Database, key, tmp_path: Path) -> None:
    f.add_user(scenario, f.OPERATOR, ["operator"])  # the CLI acts as a known operator (BILLBOT_USER)
    runner = CliRunner()
    report = _write(tmp_path, "bad.csv", BAD_CSV)
    out = runner.invoke(app, ["import", "report", str(report), "--source", "gam", "--json"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert (body["source"], body["inserted"], body["quarantined"]) == ("gam", 1, 6)

    rule = _write(tmp_path, "rule.yaml", "method: POST\npath: /test-drive/bookings\nstatus: [200, 201]\n")
    log = _write(tmp_path, "access.log", COMBINED_LOG)
    out = runner.invoke(app, ["import", "logs", str(log), "--source", "dealer-logs", "--rule", str(rule), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["inserted"] == 2

    out = runner.invoke(app, ["quarantine", "list", "--source", "gam", "--json"])
    rows = json.loads(out.stdout)
    assert len(rows) == 6 and {"source", "location", "reason", "raw"} <= set(rows[0])

    out = runner.invoke(app, ["sync", "status", "--json"])
    status = {r["source"]: r for r in json.loads(out.stdout)}
    # freshness follows the rows that were stored: a quarantined row (a typo'd 2099, a broken line) never
    # moves "data until" (issue 16; it used to count every parsed day)
    assert status["gam"]["data_until"] == "2026-02-01"
    assert status["dealer-logs"]["data_until"] == "2026-02-04"
    assert status["gam"]["running"] is None and status["gam"]["last_mode"] == "report"

    bad_rule = _write(tmp_path, "bad-rule.yaml", "methd: POST\n")
    out = runner.invoke(app, ["import", "logs", str(log), "--source", "dealer-logs", "--rule", str(bad_rule)])
    assert out.exit_code == 2 and "methd" in out.stderr

    out = runner.invoke(app, ["sync", "standard", "--json"])
    assert out.exit_code == 2 and "no tracker source configured" in out.stderr


def test_status_reports_age_of_data(scenario: Database, key, tmp_path: Path) -> None:
    import_report(scenario, path=_write(tmp_path, "gam-api.csv", API_CSV), source="gam", actor="U01OPERATOR",
                  signing_key=key, now=NOW)
    (row,) = [r for r in sync_status(scenario, now=NOW.replace(hour=12)) if r["source"] == "gam"]
    assert row["age_seconds"] == 3 * 3600 and row["data_age_days"] == 8 and row["counts"]["inserted"] == 3
