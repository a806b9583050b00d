"""Issue 14, maker-checker on master data: ``billbot load`` changing a rate, threshold or payment terms of
existing records opens a change set that waits for someone other than its author; new records and
fields that move no money apply at once."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bot.cli import app
from storage.db import Database
from storage.models import Advertiser, AuditLog, CampaignItem, ChangeSet
from tests.factories import APPROVER, add_user, advertiser, campaign, delivery, linear, scenario

runner = CliRunner()
AUTHOR = "U07MAKER"  # operator AND approver: may load, may approve others' change sets — not their own


def _write(tmp_path: Path, data: dict[str, Any], name: str) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return p


def _data(*, rate: str = "4.00", threshold: str = "250.00", terms: int = 14, description: str = "Display",
          extra: bool = False) -> dict[str, Any]:
    items = [delivery("disp", "cpm", rate, description=description), linear("flat", "1200.00")]
    if extra:
        items.append(linear("new-item", "300.00"))
    return scenario(advertisers=[{**advertiser("nord", "Autohaus Nord", threshold=threshold), "payment_terms_days": terms}],
                    campaigns=[campaign("cn", "nord", items)])


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def people(db: Database) -> None:
    add_user(db, AUTHOR, ["operator", "approver"])
    add_user(db, APPROVER, ["approver"])


def test_a_rate_change_waits_until_another_person_approves_it(db: Database, key: Any, tmp_path: Path,
                                                               people: None) -> None:
    assert _run("load", str(_write(tmp_path, _data(), "v1.yaml")), "--as", AUTHOR).exit_code == 0
    v2 = _write(tmp_path, _data(rate="5.50", threshold="500.00", terms=30, description="Display banners",
                                extra=True), "v2.yaml")
    r = _run("load", str(v2), "--as", AUTHOR, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    cs_id = out["change_set"]
    assert {(h["kind"], h["id"], h["field"], h["before"], h["after"]) for h in out["held"]} == {
        ("items", "disp", "rate", "4", "5.5"), ("advertisers", "nord", "billing_threshold", "250", "500"),
        ("advertisers", "nord", "payment_terms_days", 14, 30)}
    with db.read() as s:
        item = s.get(CampaignItem, "disp")
        assert item is not None and item.rate == Decimal("4.00")  # held: not in effect
        assert item.description == "Display banners"  # no money moved: applied at once
        assert s.get(CampaignItem, "new-item") is not None  # a new record: applied at once
        adv = s.get(Advertiser, "nord")
        assert adv is not None and (adv.billing_threshold, adv.payment_terms_days) == (Decimal("250.00"), 14)
    # loading the same file again opens no second change set
    again = json.loads(_run("load", str(v2), "--as", AUTHOR, "--json").stdout)
    assert again["change_set"] == cs_id
    listed = json.loads(_run("changes", "list", "--json").stdout)
    assert len(listed) == 1 and {"id", "author", "state", "diff"} <= set(listed[0])
    assert (listed[0]["id"], listed[0]["author"], listed[0]["state"]) == (cs_id, AUTHOR, "pending")
    shown = _run("changes", "show", str(cs_id))
    assert "items disp: rate 4 → 5.5" in shown.output

    own = _run("changes", "approve", str(cs_id), "--as", AUTHOR)
    assert own.exit_code == 1 and "your own change" in own.output
    nobody = _run("changes", "approve", str(cs_id))  # BILLBOT_USER: the suite's operator, no such user here
    assert nobody.exit_code == 1
    with db.read() as s:
        item = s.get(CampaignItem, "disp")
        assert item is not None and item.rate == Decimal("4.00")

    ok = _run("changes", "approve", str(cs_id), "--as", APPROVER, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {"id": cs_id, "state": "approved", "decided_by": APPROVER}
    with db.read() as s:
        item = s.get(CampaignItem, "disp")
        adv = s.get(Advertiser, "nord")
        assert item is not None and item.rate == Decimal("5.5")
        assert adv is not None and (adv.billing_threshold, adv.payment_terms_days) == (Decimal("500"), 30)
        actions = [a for (a,) in s.query(AuditLog.action).filter(AuditLog.subject_type == "change_set")]
    assert actions == ["change_set.opened", "change_set.approved"]
    twice = _run("changes", "approve", str(cs_id), "--as", APPROVER)
    assert twice.exit_code == 1 and "already approved" in twice.output
    assert _run("audit", "verify").exit_code == 0


def test_a_rejected_change_set_changes_nothing_and_a_stale_one_is_refused(db: Database, key: Any, tmp_path: Path,
                                                                         people: None) -> None:
    _run("load", str(_write(tmp_path, _data(), "v1.yaml")), "--as", AUTHOR)
    first = json.loads(_run("load", str(_write(tmp_path, _data(rate="5.00"), "a.yaml")), "--as", AUTHOR,
                            "--json").stdout)["change_set"]
    second = json.loads(_run("load", str(_write(tmp_path, _data(rate="6.00"), "b.yaml")), "--as", AUTHOR,
                             "--json").stdout)["change_set"]
    assert first != second
    bad = _run("changes", "reject", str(first), "--as", APPROVER, "--reason", " ")
    assert bad.exit_code == 2 and "needs a reason" in bad.output
    assert _run("changes", "reject", str(first), "--as", APPROVER, "--reason", "typo").exit_code == 0
    assert _run("changes", "approve", str(second), "--as", APPROVER).exit_code == 0
    with db.read() as s:
        item = s.get(CampaignItem, "disp")
        assert item is not None and item.rate == Decimal("6")
    # a change set made on 6.00 and one made on 4.00: the latter is stale once the first is applied
    third = json.loads(_run("load", str(_write(tmp_path, _data(rate="7.00"), "c.yaml")), "--as", AUTHOR,
                            "--json").stdout)["change_set"]
    with db.transaction() as s:
        cs = s.get(ChangeSet, third)
        assert cs is not None
        cs.diff = [{**cs.diff[0], "before": "4"}]
    stale = _run("changes", "approve", str(third), "--as", APPROVER)
    assert stale.exit_code == 1 and "is stale" in stale.output and "rate is now 6, not 4" in stale.output
    pending = json.loads(_run("changes", "list", "--state", "pending", "--json").stdout)
    assert [p["id"] for p in pending] == [third]
