"""The managers' digest, block by block, and its chart."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import time_machine
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app as cli
from bot.slack.digest import send_digest
from bot.workflows.digest import LAST_SENT_KEY
from storage.models import AuditLog, Setting
from tests import factories as f

NOW = f.utc(2026, 3, 5, 8, 0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scenario(db):  # type: ignore[no-untyped-def]
    f.base(db)
    with db.transaction() as s:
        s.add(Setting(key=LAST_SENT_KEY, value=(NOW - timedelta(days=1)).isoformat()))
    f.exception(db, created_at=NOW - timedelta(hours=2), amount="500.00")
    f.exception(db, created_at=NOW - timedelta(days=2), amount="1200.00", advertiser="adv-2")  # breach
    f.exception(db, created_at=NOW - timedelta(days=10), amount="300.00", state="escalated")  # breach
    f.exception(db, created_at=NOW - timedelta(days=2), amount="999.00", state="approved")  # decided: not shown
    f.exception(db, created_at=NOW - timedelta(hours=5), amount="180.00", kind="below_threshold")
    f.invoice(db, number="INV-2026-000001", created_at=NOW - timedelta(days=3), gross="5000.00")  # before window
    f.invoice(db, number="INV-2026-000002", created_at=NOW - timedelta(hours=20), gross="1190.00")
    f.invoice(db, number="INV-2026-000003", created_at=NOW - timedelta(hours=3), gross="2380.00", advertiser="adv-2")
    f.invoice(db, number="CN-2026-000001", created_at=NOW - timedelta(hours=1), gross="119.00", kind="credit_note")
    f.source_state(db, "tracker", NOW - timedelta(hours=3), date(2026, 3, 4))
    f.source_state(db, "adserver", NOW - timedelta(days=3), date(2026, 3, 1))


def texts(block: dict) -> list[str]:
    out = []
    if "text" in block:
        out.append(block["text"]["text"])
    out += [x["text"] for x in block.get("fields", [])]
    out += [x["text"] for x in block.get("elements", [])]
    return out


def test_digest_blocks_one_by_one(db, key):
    scenario(db)
    res = send_digest(db, now=NOW, key=key, dry_run=True)
    b = res.blocks
    # issue 18 added the receivables section before the closing context; issue 17 the 7-day trend (block 3)
    assert [x["type"] for x in b] == ["header", "context", "section", "section", "section", "divider", "section",
                                      "section", "section", "context"]
    assert texts(b[0]) == ["Billing digest — 2026-03-05"]
    # shown in BILLBOT_TIMEZONE (Europe/Berlin by default), not UTC
    assert texts(b[1]) == ["Since 2026-03-04 09:00 CET · as of 2026-03-05 09:00 CET · totals in EUR"]
    assert texts(b[2]) == [
        "*Open exceptions:* 4 · 2,180.00 EUR",
        "*< 1 day*\n2 · 680.00 EUR",
        "*1–3 days*\n1 · 1,200.00 EUR",
        "*3–7 days*\n0",
        "*> 7 days*\n1 · 300.00 EUR",
    ]
    # open at the end of each day: the escalated one all week, then the 1–3 day old one, then today's two
    assert texts(b[3]) == ["*Last 7 days:* open 1 → 1 → 1 → 1 → 2 → 2 → 4 (+3); amount 300.00 EUR → 2,180.00 EUR"]
    b = b[:3] + b[4:]  # the rest as before
    breaches = texts(b[3])[0].split("\n")
    assert breaches[0] == ":rotating_light: *SLA breaches:* 2"
    assert breaches[1].startswith("• #") and "Autohaus Nord, 300.00 EUR, overdue 9d 0h (escalated)" in breaches[1]
    assert "Bäckerei Süd, 1,200.00 EUR, overdue 1d 0h" in breaches[2]
    assert texts(b[5]) == [
        "*Invoices created:* 2 (+ 1 credit notes)\n3,451.00 EUR",
        "*Skipped below threshold:* 1\n180.00 EUR",
    ]
    assert texts(b[6]) == [
        "*Source freshness*\n"
        ":warning: *adserver* — last sync 2026-03-02 09:00 CET, data until 2026-03-01\n"
        ":white_check_mark: *tracker* — last sync 2026-03-05 06:00 CET, data until 2026-03-04"
    ]
    # the three invoices are not yet due: all current; DSO = 8,570.00 open ÷ 8,689.00 invoiced in 90 days × 90
    assert texts(b[7]) == [
        "*Receivables by days past due*\n*EUR* current: 8,570.00 EUR · 1–30: 0.00 EUR · 31–60: 0.00 EUR · "
        "61–90: 0.00 EUR · > 90: 0.00 EUR · DSO 88.8 days"]
    assert texts(b[8]) == ["Chart: open exceptions by age and trend and receivables aging, in the thread."]
    assert res.text == "Billing digest 2026-03-05: 4 open exceptions, 2 SLA breaches, 2 invoices created"
    assert res.sent is False


def test_digest_chart_is_a_valid_png(db, key):
    scenario(db)
    png = send_digest(db, now=NOW, key=key, dry_run=True).chart_png
    assert png.startswith(PNG_MAGIC)
    img = Image.open(io.BytesIO(png))
    img.verify()
    img = Image.open(io.BytesIO(png))
    # panels: exceptions by age, the 7-day trend (issue 17) and, with open receivables, their aging (issue 18)
    assert img.format == "PNG" and img.size == (640, 690)
    import matplotlib.image as mpimg

    assert mpimg.imread(io.BytesIO(png), format="png").shape[:2] == (690, 640)


def test_digest_chart_without_receivables_keeps_its_size(db, key):
    f.base(db)
    f.exception(db, created_at=NOW - timedelta(hours=2), amount="500.00")
    png = send_digest(db, now=NOW, key=key, dry_run=True).chart_png
    assert Image.open(io.BytesIO(png)).size == (640, 460)


def test_digest_is_posted_with_its_chart_and_moves_the_window(db, key, slack, client):
    scenario(db)
    with time_machine.travel(NOW, tick=False):
        res = send_digest(db, client=client, key=key, channel="billing-managers")
    assert res.sent and res.problems == []
    # the chart is uploaded first (shared nowhere), then shown inline by an image block naming the file
    (get_url,) = slack.calls_to("files.getUploadURLExternal")
    assert get_url["filename"] == "digest-2026-03-05.png" and int(get_url["length"]) == len(res.chart_png)
    assert slack.uploads[res.file_id] == res.chart_png
    (done,) = slack.calls_to("files.completeUploadExternal")
    assert not done.get("channel_id") and not done.get("thread_ts")
    assert json.loads(done.body["files"])[0]["title"] == "Open exceptions by age and trend"
    (post,) = slack.calls_to("chat.postMessage")
    assert post["channel"] == "billing-managers" and res.channel == "CBILLINGMAN"
    assert post["blocks"] == res.blocks
    assert post["text"] == res.text
    [image] = [b for b in post["blocks"] if b["type"] == "image"]
    assert image["slack_file"] == {"id": res.file_id} and "Open exceptions" in image["alt_text"]
    assert not any("in the thread" in t for b in post["blocks"] for t in texts(b))

    with db.read() as s:
        assert s.get(Setting, LAST_SENT_KEY).value == NOW.isoformat()
        audit = s.execute(select(AuditLog).where(AuditLog.action == "digest.sent")).scalar_one()
        assert json.loads(audit.payload)["open"] == 4

    later = send_digest(db, now=NOW + timedelta(days=1), key=key, dry_run=True)
    assert later.data.since == NOW
    assert later.data.invoices_created == 0 and later.data.skipped_count == 0


def test_first_digest_looks_back_one_day(db, key):
    res = send_digest(db, now=NOW, key=key, dry_run=True)
    assert res.data.first and res.data.since == NOW - timedelta(days=1)
    assert texts(res.blocks[4]) == [":white_check_mark: *SLA breaches:* none"]
    assert texts(res.blocks[7]) == ["*Source freshness*\nno sources synced yet"]


def test_cli_digest_dry_run(db, tmp_path):
    out = CliRunner().invoke(cli, ["digest", "--dry-run", "--json", "--chart", str(tmp_path / "c.png")])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["blocks"][0]["type"] == "header"
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def test_cli_digest_dry_run_prints_readable_text(db, key):
    scenario(db)
    with time_machine.travel(NOW, tick=False):
        out = CliRunner().invoke(cli, ["digest", "--dry-run"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[:2] == ["Billing digest — 2026-03-05", "==========================="]
    assert "Open exceptions: 4 · 2,180.00 EUR" in lines and "  1–3 days — 1 · 1,200.00 EUR" in lines
    assert any(x.startswith("• #") and "Autohaus Nord, 300.00 EUR" in x for x in lines)
    assert "{" not in out.stdout and "<!date" not in out.stdout and "*" not in out.stdout
    assert "(dry run: nothing posted" in out.stdout

