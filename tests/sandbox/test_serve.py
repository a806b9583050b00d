"""`billbot serve` without Slack credentials: the sandbox and the app start, the URL is printed, a command
typed into the sandbox reaches billbot signed and is answered."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
from typer.testing import CliRunner

from storage.db import Database
from tests.sandbox import flows
from tests.sandbox.scenario import OPERATOR


def test_serve_without_credentials_starts_the_sandbox(db: Database, key: Any, tmp_path: Any) -> None:
    flows.prepare(db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env["BILLBOT_VAR_DIR"] = str(tmp_path / "var")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve", "--port", "0", "--sandbox-port", "0",
         "--no-browser", "--no-clock"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"sandbox workspace: (http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        assert httpx.get(url, timeout=5).status_code == 200
        state = httpx.get(f"{url}sandbox/state", params={"user": OPERATOR}, timeout=5).json()
        assert OPERATOR in [u["id"] for u in state["users"]]
        channel = next(c["id"] for c in state["channels"] if c["name"] == "billing-exceptions")
        # the variance found when the pre-invoices were made was posted at start
        msgs = httpx.get(f"{url}sandbox/state", params={"user": OPERATOR, "channel": channel}, timeout=5).json()
        assert any("Variance" in m["text"] for m in msgs["messages"])
        out = httpx.post(f"{url}sandbox/command", json={"user": OPERATOR, "channel": channel, "text": "/billing help"},
                         timeout=10).json()
        assert out["ok"] and out["status"] == 200  # billbot verified the sandbox's signature
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_rejects_a_bad_port() -> None:
    from bot.cli import app

    r = CliRunner().invoke(app, ["serve", "--port", "70000", "--no-browser"])
    assert r.exit_code == 2
    assert "--port" in r.output


def test_serve_over_http_needs_a_signing_secret(monkeypatch: Any) -> None:
    from bot import context
    from bot.cli import app

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-real")
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    context.reset()
    try:
        r = CliRunner().invoke(app, ["serve", "--no-browser"])
    finally:
        monkeypatch.undo()
        context.reset()
    assert r.exit_code == 2 and "SLACK_SIGNING_SECRET" in r.output
