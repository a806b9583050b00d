"""Reproducible installs (issue 16 item 9): requirements.lock pins every dependency pyproject.toml names —
runtime, the test extra and the build backend — each pin inside its range and with hashes, and
scripts/setup.sh installs only from it, hash-checked. (CI's scripts/check-lock.sh then compares
``pip freeze`` of the fresh install with the lock.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, tuple[Version, int]]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pins: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", block)
        if m:
            pins[canonicalize_name(m.group(1))] = (Version(m.group(2)), block.count("--hash=sha256:"))
    return pins


def test_every_dependency_is_pinned_within_its_range_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = [*project["project"]["dependencies"], *project["project"]["optional-dependencies"]["test"],
              *project["build-system"]["requires"]]
    pins = _pins()
    assert len(pins) > 50
    assert all(hashes >= 1 for _v, hashes in pins.values()), [n for n, (_v, h) in pins.items() if not h]
    for spec in wanted:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock (run `make lock`)"
        assert req.specifier.contains(pins[name][0], prereleases=True), f"{req.name} {pins[name][0]} not in {req}"


def test_setup_installs_only_the_lock_hash_checked() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "--require-hashes --no-deps -r requirements.lock" in setup
    assert "--no-deps --no-build-isolation -e ." in setup
    assert "pip install -q -e '.[test]'" not in setup  # no unlocked resolution left
    assert "scripts/check-lock.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "\nlock:" in (ROOT / "Makefile").read_text(encoding="utf-8")
