"""Issue 17 (surfaces): ``/billing`` arguments validated like the CLI, answered ephemerally with the
usage line; the run report, lists, Home and digest lead with totals and stay within Slack's limits."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories as f


def _texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b.get("text"))


@pytest.mark.parametrize(("typed", "problem"), [
    ("run 2026-13", "period '2026-13'"),
    ("run October", "period 'October' not understood"),
    ("run 2026-10 no-such-advertiser", "unknown advertiser(s): no-such-advertiser"),
    ("run nobody-we-know", "unknown advertiser(s): nobody-we-know"),
    ("sync partial nowhere", "unknown source(s): nowhere"),
    ("preinvoices 2026-13", "period '2026-13'"),
])
def test_bad_billing_arguments_get_an_ephemeral_usage_error_and_start_nothing(world, typed, problem):
    r = world.as_user(f.OPERATOR).command(typed)
    world.wait()
    assert r.status == 200
    [answer] = world.api.calls_to("response_url")
    assert answer["response_type"] == "ephemeral"
    assert problem in answer["text"] and "Usage: `/billing " + typed.split()[0] in answer["text"]
    assert world.api.calls_to("chat.postMessage") == []  # nothing public, no job started
    assert world.api.calls_to("chat.postEphemeral") == []


def test_a_valid_period_and_a_known_advertiser_start_the_run(world, monkeypatch):
    from types import SimpleNamespace

    from tests.slack.helpers import spy_module

    seen: dict[str, Any] = {}

    def run_billing(db, *, period, advertisers=None, **kw):
        seen.update(period=period, advertisers=advertisers)
        return SimpleNamespace(run_id=None, created=[], skipped=[], held=[], log=[])

    spy_module(monkeypatch, "bot.workflows.billing_run", run_billing=run_billing)
    world.as_user(f.OPERATOR).command("run autohaus-elbe")  # an advertiser alone: the default period
    world.wait()
    world.as_user(f.OPERATOR).command("run 2026-10 Autohaus")
    world.wait()
    assert seen["advertisers"] == ["autohaus-elbe"]
    world.as_user(f.OPERATOR).command("run 2026-10 autohaus elbe kg")  # a name with spaces
    world.wait()
    assert seen == {"period": "2026-10", "advertisers": ["autohaus elbe kg"]}
    answers = world.api.calls_to("response_url")
    assert len(answers) == 1 and "unknown advertiser(s): Autohaus" in answers[0]["text"]


def test_starting_the_app_prints_no_bolt_token_warning(world, caplog):
    messages = [r.getMessage() for r in caplog.get_records("setup")]
    assert not any("will be unused" in m for m in messages)


def test_a_real_run_reports_totals_first_and_a_short_log_inline(world):
    f.preinvoice(world.db, net="3000.00", state="approved")
    world.as_user(f.OPERATOR).command("run 2026-02")
    world.wait()
    final = world.api.calls_to("chat.update")[-1]["blocks"]
    head = final[0]
    assert head["text"]["text"].endswith("*Billing run 2026-02* — done")
    assert [x["text"] for x in head["fields"]] == [
        "*Invoices created*\n1", "*Net invoiced*\n3,000.00 EUR", "*Skipped below threshold*\n0 · —", "*Held*\n0 · —"]
    assert final[1]["text"]["text"] == "```Document INV-2026-000001 created for Autohaus Elbe KG```"
    assert final[-1]["elements"][0]["text"] == "run 1 · started by <@U01OPERATOR>"
    uploads = [c["filename"] for c in world.api.calls_to("files.getUploadURLExternal")]
    assert uploads == ["INV-2026-000001.pdf"]  # the invoice's PDF as before; a short log needs no file
    world.as_user(f.APPROVER).command("status")
    world.wait()
    status = _texts(world.api.calls_to("response_url")[-1]["blocks"])
    assert "*Last billing run* 2026-02: done, started <!date^" in status
    assert "— 1 invoice(s), net 3,000.00 EUR; 0 skipped; 0 held" in status


def test_a_long_log_is_attached_and_lines_are_never_cut():
    from datetime import UTC, datetime
    from decimal import Decimal

    from bot.blocks.lists import lines_with_more
    from bot.blocks.run_report import run_report_blocks
    from bot.sandbox.blockkit import validate_blocks
    from bot.workflows.run_reports import Converted, RunReport, log_csv

    at = datetime(2026, 11, 1, 6, tzinfo=UTC)
    rows = [(at, "info", f"Document INV-2026-{i:06d} created for Autohaus {'Ä' * 200} {i}") for i in range(1200)]
    report = RunReport(run_id=7, period="2026-10", state="done", started_by="U01OPERATOR", started_at=at,
                       finished_at=at, created=1200, net={"EUR": Decimal("10.00"), "PLN": Decimal("43.00")},
                       net_reporting=Converted("EUR", Decimal("20.00")), skipped=0, skipped_totals={}, held=3,
                       held_totals={"USD": Decimal("5.00")}, problems=[f"{i} problem {'x' * 500}" for i in range(40)],
                       held_reporting=Converted("EUR", Decimal("0.00"), ("USD",)),
                       log=[m for _, _, m in rows], log_rows=rows)
    blocks = [b.to_dict() for b in run_report_blocks(report, title="Billing run 2026-10", started_by="U01OPERATOR",
                                                      log_attached=True)]
    assert validate_blocks(blocks) == []
    fields = [x["text"] for x in blocks[0]["fields"]]
    assert fields[1] == "*Net invoiced*\n10.00 EUR · 43.00 PLN\n≈ 20.00 EUR"
    assert fields[3] == "*Held*\n3 · 5.00 USD\n≈ 0.00 EUR (without USD: no rate)"
    problems = blocks[1]["text"]["text"].split("\n")
    assert problems[0] == "*Problems*" and problems[-1].startswith("… and ") and problems[-1].endswith(" more")
    assert all(p.endswith("x" * 500) for p in problems[1:-1])  # whole entries only
    assert "1,200 lines) in the thread as CSV and text" in blocks[-1]["elements"][0]["text"]
    assert log_csv(report).count("\n") == 1201
    dated = ["• <!date^1790000000^{date_short_pretty} {time}|2026-09-21 16:26 CEST> " + "y" * 100] * 80
    text = lines_with_more(dated, 100)
    assert len(text) <= 3000 and text.count("<!date") == text.count("CEST>")


def test_the_home_with_several_waiting_exceptions_is_valid_and_its_buttons_decide(world):
    """Each exception's buttons carry its id in their action ids (unique within the view), soonest SLA first."""
    from bot.sandbox.blockkit import validate_view

    first = f.open_exception(world.db, world.key, preinvoice_id=f.preinvoice(world.db), amount="100.00", name="a")
    campaign = f.add_campaign(world.db, "elbe-spring")
    second = f.open_exception(world.db, world.key, preinvoice_id=f.preinvoice(world.db, campaign=campaign),
                              amount="900.00", name="b")
    world.as_user(f.APPROVER).open_home()
    world.wait()
    [home] = world.api.calls_to("views.publish")
    view = home["view"]
    assert validate_view(view) == []
    actions = [b for b in view["blocks"] if b["type"] == "actions"]
    assert [b["elements"][0]["action_id"] for b in actions] == [f"decide_approve:{first}", f"decide_approve:{second}"]
    button = actions[1]["elements"][0]
    world.as_user(f.APPROVER).click(button["action_id"], button["value"], from_home=True)
    world.wait()
    assert f.exception_row(world.db, second).state == "approved"
    assert f.exception_row(world.db, first).state == "pending"
