"""Invoice terms (issue 19, item 3): September services billed on 1 December are dated by the legal
entity's rule (or the advertiser's override, or an explicit --issue-date), and fall due by its due-date rule."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
import time_machine
from typer.testing import CliRunner

from billing.errors import Invalid
from billing.terms import due_date, invoice_date
from bot.cli import app
from bot.workflows.billing_run import run_billing
from bot.workflows.invoices import list_invoices
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from tests.factories import OPERATOR, add_user, advertiser, campaign, entity, linear, load, scenario

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
RUN_DAY = date(2026, 12, 1)


@pytest.mark.parametrize(("rule", "expected"), [
    ("run_day", date(2026, 12, 1)), ("service_end", date(2026, 9, 30)), ("day_after_service", date(2026, 10, 1)),
])
def test_each_issue_date_rule(rule: str, expected: date) -> None:
    assert invoice_date(rule, run_day=RUN_DAY, service_end=date(2026, 9, 30)) == expected


def test_the_issue_date_is_never_after_the_run_day_and_rules_are_named() -> None:
    assert invoice_date("day_after_service", run_day=date(2026, 9, 30), service_end=date(2026, 9, 30)) == \
        date(2026, 9, 30)
    assert invoice_date("service_end", run_day=RUN_DAY, service_end=None) == RUN_DAY
    with pytest.raises(Invalid, match="unknown invoice date rule 'monthly'"):
        invoice_date("monthly", run_day=RUN_DAY, service_end=None)
    assert due_date("net", issue=date(2026, 9, 30), terms_days=30) == date(2026, 10, 30)
    assert due_date("end_of_month", issue=date(2026, 2, 10), terms_days=30) == date(2026, 3, 30)
    with pytest.raises(Invalid, match="unknown due date rule"):
        due_date("eom", issue=RUN_DAY, terms_days=1)


@pytest.fixture
def september(db: Database, key: Any) -> None:
    """Three advertisers with September services: the entity dates by the service end, one advertiser
    overrides it with the day after and end-of-month due dates, one keeps the run day."""
    add_user(db, OPERATOR, ["operator"])
    load(db, scenario(
        entities=[{**entity(), "invoice_date": "service_end"}],
        advertisers=[advertiser("elbe", terms=14),
                     {**advertiser("alster", terms=30), "invoice_date": "day_after_service", "due_date": "end_of_month"},
                     {**advertiser("wandsbek"), "invoice_date": "run_day"}],
        campaigns=[campaign(f"c-{a}", a, [linear(f"x-{a}", "900.00")], start="2026-09-01", end="2026-09-30")
                   for a in ("elbe", "alster", "wandsbek")]))
    create_preinvoices(db, period="2026-09", actor="t", key=key, now=NOW)


def test_a_run_dates_each_invoice_by_its_rule(db: Database, key: Any, september: None) -> None:
    run = run_billing(db, period="2026-09", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    assert len(run.created) == 3
    got = {v.advertiser_id: (v.issue_date, v.due_date) for v in list_invoices(db)}
    assert got == {"elbe": (date(2026, 9, 30), date(2026, 10, 14)),
                   "alster": (date(2026, 10, 1), date(2026, 11, 30)),
                   "wandsbek": (RUN_DAY, date(2026, 12, 15))}


def test_an_explicit_issue_date_wins_and_may_not_be_in_the_future(db: Database, key: Any, september: None) -> None:
    with pytest.raises(Invalid, match="after the run day"):
        run_billing(db, period="2026-09", actor=OPERATOR, key=key, today=RUN_DAY, issue_date=date(2026, 12, 2))
    with time_machine.travel(NOW, tick=False):  # the CLI's run day is today
        r = CliRunner().invoke(app, ["run", "--period", "2026-09", "--issue-date", "2026-10-31", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["created"]) == 3
    assert {v.issue_date for v in list_invoices(db)} == {date(2026, 10, 31)}
    bad = CliRunner().invoke(app, ["run", "--period", "2026-09", "--issue-date", "31.10.2026"])
    assert bad.exit_code == 2 and "is not a date" in bad.output
