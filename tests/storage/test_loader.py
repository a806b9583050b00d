"""The scenario loader: validated, atomic, idempotent — on both databases."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from billing.errors import Invalid
from bot.cli import app
from storage.db import Database
from storage.loader import load_scenario
from storage.models import (
    Advertiser,
    AuditLog,
    Base,
    CampaignItem,
    Conversion,
    DeliveryFact,
    ExchangeRate,
    ExternalId,
    LegalEntity,
    User,
)

# The contract lives in ../shared; a copy in tests/data keeps the suite runnable without it.
_SHARED = Path(__file__).resolve().parents[3] / "shared" / "scenarios" / "example.yaml"
EXAMPLE = _SHARED if _SHARED.exists() else Path(__file__).resolve().parents[1] / "data" / "example.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {t.name: s.execute(select(func.count()).select_from(t)).scalar_one() for t in Base.metadata.sorted_tables}


def test_round_trip_of_the_example_file(db: Database) -> None:
    res = load_scenario(db, EXAMPLE)
    assert res.inserted["advertisers"] == 2 and res.inserted["items"] == 3
    with db.read() as s:
        le = s.get(LegalEntity, "northwind-media")
        assert le is not None and le.start_of_week == 0 and le.invoice_series == "NW-{year}-{seq:05d}"
        elbe = s.get(Advertiser, "autohaus-elbe")
        assert elbe is not None and elbe.billing_threshold == Decimal("250.00") and elbe.locale == "de"
        item = s.get(CampaignItem, "lyon-display-cpm")
        assert item is not None and item.rate == Decimal("4.20") and item.tolerance == Decimal("0.10")
        assert item.booked_quantity == Decimal(500000)
        ext = s.execute(select(ExternalId).where(ExternalId.source == "gam")).scalar_one()
        assert (ext.kind, ext.external_id, ext.our_id) == ("item", "5550001", "lyon-display-cpm")
        fiona = s.get(User, "U03FINANCE")
        assert fiona is not None and fiona.role_names == {"approver", "finance_manager"}
        fact = s.execute(select(DeliveryFact).where(DeliveryFact.item_id == "lyon-display-cpm")).scalar_one()
        assert (fact.impressions, fact.clicks, fact.party) == (18000, 40, "first_party")
        convs = s.execute(select(Conversion).where(Conversion.item_id == "elbe-winter-testdrives")).scalars().all()
        assert len(convs) == 3 and {c.status for c in convs} == {"approved"}
        rate = s.execute(select(ExchangeRate)).scalar_one()
        assert rate.rate == Decimal("1.0812") and rate.quote == "USD"


def test_reloading_the_same_file_changes_nothing(db: Database) -> None:
    load_scenario(db, EXAMPLE)
    before = counts(db)
    res = load_scenario(db, EXAMPLE)
    assert not res.changed
    assert counts(db) == before


def test_a_changed_file_updates_by_id(db: Database) -> None:
    load_scenario(db, EXAMPLE)
    data = example()
    data["advertisers"][0]["billing_threshold"] = "300.00"
    data["users"][2]["roles"] = ["approver"]
    data["delivery"][1]["conversions"] = 1
    res = load_scenario(db, data)
    assert res.updated == {"advertisers": 1, "users": 1, "delivery": 1, "conversions": 2}
    with db.read() as s:
        assert s.get(Advertiser, "autohaus-elbe").billing_threshold == Decimal("300.00")  # type: ignore[union-attr]
        assert s.get(User, "U03FINANCE").role_names == {"approver"}  # type: ignore[union-attr]
        assert s.execute(select(func.count()).select_from(Conversion)).scalar_one() == 1


def test_a_bad_file_names_every_bad_field_and_writes_nothing(db: Database) -> None:
    data = example()
    data["campaigns"][0]["items"][1]["rate"] = "abc"
    data["campaigns"][1]["items"][0]["rate_type"] = "cpx"
    data["advertisers"][1]["currency"] = "EURO"
    data["advertisers"][0]["billing_threshold"] = 250.0
    data["legal_entities"][0]["start_of_week"] = "someday"
    data["campaigns"][0]["colour"] = "red"
    with pytest.raises(Invalid) as e:
        load_scenario(db, data)
    problems = "\n".join(e.value.problems)
    assert "campaigns[0].items[1].rate: not an amount: 'abc'" in problems
    assert "campaigns[1].items[0].rate_type: Input should be 'cpm', 'cpc', 'cpa', 'cpl' or 'flat'" in problems
    assert "advertisers[1].currency: unknown currency 'EURO'" in problems
    assert "advertisers[0].billing_threshold: write money as a string" in problems
    assert "legal_entities[0].start_of_week: Input should be 'monday'" in problems
    assert "campaigns[0].colour: unknown field" in problems
    assert counts(db)["advertisers"] == 0


def test_broken_references_are_named_and_nothing_is_written(db: Database) -> None:
    data = example()
    data["campaigns"][1]["advertiser"] = "nobody"
    data["delivery"][0]["item"] = "no-such-item"
    data["advertisers"][0]["vat_id"] = "DE123456789"
    with pytest.raises(Invalid) as e:
        load_scenario(db, data)
    assert e.value.problems == [
        "advertisers[0].vat_id: 'DE123456789' is not a valid VAT id",
    ] or set(e.value.problems) == {
        "campaigns[1].advertiser: unknown advertiser 'nobody'",
        "delivery[0].item: unknown campaign item 'no-such-item'",
        "advertisers[0].vat_id: 'DE123456789' is not a valid VAT id",
    }
    assert all(v == 0 for k, v in counts(db).items() if k != "audit_head")


def test_a_failure_midway_rolls_everything_back(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.loader as loader

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(loader, "_load_rates", boom)
    with pytest.raises(RuntimeError):
        load_scenario(db, EXAMPLE)
    assert counts(db)["advertisers"] == 0


def test_cli_load_exit_codes_and_audit(db: Database, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["load", str(EXAMPLE), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["inserted"]["advertisers"] == 2
    again = runner.invoke(app, ["load", str(EXAMPLE)])
    assert "nothing changed" in again.stdout
    with db.read() as s:
        # the deployment key's first record registers it (issue 14), then the one load
        assert [a.action for a in s.execute(select(AuditLog)).scalars()] == ["key.registered", "scenario.loaded"]
    bad = copy.deepcopy(example())
    bad["exchange_rates"][0]["rate"] = "-1"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    res = runner.invoke(app, ["load", str(path)])
    assert res.exit_code == 2
    assert "exchange_rates[0].rate: must be positive" in res.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("advertisers: [\n")
    res = runner.invoke(app, ["load", str(broken)])
    assert res.exit_code == 2 and "not valid YAML" in res.stderr
    assert runner.invoke(app, ["load", str(tmp_path / "missing.yaml")]).exit_code == 2


def test_demo_size_1124_lists_1124_advertisers(db: Database) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--size", "1124", "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(runner.invoke(app, ["advertisers", "list", "--json"]).stdout)
    assert len(listed) == 1124
    assert {"id", "name", "legal_entity", "currency", "billing_threshold"} <= set(listed[0])
    assert {a["currency"] for a in listed} >= {"EUR", "CHF", "PLN"}


def test_demo_is_deterministic_and_seeded() -> None:
    from storage.demo import build_demo

    assert build_demo(size=20, seed=3) == build_demo(size=20, seed=3)
    assert build_demo(size=20, seed=3) != build_demo(size=20, seed=4)
    assert len(build_demo(size=37)["advertisers"]) == 37


def test_structured_addresses_and_seller_details_load_and_an_old_one_line_address_is_parsed(db: Database) -> None:
    """Issue 15 item 5: the example's structured address and legal details land as given; a one-line
    address of an older file is parsed into street, postcode and city."""
    from storage.models import Advertiser, LegalEntity

    load_scenario(db, Path(__file__).resolve().parents[1] / "data" / "example.yaml")
    with db.read() as s:
        le = s.get(LegalEntity, "northwind-media")
        assert le is not None
        assert (le.street, le.postcode, le.city, le.register_court, le.register_number, le.bic, le.bank_name) == (
            "Hafenstrasse 1", "20457", "Hamburg", "Amtsgericht Hamburg", "HRB 123456", "COBADEFFXXX", "Commerzbank")
        assert le.managing_directors == "Nora Nordmann\nJonas Weber"
        elbe, lyon = s.get(Advertiser, "autohaus-elbe"), s.get(Advertiser, "garage-lyon")
        assert elbe is not None and lyon is not None
        assert (elbe.postcode, elbe.city, elbe.customer_number) == ("22763", "Hamburg", "K-10042")
        assert (lyon.street, lyon.postcode, lyon.city) == ("12 Quai Perrache", "69002", "Lyon")


def test_a_bad_bic_iban_or_country_is_named_by_its_path(db: Database) -> None:
    data = {"legal_entities": [{"id": "nw", "name": "NW", "country": "DE", "currency": "EUR",
                                "bic": "NOTABIC", "iban": "DE00123"}],
            "advertisers": [{"id": "a", "name": "A", "legal_entity": "nw", "currency": "EUR", "country": "XY"}]}
    with pytest.raises(Invalid) as e:
        load_scenario(db, data)
    text = "\n".join(e.value.problems)
    assert "legal_entities[0].bic: 'NOTABIC' is not a valid BIC" in text
    assert "legal_entities[0].iban: 'DE00123' is not a valid IBAN" in text
    assert "advertisers[0].country: 'XY' is not an ISO 3166-1 alpha-2 country code" in text
