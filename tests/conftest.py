"""Test fixtures shared by the whole suite.

The suite runs on SQLite by default and on PostgreSQL with ``--db postgres`` (or
``BILLBOT_TEST_DB=postgres``); the PostgreSQL server is given by ``BILLBOT_TEST_PG_URL``
(default ``postgresql+psycopg://billbot:billbot@127.0.0.1:5432/billbot``; the role must be able to
create databases). Each xdist worker gets its own database; each test starts on an empty, migrated
schema.

Also here, because tests in several directories use them: ``slack``/``client`` (the fake Slack Web API
of tests/fakes/slack_api.py with ``bot.slack.client.get_client()`` pointed at it), the headless
Chromium fixtures (``browser``, ``page``, ``shots``) and ``no_pdf_rendering``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

import bot.runtime  # noqa: F401 - registers the task families, as every entry point does
from storage.db import Database, dispose_all
from storage.migrate import upgrade
from tests.fakes.slack_api import FakeSlackAPI

DEFAULT_PG = "postgresql+psycopg://billbot:billbot@127.0.0.1:5432/billbot"

# Property tests: no per-example deadline (CI machines vary in speed; correctness is what we test).
settings.register_profile("billbot", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "billbot"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", default=os.environ.get("BILLBOT_TEST_DB", "sqlite"), choices=["sqlite", "postgres"])


def pg_admin_url() -> str:
    return os.environ.get("BILLBOT_TEST_PG_URL", DEFAULT_PG)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--db"))


def _worker() -> str:
    # per xdist worker; a plain run gets its own name too, so parallel runs never share a database
    return os.environ.get("PYTEST_XDIST_WORKER", f"main{os.getpid()}")


def create_pg_database(name: str) -> str:
    admin = pg_admin_url()
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return admin.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(name: str) -> None:
    eng = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


@pytest.fixture(scope="session")
def _template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database made once per worker: a file to copy (SQLite) or a database to truncate (PG)."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        db = Database(f"sqlite:///{path}")
        upgrade(db)
        db.engine.dispose()
        yield str(path)
    else:
        name = f"billbot_test_{_worker()}"
        url = create_pg_database(name)
        db = Database(url)
        upgrade(db)
        yield url
        dispose_all()
        drop_pg_database(name)


def _reset_pg(db: Database) -> None:
    from storage.models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as c:
        c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        c.execute(text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, :h)"), {"h": "0" * 64})
        # procrastinate's tables, when its schema is installed, belong to the test that made them


@pytest.fixture
def db(_template: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """An empty, migrated database; also wired into ``bot.context`` (the CLI and app use it)."""
    from bot import context

    if backend == "sqlite":
        path = tmp_path / "billbot.db"
        shutil.copyfile(_template, path)
        url = f"sqlite:///{path}"
    else:
        url = _template
    database = Database(url)
    if backend == "postgres":
        _reset_pg(database)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BILLBOT_VAR_DIR", str(tmp_path / "var"))
    # a deployment key made up front, as production (distributed mode) requires one to exist
    from bot.signing import load_key

    key_path = tmp_path / "var" / "signing_key.pem"
    load_key(str(key_path), generate=True)
    monkeypatch.setenv("SIGNING_KEY_PATH", str(key_path))
    context.reset()
    yield database
    context.reset()
    dispose_all()


@pytest.fixture
def key(db: Database):  # type: ignore[no-untyped-def]
    """The deployment signing key for this test (generated under the test's var dir)."""
    from bot import context

    return context.get_key()


@pytest.fixture(autouse=True)
def _cli_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """State-changing CLI commands act as a known billbot user (``--as`` / ``BILLBOT_USER``): the
    suite's CLI calls act as the operator of ``tests/factories.py`` (also the demo's operator).
    Tests of the identity rules themselves unset or override it."""
    monkeypatch.setenv("BILLBOT_USER", "U01OPERATOR")


@pytest.fixture(autouse=True)
def _forget_cli_wiring() -> Iterator[None]:
    """A CLI command run in-process wires this process as ``cli`` (when nothing else did); the next
    test starts unwired, like a new process. Apps (web, sandbox) unwire in their own fixtures."""
    yield
    from bot import runtime

    w = runtime.wiring()
    if w is not None and w.role in ("cli", "worker"):
        runtime.reset()


# --- the fake Slack Web API -----------------------------------------------------------------------------------


@pytest.fixture
def slack(db, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlackAPI]:  # type: ignore[no-untyped-def]
    """The fake Slack Web API; ``bot.slack.client.get_client()`` talks to it."""
    from storage.settings import get_settings

    with FakeSlackAPI() as fake:
        monkeypatch.setenv("SLACK_API_URL", fake.url)
        monkeypatch.setenv("MANAGERS_CHANNEL", "billing-managers")
        get_settings.cache_clear()
        yield fake
    get_settings.cache_clear()


@pytest.fixture
def client(slack: FakeSlackAPI):  # type: ignore[no-untyped-def]
    from bot.slack.client import make_client

    return make_client("xoxb-test", slack.url)


# --- headless Chromium (the sandbox page, the end-to-end browser test) -----------------------------------------

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
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "sandbox"


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


@pytest.fixture
def no_pdf_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox flows are about messages and decisions; rendering every invoice's PDF inline
    (BILLBOT_JOBS=inline) in the app's process only competes with Bolt's 3-second ack under CI load.
    PDF rendering and delivery are covered by tests/slack/test_pdf_delivery.py and tests/workflows."""
    from bot import runtime

    monkeypatch.setattr(runtime, "REACTIONS", {k: v for k, v in runtime.REACTIONS.items() if k != "invoice.finalized"})
