"""Times shown to people are in ``BILLBOT_TIMEZONE`` — everywhere, not only where a test happened to look
(issue 15, item 8). One representative flow with ``BILLBOT_TIMEZONE=Europe/Berlin``: a billing run typed in
Slack (its progress message, its PDFs, the below-threshold exception posted), a decision and the "already
decided" reply to a second click, the App Home, the SLA reminder and escalation, the managers' digest; and the
CLI tables `exceptions list`, `sync status` and `invoices list`. Every text billbot sent to the fake Slack Web
API (messages, updates, ephemerals, views, response URLs, upload titles) and printed is collected: no "UTC"
(nor an ISO time in UTC) anywhere, and Berlin times (CET/CEST) are there. ``exceptions show`` printed its due
and decision times as ISO 8601 UTC; a run or sync refused as "already running" said when it started in UTC.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from typer.testing import CliRunner

from bot.slack.client import make_client
from bot.slack.digest import send_digest
from bot.slack.sla import sweep
from storage.db import Database
from storage.heartbeat import holder_id
from storage.models import BillingRun
from storage.settings import get_settings
from tests import factories as f
from tests.slack.desk import FINANCE, OPERATOR, PERIOD, open_desk
from tests.slack.helpers import buttons

MANAGERS = "CMANAGERS"
UTC_WORD = re.compile(r"\bUTC\b|\d:\d\d(:\d\d(\.\d+)?)?(\+00:00|Z\b)")  # "UTC", or an ISO time in UTC
BERLIN_TIME = re.compile(r"\b\d{1,2}:\d{2} CES?T\b")


def _texts(calls: list[Any]) -> list[str]:
    """Everything billbot sent to Slack, as text (uploads' bytes are PDFs, checked elsewhere)."""
    return [f"{c.method}: {json.dumps(c.params, ensure_ascii=False, default=str)}" for c in calls
            if c.method != "upload"]


def _cli(*args: str) -> str:
    from bot.cli import app

    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return f"billbot {' '.join(args)}:\n{r.stdout}"


def test_no_utc_in_anything_billbot_shows_people(db: Database, key: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLBOT_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("MANAGERS_CHANNEL", MANAGERS)
    get_settings.cache_clear()
    f.source_state(db, "tracker", datetime.now(UTC) - timedelta(hours=3), datetime.now(UTC).date())
    shown: list[str] = []
    with open_desk(db, key, monkeypatch) as desk:
        # a billing run typed in Slack: progress message, PDFs in its thread, the below-threshold exception
        assert desk.as_user(OPERATOR).command(f"run {PERIOD}").status == 200
        desk.wait()
        exc = desk.below_threshold()
        assert exc.message_ts, "the below-threshold exception was not posted"
        # the SLA: a day and a half later the reminder (in the thread) and the escalation (managers, DMs)
        client = make_client("xoxb-test", desk.api.url)
        later = datetime.now(UTC) + timedelta(hours=36)
        with time_machine.travel(later, tick=False):
            res = sweep(db, client=client, key=key, managers_channel=MANAGERS)
        assert res.reminded == [exc.id] and res.escalated == [exc.id]
        # the App Home with the escalated exception in the queue, and the managers' digest with the breach
        desk.as_user(FINANCE).open_home()
        desk.wait()
        assert "Kiosk Alster" in json.dumps(desk.api.calls_to("views.publish")[-1].params["view"])
        with time_machine.travel(later + timedelta(hours=1), tick=False):
            send_digest(db, client=client, key=key, channel=MANAGERS)
        [digest] = [c for c in desk.api.calls_to("chat.postMessage")
                    if c.get("channel") == MANAGERS and "digest" in str(c.get("text"))]
        assert "1 SLA breach" in digest["text"], digest["text"]
        # a decision, and a second click on the same button: "Already approved by … at …"
        value = buttons(desk.api.message(exc.channel, exc.message_ts)["blocks"])["decide_approve"]
        for _ in range(2):
            desk.as_user(FINANCE).click("decide_approve", value, channel=exc.channel, message_ts=exc.message_ts)
            desk.wait()
        told = [c["text"] for c in desk.api.calls_to("chat.postEphemeral") if c["user"] == FINANCE]
        assert any(t.startswith(":raised_hand: Already approved by") for t in told), told
        desk.as_user(OPERATOR).open_home()
        desk.wait()
        # a run of a period another run is busy with is refused, saying when that one started
        with db.transaction() as s:
            s.add(BillingRun(period="2026-03", period_start=date(2026, 3, 1), period_end=date(2026, 3, 31),
                             state="running", started_by=FINANCE, started_at=datetime.now(UTC),
                             summary={"heartbeat": datetime.now(UTC).isoformat(), "holder": holder_id()},
                             lock_key="billing:2026-03-01..2026-03-31"))
        desk.as_user(OPERATOR).command("run 2026-03")
        desk.wait()
        refused = [t for t in _texts(list(desk.api.calls)) if "is already running" in t]
        assert refused and all(BERLIN_TIME.search(t) for t in refused), refused
        shown += _texts(list(desk.api.calls))
    # the CLI's tables
    shown.append(_cli("exceptions", "list"))
    shown.append(_cli("exceptions", "show", str(exc.id)))
    shown.append(_cli("sync", "status"))
    shown.append(_cli("invoices", "list"))

    with_utc = [t for t in shown if UTC_WORD.search(t)]
    assert with_utc == [], "\n\n".join(with_utc)
    assert any(BERLIN_TIME.search(t) for t in shown if t.startswith("chat.postEphemeral"))  # the "already" reply
    assert any(BERLIN_TIME.search(t) for t in shown if t.startswith("billbot exceptions list"))  # due times
    assert any(BERLIN_TIME.search(t) for t in shown if t.startswith("billbot sync status"))  # last sync
    assert len(BERLIN_TIME.findall(next(t for t in shown if t.startswith("billbot exceptions show")))) == 2
    assert any(BERLIN_TIME.search(t) and MANAGERS in t for t in shown)  # the digest / escalation
