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
    answers = world.api.calls_to("response_url")
    assert len(answers) == 1 and "unknown advertiser(s): Autohaus" in answers[0]["text"]


def test_starting_the_app_prints_no_bolt_token_warning(world, caplog):
    messages = [r.getMessage() for r in caplog.get_records("setup")]
    assert not any("will be unused" in m for m in messages)
