"""Operator errors end in one line naming what to change, never a traceback (issue 16 item 8).

Each row runs the real ``billbot`` in a subprocess: the arguments, the environment it runs in, the exit
code (2 for a wrong setting or input, 1 for a failure) and what the one ``error:`` line must name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BILLBOT = str(Path(sys.executable).with_name("billbot"))


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


UNREACHABLE_PG = "postgresql+psycopg://billbot:hunter2@127.0.0.1:1/billbot"

CASES = [
    # (name, args, env, exit code, what the error line names)
    ("digest without Slack credentials", ["digest"], {}, 2, "SLACK_BOT_TOKEN"),
    ("digest with Slack unreachable", ["digest", "--as", "U05ADMIN"],
     {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_API_URL": "http://127.0.0.1:9/api/"}, 1, "SLACK_API_URL"),
    ("serve on a busy port", ["serve", "--no-browser", "--no-clock", "--port", "{busy}", "--sandbox-port", "{free}"],
     {}, 1, "--port / PORT"),
    ("serve with the sandbox on a busy port", ["serve", "--no-browser", "--no-clock", "--port", "{free}",
                                               "--sandbox-port", "{busy}"], {}, 1, "--sandbox-port / SANDBOX_PORT"),
    ("serve over HTTP on a busy port", ["serve", "--no-browser", "--no-clock", "--port", "{busy}"],
     {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, 1, "--port / PORT"),
    ("serve over HTTP without a signing secret", ["serve", "--no-browser"], {"SLACK_BOT_TOKEN": "xoxb-1"}, 2,
     "SLACK_SIGNING_SECRET"),
    ("the sandbox on every interface", ["serve", "--no-browser", "--host", "0.0.0.0"], {}, 2, "--sandbox-public"),
    ("a port out of range", ["serve", "--no-browser", "--port", "70000"], {}, 2, "--port"),
    ("a bad PORT setting", ["invoices", "list"], {"PORT": "eighty"}, 2, "PORT"),
    ("a database URL of another kind", ["invoices", "list"], {"DATABASE_URL": "mysql://x@y/z"}, 2, "DATABASE_URL"),
    ("an unreachable database", ["invoices", "list"], {"DATABASE_URL": UNREACHABLE_PG}, 1, "DATABASE_URL"),
    ("an unreachable database for a run", ["run", "--period", "2026-02", "--as", "U01OPERATOR"],
     {"DATABASE_URL": UNREACHABLE_PG}, 1, "DATABASE_URL"),
    ("a period that is none", ["run", "--period", "2026-13"], {}, 2, "2026-13"),
]


@pytest.mark.parametrize(("name", "args", "env", "code", "names"), CASES, ids=[c[0] for c in CASES])
def test_operator_errors_are_one_line_messages(name: str, args: list[str], env: dict[str, str], code: int,
                                               names: str, busy_port: int, tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DATABASE_URL", "PORT", "SANDBOX_PORT", "BILLBOT_"))}
    full_env = {**base, "PYTHONPATH": str(ROOT), "BILLBOT_VAR_DIR": str(tmp_path / "var"), **env}
    argv = [a.format(busy=busy_port, free=_free_port()) for a in args]
    if "--as" in argv and "DATABASE_URL" not in env:  # the one acting must be a known user: the first grant
        who = argv[argv.index("--as") + 1]           # on a fresh database bootstraps the admin
        subprocess.run([BILLBOT, "users", "grant", who, "admin"], cwd=tmp_path, env=full_env, capture_output=True,
                       text=True, timeout=60, check=True)
    r = subprocess.run([BILLBOT, *argv], cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=60,
                       check=False)
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    assert names in errors[0], errors[0]
    assert "hunter2" not in out  # a password in a URL is never echoed
    assert r.returncode == code, (r.returncode, r.stderr)
