"""Headless Chromium for the sandbox's browser tests (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("BILLBOT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "sandbox"


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    # module scope: Playwright's sync API keeps an event loop running in this thread while it is
    # open, and later tests in the same worker (asyncio.run in Procrastinate's tools) need it gone
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US", timezone_id="Europe/Berlin")
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def shots() -> Iterator[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield ARTIFACTS


@pytest.fixture(autouse=True)
def _no_pdf_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox flows are about messages and decisions; rendering every invoice's PDF inline
    (BILLBOT_JOBS=inline) in the app's process only competes with Bolt's 3-second ack under CI load.
    PDF rendering and delivery are covered by tests/delivery."""
    from bot import runtime

    monkeypatch.setattr(runtime, "REACTIONS", {k: v for k, v in runtime.REACTIONS.items() if k != "invoice.finalized"})
