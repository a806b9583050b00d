"""Billing workflow tests: variance checks (another module) are switched off unless a test opts in,
so these tests pin the billing core's own behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_variance(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "with_variance" in request.fixturenames:
        return
    import bot.workflows.variance_checks as variance_checks

    def quiet(*_a: Any, **_kw: Any) -> None:
        return None

    monkeypatch.setattr(variance_checks, "run_variance_checks", quiet)


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    from bot.workflows import effects

    got: list[tuple[str, dict[str, Any]]] = []
    names = ("invoice.finalized", "preinvoice.changed", "exception.opened", "run.finished")
    previous = effects.install(lambda name, kw: got.append((name, dict(kw))) if name in names else None)
    yield got
    effects.install(previous)


@pytest.fixture
def with_variance() -> None:
    """Opt in to the real variance checks."""
