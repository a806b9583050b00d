"""Workflow tests (billing runs, pre-invoices, variance checks, documents and evidence packs).

``no_variance``: the billing-workflow modules (test_billing_run, test_preinvoices, test_run_chunks,
test_cli_billing) switch variance checks (another module) off unless a test opts in with
``with_variance``, so they pin the billing core's own behaviour. ``world``/``out_dir``: the documents
tests' invoices (tests/factories.py, documents section) and output folder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.factories import World, build_world

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def no_variance(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
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


@pytest.fixture
def world(db, key) -> World:  # type: ignore[no-untyped-def]
    return build_world(db, key)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "documents"
