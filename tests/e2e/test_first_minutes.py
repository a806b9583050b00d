"""Issue 17, the first minutes: every file the README names is in the repository (nothing points
outside it), the scenario format's annotated example loads, and ``make run PORT=… SANDBOX_PORT=…``
reaches ``billbot serve``."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app
from storage.db import Database

ROOT = Path(__file__).resolve().parents[2]
#: made at run time, never in a clone
RUNTIME = ("var/", ".venv/", ".env", "test-artifacts/")
TOP = ("billing/", "bot/", "storage/", "scripts/", "docs/", "examples/", "tests/", "templates/", "bench/")
ROOT_FILES = ("Makefile", "pyproject.toml", "requirements.lock", "manifest.yaml", ".env.example", "Procfile",
              "gunicorn.conf.py", "README.md")


def named_paths(readme: str) -> set[str]:
    """Paths in backticks and link targets that name files or folders of the repository."""
    tokens = set(re.findall(r"`([^`\s]+)`", readme)) | set(re.findall(r"\]\(([^)\s]+)\)", readme))
    out = set()
    for token in tokens:
        t = token.split("::", 1)[0].split("#", 1)[0]
        if t.startswith("../"):
            out.add(t)  # outside the repository: always wrong
        elif t.startswith(TOP) or t in ROOT_FILES:
            out.add(t)
    return out


def test_every_file_the_readme_names_exists_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paths = named_paths(readme)
    assert {"docs/scenario.md", "examples/scenario.yaml", "scripts/setup.sh", "manifest.yaml"} <= paths
    outside = sorted(p for p in paths if p.startswith("../"))
    assert outside == [], f"the README points outside the repository: {outside}"
    missing = sorted(p for p in paths if not p.startswith(RUNTIME) and not (ROOT / p).exists())
    assert missing == [], f"the README names files that are not in the repository: {missing}"
    scenario_doc = (ROOT / "docs" / "scenario.md").read_text(encoding="utf-8")
    assert "(../examples/scenario.yaml)" in scenario_doc


def test_the_annotated_example_scenario_loads(db: Database) -> None:
    res = CliRunner().invoke(app, ["load", str(ROOT / "examples" / "scenario.yaml")])
    assert res.exit_code == 0, res.output
    assert "advertisers: 2 inserted" in res.stdout and "campaigns: 2 inserted" in res.stdout


def test_make_run_passes_its_ports_to_serve(tmp_path: Path) -> None:
    """``make run PORT=… SANDBOX_PORT=…``: make exports command-line variables to the recipe, and
    scripts/run.sh hands them to ``billbot serve`` (a stand-in billbot records what it was asked)."""
    calls = tmp_path / "calls"
    fake = tmp_path / "billbot"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n', encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "BILLBOT": str(fake), "PORT": "3100", "SANDBOX_PORT": "3101", "CI": "1"}
    subprocess.run(["bash", str(ROOT / "scripts" / "run.sh"), "2026-10", "12"], env=env, check=True,  # noqa: S603
                   timeout=30, cwd=tmp_path)
    lines = calls.read_text(encoding="utf-8").splitlines()
    assert lines == ["db upgrade", "demo --size 12", "cycle --period 2026-10",
                     "serve --port 3100 --sandbox-port 3101 --no-browser"]
    make = subprocess.run(["make", "-s", "-n", "run", "PORT=3100", "SANDBOX_PORT=3101"], cwd=ROOT,  # noqa: S607
                          capture_output=True, text=True, timeout=30, check=True)
    assert "scripts/run.sh" in make.stdout
