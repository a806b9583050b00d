"""A billing desk wired like `billbot serve`: billbot's real WSGI app against the fake Slack Web API,
jobs inline (PDFs render in the request's after-commit), a small February scenario loaded and its
pre-invoices made.

The scenario (``storage.loader.load_scenario`` input): one legal entity; Autohaus Elbe, Fahrrad Nord and
Optik Süd bill linear items above their thresholds (three invoices in a run); Kiosk Alster's 180.00 EUR
stays under its 250.00 EUR threshold (skipped, a ``below_threshold`` exception).

The ``desk`` fixture (:func:`open_desk` with jobs inline) is in tests/slack/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import BillingException, Invoice
from tests.fakes.slack_api import FakeSlackAPI
from tests.harness import AppServer, SlackUser, shut_down, signed_user

SECRET = "delivery-tests-signing-secret-0001"
PERIOD = "2026-02"
OPERATOR, FINANCE = "U01OPERATOR", "U03FINANCE"
RUN_CHANNEL, EXC_CHANNEL = "CBILLING", "CEXCEPTIONS"
PROFILES = {
    OPERATOR: {"name": "olivia", "real_name": "Olivia Operator", "email": "olivia@northwind.example"},
    FINANCE: {"name": "fiona", "real_name": "Fiona Finance", "email": "fiona@northwind.example"},
}


def _linear(adv: str, name: str, amount: str, threshold: str = "250.00") -> tuple[dict[str, Any], dict[str, Any]]:
    advertiser = {"id": adv, "name": name, "legal_entity": "northwind-media", "currency": "EUR", "country": "DE",
                  "vat_id": "DE136695976", "billing_threshold": threshold, "address": "Elbchaussee 10, 22763 Hamburg"}
    campaign = {"id": f"{adv}-feb", "advertiser": adv, "name": "February banner", "payment_interval": "monthly",
                "start": "2026-02-01", "end": "2026-02-28",
                "items": [{"id": f"{adv}-feb-item", "description": "Banner placement", "billing": "linear",
                           "unit": "amount", "period": "day_based", "amount": amount}]}
    return advertiser, campaign


def scenario() -> dict[str, Any]:
    pairs = [_linear("autohaus-elbe", "Autohaus Elbe KG", "2800.00"),
             _linear("fahrrad-nord", "Fahrrad Nord GmbH", "1200.00"),
             _linear("optik-sued", "Optik Süd OHG", "950.00"),
             _linear("kiosk-alster", "Kiosk Alster", "180.00")]
    return {
        "legal_entities": [{"id": "northwind-media", "name": "Northwind Media GmbH", "country": "DE",
                            "currency": "EUR", "vat_id": "DE811907980", "start_of_week": "monday",
                            "address": "Hafenstrasse 1, 20457 Hamburg", "exceptions_channel": EXC_CHANNEL}],
        "advertisers": [a for a, _ in pairs],
        "campaigns": [c for _, c in pairs],
        "users": [
            {"slack_id": OPERATOR, "name": "Olivia Operator", "email": "olivia@northwind.example",
             "roles": ["operator"]},
            {"slack_id": FINANCE, "name": "Fiona Finance", "email": "fiona@northwind.example",
             "roles": ["approver", "finance_manager"]},
        ],
    }


@dataclass
class Desk:
    db: Database
    api: FakeSlackAPI
    server: AppServer
    users: dict[str, SlackUser] = field(default_factory=dict)

    def as_user(self, slack_id: str) -> SlackUser:
        return signed_user(self.users, self.server, self.api, SECRET, slack_id)

    def wait(self) -> None:
        self.server.wait_idle(30)

    # ------------------------------------------------------------------ reading back

    def invoices(self) -> dict[str, Invoice]:
        """advertiser id → its invoice (detached)."""
        with self.db.read() as s:
            rows = list(s.execute(select(Invoice).order_by(Invoice.id)).scalars())
            for r in rows:
                s.expunge(r)
        return {r.advertiser_id: r for r in rows}

    def below_threshold(self) -> BillingException:
        with self.db.read() as s:
            row = s.execute(select(BillingException).where(BillingException.kind == "below_threshold")).scalar_one()
            s.expunge(row)
            return row

    def uploads(self) -> list[dict[str, Any]]:
        """Each ``files_upload_v2`` as its three calls, in the order they completed: the upload URL asked for
        a filename and length, the bytes POSTed to it, and the completion naming the channel and thread.
        (Joined by file id and by the title's invoice number: render jobs in a process pool interleave.)"""
        urls = {str(c.params["filename"]): c for c in self.api.calls_to("files.getUploadURLExternal")}
        posts = {str(c.params["file_id"]): c.body for c in self.api.calls_to("upload")}
        done = self.api.calls_to("files.completeUploadExternal")
        assert len(urls) == len(posts) == len(done), (list(urls), list(posts), len(done))
        out = []
        for complete in done:
            [f] = complete.params["files"]
            filename = str(f["title"]).split(" · ")[0] + ".pdf"
            url = urls[filename]
            out.append({"file_id": f["id"], "filename": url.params["filename"], "length": int(url.params["length"]),
                        "data": posts[f["id"]], "channel": complete.params.get("channel_id"),
                        "thread_ts": complete.params.get("thread_ts"), "title": f["title"]})
        return out

    def thread_texts(self, channel: str, ts: str) -> list[str]:
        return [str(c.params.get("text")) for c in self.api.calls_to("chat.postMessage")
                if c.params.get("channel") == channel and c.params.get("thread_ts") == ts]

    def run_message(self) -> tuple[str, str]:
        """(channel, ts) of the `/billing run` progress message (the message the job keeps updating)."""
        [ts] = {(str(c.params["channel"]), str(c.params["ts"])) for c in self.api.calls_to("chat.update")
                if "Billing run" in str(c.params.get("text"))}
        return ts


@contextmanager
def open_desk(db: Database, key: Any, monkeypatch: pytest.MonkeyPatch, *, jobs: str | None = "inline") -> Iterator[Desk]:
    """The scenario loaded into ``db``, its pre-invoices made, and the app serving against a fake Web API."""
    from bot import context
    from bot.app import create_app, create_wsgi
    from bot.slack.client import _client
    from bot.workflows.preinvoices import create_preinvoices
    from storage.loader import load_scenario

    load_scenario(db, scenario())
    create_preinvoices(db, period=PERIOD, actor="cli", key=key, now=datetime.now(UTC))
    with FakeSlackAPI(users=PROFILES) as api:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
        monkeypatch.setenv("SLACK_API_URL", api.url)
        monkeypatch.setenv("EXCEPTIONS_CHANNEL", EXC_CHANNEL)
        if jobs is None:
            monkeypatch.delenv("BILLBOT_JOBS", raising=False)
        else:
            monkeypatch.setenv("BILLBOT_JOBS", jobs)
        context.reset()
        _client.cache_clear()
        server = AppServer(create_wsgi(app=create_app()))
        d = Desk(db, api, server)
        try:
            yield d
        finally:
            shut_down(server, d.users)
