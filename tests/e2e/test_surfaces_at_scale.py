"""Issue 17 at the LEADING scale: the demo with 1,124 branches billed once (module fixture: demo with
its delivery loaded inline, pre-invoices, billing run — the same pre-invoices, exceptions and run as
``billbot cycle``, without the tracker and the file imports), then every Slack surface of it through
the fake Web API, which applies the sandbox's Block Kit checks: the run report, ``/billing exceptions``
and ``preinvoices`` (pages with Show more), the App Home and the digest. All show totals and
"and N more" and never a ``<!date^…>`` token cut short."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from bot.sandbox.blockkit import validate_blocks
from storage.db import Database, dispose_all
from storage.migrate import upgrade
from storage.models import OPEN_EXCEPTION_STATES, BillingException
from tests import factories as f
from tests.fakes.slack_api import FakeSlackAPI
from tests.harness import AppServer, shut_down, signed_user

SIZE = "1124"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DATE_TOKEN = re.compile(r"<!date\^\d+\^[^|>]*\|[^>]*>")


@dataclass
class Billed:
    db_file: Path
    var: Path
    key_path: Path
    run_output: str
    run_id: int = 1


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Billed]:
    """The 1,124-branch demo billed for 2026-10, once per module (about a minute)."""
    from bot import context, runtime
    from bot.cli import app
    from bot.signing import load_key
    from storage.settings import get_settings

    root = tmp_path_factory.mktemp("scale")
    db_file, var, key_path = root / "billbot.db", root / "var", root / "var" / "signing_key.pem"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", f"sqlite:///{db_file}")
        mp.setenv("BILLBOT_VAR_DIR", str(var))
        mp.setenv("BILLBOT_USER", f.OPERATOR)  # the demo's operator
        load_key(str(key_path), generate=True)
        mp.setenv("SIGNING_KEY_PATH", str(key_path))
        get_settings.cache_clear()
        context.reset()
        upgrade(Database(f"sqlite:///{db_file}"))
        runner = CliRunner()
        for args in (["demo", "--size", SIZE, "--inline-delivery"], ["preinvoices", "create", "--period", "2026-10"]):
            res = runner.invoke(app, args)
            assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["run", "--period", "2026-10"])
        assert res.exit_code == 0, res.output
        out = res.stdout
        context.reset()
        runtime.reset()
        dispose_all()
    get_settings.cache_clear()
    yield Billed(db_file, var, key_path, out)


@pytest.fixture
def big(billed: Billed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A copy of the billed database for one test, wired like the suite's ``db`` fixture."""
    from bot import context
    from storage.settings import get_settings

    path = tmp_path / "billbot.db"
    shutil.copyfile(billed.db_file, path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("BILLBOT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SIGNING_KEY_PATH", str(billed.key_path))
    get_settings.cache_clear()
    context.reset()
    yield Database(f"sqlite:///{path}")
    context.reset()
    dispose_all()
    get_settings.cache_clear()


@dataclass
class BigWorld:
    db: Database
    api: FakeSlackAPI
    server: AppServer
    users: dict[str, Any]

    def as_user(self, slack_id: str) -> Any:
        return signed_user(self.users, self.server, self.api, SECRET, slack_id)


@pytest.fixture
def world(big: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[BigWorld]:
    from bot import context, jobs
    from bot.app import create_app, create_wsgi

    with FakeSlackAPI(users=f.PROFILES) as api:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
        monkeypatch.setenv("SLACK_API_URL", api.url)
        monkeypatch.setenv("EXCEPTIONS_CHANNEL", f.CHANNEL)
        monkeypatch.delenv("BILLBOT_JOBS", raising=False)
        monkeypatch.delenv("BILLBOT_MODE", raising=False)
        context.reset()
        server = AppServer(create_wsgi(app=create_app()))
        w = BigWorld(big, api, server, {})
        try:
            yield w
        finally:
            shut_down(server, w.users)
            jobs.shutdown()


def _all_text(blocks: list[dict[str, Any]]) -> str:
    out = []
    for b in blocks:
        for obj in [b.get("text"), *(b.get("fields") or []), *(b.get("elements") or [])]:
            if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                out.append(obj["text"])
            elif isinstance(obj, dict) and isinstance(obj.get("text"), dict):
                out.append(obj["text"].get("text", ""))
    return "\n".join(out)


def assert_no_broken_date(text: str) -> None:
    """Every ``<!date`` starts a whole token ``<!date^ts^format|fallback>``."""
    assert text.count("<!date") == len(DATE_TOKEN.findall(text)), text


def _open_count(db: Database) -> int:
    with db.read() as s:
        return int(s.execute(select(func.count()).select_from(BillingException)
                             .where(BillingException.state.in_(OPEN_EXCEPTION_STATES))).scalar_one())


# --------------------------------------------------------------------------- the CLI


def test_cli_run_prints_totals_in_a_screenful_and_names_its_log_file(billed: Billed) -> None:
    lines = billed.run_output.splitlines()
    assert len(lines) <= 50, billed.run_output
    assert any(re.fullmatch(r"  Invoices created +\d{3,} +net .*EUR.*≈ [\d,]+\.\d\d EUR", x) for x in lines), lines
    assert any(re.fullmatch(r"  Held +\d{2,} +.*", x) for x in lines)
    [named] = [x for x in lines if x.startswith("Full job log (")]
    path = Path(re.search(r": (\S+\.log) ", named)[1])  # type: ignore[index]
    assert path.is_file() and path.parent == billed.var / "logs"
    logged = path.read_text(encoding="utf-8").splitlines()
    assert len(logged) >= 1000 and f"({len(logged):,} lines)" in named
    assert not any(x.startswith("Document ") for x in lines)  # the log is in the file, not on the screen


def test_runs_list_and_show_give_each_runs_totals_and_log(big: Database) -> None:
    from bot.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["runs", "list"])
    assert res.exit_code == 0, res.output
    head, row = res.stdout.splitlines()[:2]
    assert head.split()[:4] == ["RUN", "PERIOD", "STATE", "STARTED"] and "NET EUR" in head
    assert row.split()[:3] == ["1", "2026-10", "done"]
    end = head.index("INVOICES") + len("INVOICES")  # right-aligned under its header
    assert re.fullmatch(r"[\d,]{3,}", row[end - len("INVOICES"):end].strip())
    res = runner.invoke(app, ["runs", "show", "1", "--log", "5"])
    assert res.exit_code == 0, res.output
    out = res.stdout.splitlines()
    assert out[0] == "Billing run 1 for 2026-10: done" and out[1].startswith("  Invoices created")
    assert any(x.startswith("Job log (1,") for x in out) and out[-1].startswith("  … and 1,")
    assert runner.invoke(app, ["runs", "show", "99"]).exit_code != 0


def test_invoices_list_has_a_header_aligned_columns_and_the_pdf_and_dispatch_state(big: Database) -> None:
    from bot.cli import app

    res = CliRunner().invoke(app, ["invoices", "list"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    head = lines[0]
    for col in ("NUMBER", "ISSUED", "ADVERTISER", "NET", "GROSS", "CUR", "PDF", "DISPATCH"):
        assert col in head
    rows = [x for x in lines[1:] if x.startswith("INV-")]
    assert len(rows) >= 900
    gross_end = head.index("GROSS") + len("GROSS")
    assert all(re.fullmatch(r"[\d,]+\.\d\d", x[gross_end - 14:gross_end].strip()) for x in rows[:50])
    assert all(x[head.index("PDF"):].split()[0] in ("pending", "done", "failed") for x in rows[:50])


# --------------------------------------------------------------------------- Slack


def test_the_slack_run_report_leads_with_totals_and_attaches_the_long_log(world: BigWorld) -> None:
    from bot.slack.client import make_client
    from bot.slack.progress import ProgressMessage
    from bot.tasks.slack_command import send_run_report

    client = make_client("xoxb-test", world.api.url)
    posted = client.chat_postMessage(channel=f.CHANNEL, text="Billing run 2026-10 — queued")
    msg = ProgressMessage(client, str(posted["channel"]), str(posted["ts"]), "Billing run 2026-10", f.OPERATOR)
    send_run_report(world.db, msg, 1)
    [update] = world.api.calls_to("chat.update")  # accepted: the Block Kit checks passed
    blocks = update["blocks"]
    assert validate_blocks(blocks) == []
    text = _all_text(blocks)
    assert "*Invoices created*\n981" in text or re.search(r"\*Invoices created\*\n[\d,]{3,}", text)
    assert re.search(r"\*Net invoiced\*\n.*EUR.*\n≈ [\d,]+\.\d\d EUR", text)
    assert re.search(r"\*Held\*\n\d+ · ", text) and "*Skipped below threshold*" in text
    assert "*Problems*" in text and "waiting for a decision" in text
    assert "full job log (1," in text and "lines) in the thread as CSV and text" in text
    assert "Document " not in text
    uploads = world.api.calls_to("files.getUploadURLExternal")
    assert sorted(u["filename"].rsplit(".", 1)[1] for u in uploads) == ["csv", "txt"]
    csv_id = next(fid for fid, raw in world.api.uploads.items() if raw.startswith(b"at,level,message"))
    assert world.api.uploads[csv_id].count(b"\n") > 1000
    assert_no_broken_date(text)


def test_billing_exceptions_pages_by_sla_with_show_more(world: BigWorld) -> None:
    total = _open_count(world.db)
    assert total > 100
    user = world.as_user(f.APPROVER)
    user.command("exceptions")
    world.server.wait_idle()
    [first] = world.api.calls_to("response_url")
    assert first["response_type"] == "ephemeral" and validate_blocks(first["blocks"]) == []
    text = _all_text(first["blocks"])
    assert f"*Open exceptions* ({total:,})" in text and f"… and {total - 20:,} more" in text
    assert "billbot " not in text and "--json" not in text  # no CLI hints for Slack users
    assert_no_broken_date(text)
    ids = [int(m) for m in re.findall(r"^• #(\d+) ", text, re.MULTILINE)]
    assert len(ids) == 20
    with world.db.read() as s:
        rows = {e.id: e for e in s.execute(select(BillingException).where(BillingException.id.in_(ids))).scalars()}
    keys = [(rows[i].due_at, -rows[i].amount) for i in ids]
    assert keys == sorted(keys)  # SLA due first, then the larger amount
    [button] = [b for b in first["blocks"] if b["type"] == "actions"][0]["elements"]
    assert button["text"]["text"] == "Show 20 more"
    user.click(button["action_id"], button["value"])
    world.server.wait_idle()
    second = world.api.calls_to("response_url")[-1]
    assert validate_blocks(second["blocks"]) == []
    assert f"*Open exceptions*: 21–40 of {total:,}" in _all_text(second["blocks"])


def test_billing_preinvoices_pages_whole_entries(world: BigWorld) -> None:
    world.as_user(f.OPERATOR).command("preinvoices 2026-10")
    world.server.wait_idle()
    [answer] = world.api.calls_to("response_url")
    assert validate_blocks(answer["blocks"]) == []
    text = _all_text(answer["blocks"])
    assert "*Pre-invoices, 2026-10* (1,124)" in text and "… and 1,104 more" in text
    entries = re.findall(r"^• #\d+ .*$", text, re.MULTILINE)
    assert len(entries) == 20 and all(re.search(r"\d\.\d\d [A-Z]{3}( · SLA <!date\^[^>]+>)?$", e) for e in entries)
    assert "--json" not in text and "billbot " not in text
    assert_no_broken_date(text)


def test_app_home_is_the_approvers_desk_within_slacks_limits(world: BigWorld) -> None:
    world.as_user(f.APPROVER).open_home()
    world.server.wait_idle()
    [call] = world.api.calls_to("views.publish")
    blocks = call["view"]["blocks"]
    assert len(blocks) <= 50
    headers = [b["text"]["text"] for b in blocks if b["type"] == "header"]
    assert headers[0].startswith("Waiting for you (") and headers[1].startswith("Waiting for others (")
    assert "Data and runs" in headers
    text = _all_text(blocks)
    assert re.search(r"… and [\d,]+ more", text)
    assert re.search(r"\*Run 1\* 2026-10 — done, <!date\^[^>]+>: [\d,]{3,} invoice\(s\), net .* \(≈ [\d,]+\.\d\d EUR\)",
                     text)
    assert "*tracker*: last sync" in text or "No sync has run yet." in text
    assert_no_broken_date(text)


def test_digest_with_every_exception_past_its_sla_is_still_sent(world: BigWorld) -> None:
    from bot.slack.client import make_client
    from bot.slack.digest import send_digest

    later = datetime.now(UTC) + timedelta(days=3)  # every open exception has breached its SLA by then
    res = send_digest(world.db, now=later, client=make_client("xoxb-test", world.api.url), channel=f.CHANNEL)
    assert res.sent and res.problems == []
    [post] = world.api.calls_to("chat.postMessage")
    assert validate_blocks(post["blocks"]) == []
    text = _all_text(post["blocks"])
    total = _open_count(world.db)
    assert f":rotating_light: *SLA breaches:* {total:,}" in text and f"… and {total - 10:,} more" in text
    assert re.search(r"\*Open exceptions:\* [\d,]+ · ≈ [\d,]+\.\d\d EUR", text)
    assert "*Last 7 days:* open " in text
    [image] = [b for b in post["blocks"] if b["type"] == "image"]
    assert image["slack_file"]["id"] == res.file_id
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in post["blocks"])
    assert_no_broken_date(text)
