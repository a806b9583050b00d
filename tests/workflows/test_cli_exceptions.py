"""`billbot exceptions list` and `billbot exceptions show`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import bot.cli.exceptions_cmds  # noqa: F401  (registers the commands)
from bot.cli.groups import app
from tests.workflows.test_variance_checks import check, setup_under_delivery

runner = CliRunner()


def test_list_json_has_the_contract_fields(db, key) -> None:  # type: ignore[no-untyped-def]
    pid = setup_under_delivery(db)
    (eid,) = check(db, key, [pid]).opened
    res = runner.invoke(app, ["exceptions", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 1
    r = rows[0]
    assert {k: r[k] for k in ("id", "kind", "state", "advertiser", "preinvoice", "amount", "currency", "cause")} == {
        "id": eid, "kind": "variance", "state": "pending", "advertiser": "elbe", "preinvoice": pid,
        "amount": "224.00", "currency": "EUR", "cause": "under_delivery"}
    assert r["due_at"] == "2026-03-03T09:00:00+00:00"
    for args, n in ((["--state", "pending"], 1), (["--state", "open"], 1), (["--state", "closed"], 0),
                    (["--kind", "below_threshold"], 0), (["--kind", "variance"], 1)):
        res = runner.invoke(app, ["exceptions", "list", *args, "--json"])
        assert res.exit_code == 0 and len(json.loads(res.stdout)) == n, args
    res = runner.invoke(app, ["exceptions", "list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "Autohaus Elbe KG" in res.stdout and "224.00 EUR" in res.stdout


def test_list_table_shows_times_in_billbot_timezone_and_json_keeps_the_offset(db, key, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BILLBOT_TIMEZONE", "Europe/Berlin")
    pid = setup_under_delivery(db)
    check(db, key, [pid])
    res = runner.invoke(app, ["exceptions", "list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "2026-03-03 10:00 CET" in res.stdout and "UTC" not in res.stdout
    assert json.loads(runner.invoke(app, ["exceptions", "list", "--json"]).stdout)[0]["due_at"] == \
        "2026-03-03T09:00:00+00:00"


def test_list_rejects_an_unknown_state(db) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["exceptions", "list", "--state", "waiting", "--json"])
    assert res.exit_code == 2
    assert "unknown state 'waiting'" in res.stderr


def test_show_prints_the_evidence(db, key) -> None:  # type: ignore[no-untyped-def]
    pid = setup_under_delivery(db)
    (eid,) = check(db, key, [pid]).opened
    res = runner.invoke(app, ["exceptions", "show", str(eid), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["evidence"]["rule"] == "delivered_vs_booked"
    assert data["evidence"]["booked_amount"] == "1120.00" and data["evidence"]["computed_amount"] == "896.00"
    assert data["subject_hash"]
    res = runner.invoke(app, ["exceptions", "show", str(eid)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("delivered_vs_booked → under_delivery", "224000", "280000", "0.1 (default)",
                 "1120.00 EUR", "896.00 EUR", "2026-02-01"):
        assert text in res.stdout, text


def test_show_unknown_exception_exits_2(db) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["exceptions", "show", "4242"])
    assert res.exit_code == 2
    assert "exception 4242 does not exist" in res.stderr
