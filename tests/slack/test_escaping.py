"""Text people typed is shown, never acted on (issue 16 item 3).

``<!here>``, ``<!channel>``, ``<@U…>`` and "GmbH & Co. KG" go into an advertiser's name, an exception's
cause and evidence, a Reject reason and slash-command arguments; every text billbot then sends — the
exception message and its update, the thread reply, the modals, the App Home, the command replies,
the error replies, the SLA posts, the digest, the progress message — carries them escaped.
Slack only acts on ``<…>``; ``plain_text`` objects (headers, button labels) are never parsed, so they
are not escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from billing.errors import Invalid, NotFound
from bot.blocks.common import esc, mention
from bot.blocks.digest import digest_blocks, digest_text
from bot.blocks.help import help_blocks
from bot.blocks.progress import progress_fallback, run_progress
from bot.slack.replies import error_text
from bot.workflows.digest import Breach, DigestData, Freshness
from storage.models import Advertiser
from tests import factories as f
from tests.slack.helpers import click, submit_reason

HOSTILE = "GmbH & Co. KG <!here> <!channel> <@U0HACKER> <https://evil.example|click> @everyone"
SHORT = "GmbH & Co <!here> <!channel> <@U0HACKER>"
RAW = ("<!here>", "<!channel>", "<@U0HACKER>", "<https://evil.example", "GmbH & Co", "@everyone")
NOT_TEXT = {"private_metadata", "value", "action_id", "block_id", "callback_id", "trigger_id", "channel", "ts",
            "thread_ts", "user", "users", "token", "filename", "url", "view_id", "response_type", "channel_id"}


def _texts(obj: Any, out: list[str]) -> list[str]:
    """Every piece of mrkdwn (or fallback text) in a Web API call."""
    if isinstance(obj, dict):
        if obj.get("type") == "plain_text":
            return out
        for k, v in obj.items():
            if k not in NOT_TEXT:
                _texts(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _texts(v, out)
    elif isinstance(obj, str):
        out.append(obj)
    return out


def _assert_escaped(texts: list[str], where: str) -> None:
    joined = "\n".join(texts)
    assert "GmbH &amp; Co. KG &lt;!here&gt;" in joined, f"{where}: the hostile text never arrived"
    for raw in RAW:
        assert raw not in joined, f"{where}: {raw!r} went out unescaped"


def test_esc() -> None:
    assert esc("GmbH & Co. KG") == "GmbH &amp; Co. KG"
    assert esc("<!here> <@U1> <#C1> <https://x|y>") == "&lt;!here&gt; &lt;@U1&gt; &lt;#C1&gt; &lt;https://x|y&gt;"
    assert esc("ping @here and @Channel") == "ping @\u2060here and @\u2060Channel"
    assert esc("a@herethere.com") == "a@herethere.com"
    assert mention("U02APPROVER") == "<@U02APPROVER>"
    assert mention("U1> <!here") == "U1&gt; &lt;!here"


def test_hostile_text_is_escaped_on_every_slack_surface(world):
    with world.db.transaction() as s:
        s.get(Advertiser, f.ADV).name = HOSTILE
    pid = f.preinvoice(world.db)
    ev = {"booked_amount": "3000.00", "computed_amount": "2100.00", "rule": HOSTILE, "tolerance": "0.10",
          "figures": {HOSTILE: HOSTILE}, "days": [HOSTILE], "cause": SHORT}  # a 64-character column
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid, evidence=ev)
    world.api.wait_for("chat.postMessage", where=lambda c: c.get("thread_ts") is None)

    row = f.exception_row(world.db, eid)
    world.as_user(f.APPROVER).click("exception_details", str(eid), channel=row.channel, message_ts=row.message_ts)
    world.wait()
    click(world, f.APPROVER, eid, "reject")
    submit_reason(world, f.APPROVER, HOSTILE)
    world.as_user(f.APPROVER).open_home()
    me = world.as_user(f.OPERATOR)
    for text in ("exceptions", "preinvoices", f"invoice {HOSTILE}", f"nonsense {HOSTILE}", f"run 2026-02 {HOSTILE}",
                 f"schedule add {HOSTILE} 0 2 * * *"):
        me.command(text)
    world.wait()

    methods = {"chat.postMessage", "chat.update", "chat.postEphemeral", "views.open", "views.publish", "response_url"}
    sent = [c for c in world.api.calls if c.method in methods]
    for method in methods - {"chat.postEphemeral"}:
        assert any(c.method == method for c in sent), f"no {method} call to check"
    for call in sent:
        texts = _texts(call.params, [])
        for raw in RAW:
            assert not any(raw in t for t in texts), f"{call.method}: {raw!r} unescaped in {texts}"
    reply = [c for c in sent if c.method == "chat.postMessage" and c.get("thread_ts")][-1]
    assert "Reason: GmbH &amp; Co. KG &lt;!here&gt; &lt;!channel&gt; &lt;@U0HACKER&gt;" in reply["text"]
    _assert_escaped([t for c in sent for t in _texts(c.params, [])], "Slack")


def test_builders_outside_a_click_escape_too() -> None:
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    digest = DigestData(
        now=now, since=now - timedelta(days=1), first=False, open_count=1, open_totals={"EUR": Decimal(1)},
        buckets=[], breaches=[Breach(1, "variance", HOSTILE, Decimal(1), "EUR", now, timedelta(hours=3), "escalated")],
        invoices_created=0, credit_notes_created=0, invoiced_totals={}, skipped_count=0, skipped_totals={},
        sources=[Freshness(HOSTILE, now, None, stale=True)],
    )
    texts = _texts([b.to_dict() for b in digest_blocks(digest)], [digest_text(digest)])
    _assert_escaped(texts, "digest")
    progress = run_progress(HOSTILE, state="running", started_by="U1", lines=[f"Document X created for {HOSTILE}"],
                            progress=HOSTILE)
    _assert_escaped(_texts([b.to_dict() for b in progress], [progress_fallback(HOSTILE, "done")]), "progress")
    _assert_escaped(_texts([b.to_dict() for b in help_blocks(HOSTILE)], []), "help")
    _assert_escaped([error_text(NotFound(HOSTILE)), error_text(Invalid([HOSTILE, HOSTILE]))], "errors")


def test_sla_posts_escape_the_advertiser_and_cause(db, key) -> None:
    from bot.slack.sla import _describe
    from storage.models import BillingException

    exc = BillingException(id=5, kind="variance", advertiser_id="x", amount=Decimal("1.00"), currency="EUR",
                           cause=HOSTILE)
    exc.advertiser = Advertiser(id="x", name=HOSTILE)
    _assert_escaped([_describe(exc)], "sla")
