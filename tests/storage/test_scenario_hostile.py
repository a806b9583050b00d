"""Careless scenario files are refused with exit 2 and a message naming the place (issue 16 item 6):
negative rates, amounts and quantities; impossible dates; keys given twice; number templates that
would allocate gigabytes. Nothing is written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from billing.errors import Invalid
from billing.numbering import check_template, format_number
from bot.cli import app
from storage.db import Database
from storage.loader import load_scenario
from storage.models import Advertiser, Campaign, LegalEntity
from tests.storage.test_loader import EXAMPLE

runner = CliRunner()

BASE = """\
legal_entities:
  - id: northwind
    name: Northwind Media GmbH
    country: DE
    currency: EUR
    invoice_series: "{series}"
advertisers:
  - id: nord
    name: Autohaus Nord
    legal_entity: northwind
    currency: EUR
    country: DE
    billing_threshold: "{threshold}"
campaigns:
  - id: c1
    advertiser: nord
    name: Winter
    start: {start}
    end: 2026-12-31
    items:
      - id: i1
        description: Display
        billing: delivery
        rate_type: cpc
        rate: "{rate}"
        booked_quantity: "{quantity}"
      - id: i2
        description: Flat
        amount: "{amount}"
"""
GOOD = {"series": "INV-{year}-{seq:06d}", "threshold": "250.00", "start": "2026-01-01", "rate": "0.40",
        "quantity": "1000", "amount": "1000.00"}


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "scenario.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _count(db: Database) -> int:
    with db.read() as s:
        return sum(int(s.scalar(select(func.count()).select_from(m)) or 0) for m in (LegalEntity, Advertiser, Campaign))


def test_the_good_file_loads(db: Database, tmp_path: Path) -> None:
    r = runner.invoke(app, ["load", str(_write(tmp_path, BASE.format(**GOOD)))])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(("field", "value", "named"), [
    ("rate", "-0.40", "campaigns[0].items[0].rate: must not be negative"),
    ("quantity", "-1000", "campaigns[0].items[0].booked_quantity: must not be negative"),
    ("amount", "-1000.00", "campaigns[0].items[1].amount: must not be negative"),
    ("threshold", "-1.00", "advertisers[0].billing_threshold: must not be negative"),
    ("start", "2026-13-01", "campaigns[0].start:"),
    ("start", "2026-02-30", "campaigns[0].start:"),
    ("series", "INV-{seq:0999999999d}", "legal_entities[0].invoice_series:"),
    ("series", "INV-{seq:013d}", "at most 12 digits"),
    ("series", "INV-{seq!r}", "legal_entities[0].invoice_series:"),
])
def test_a_bad_value_is_named_with_exit_2_and_nothing_written(db: Database, tmp_path: Path, field: str, value: str,
                                                               named: str) -> None:
    before = _count(db)
    started = time.monotonic()
    r = runner.invoke(app, ["load", str(_write(tmp_path, BASE.format(**{**GOOD, field: value})))])
    assert time.monotonic() - started < 10  # no gigabyte was allocated on the way
    assert r.exit_code == 2, r.output
    assert named in r.output and "Traceback" not in r.output
    assert _count(db) == before


def test_a_key_given_twice_is_refused_naming_both_lines(db: Database, tmp_path: Path) -> None:
    text = BASE.format(**GOOD) + "advertisers:\n  - id: other\n"  # a second `advertisers:` section at line 30
    r = runner.invoke(app, ["load", str(_write(tmp_path, text))])
    assert r.exit_code == 2, r.output
    assert "duplicate key 'advertisers' (lines 7 and 30)" in r.output
    nested = BASE.format(**GOOD).replace("    name: Winter\n", "    name: Winter\n    name: Summer\n")
    r = runner.invoke(app, ["load", str(_write(tmp_path, nested))])
    assert r.exit_code == 2 and "duplicate key 'name'" in r.output
    assert _count(db) == 0


def test_the_example_file_still_loads(db: Database) -> None:
    load_scenario(db, EXAMPLE, actor="test")
    assert _count(db) > 0
    assert yaml.safe_load(EXAMPLE.read_text())  # the contract file itself has no duplicate keys either


def test_number_templates_are_bounded() -> None:
    assert format_number("INV-{year}-{seq:06d}", year=2026, seq=7) == "INV-2026-000007"
    assert format_number("R{seq}", year=2026, seq=7) == "R7"
    assert format_number("R{seq:012d}", year=2026, seq=7) == "R000000000007"
    for bad in ("R{seq:0999999999d}", "R{seq:>40}", "R{seq:013d}", "R{seq!s}", "R" * 70 + "{seq}"):
        with pytest.raises(Invalid):
            check_template(bad)
