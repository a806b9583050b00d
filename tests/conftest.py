"""Test fixtures shared by the whole suite.

The suite runs on SQLite by default and on PostgreSQL with ``--db postgres`` (or
``BILLBOT_TEST_DB=postgres``); the PostgreSQL server is given by ``BILLBOT_TEST_PG_URL``
(default ``postgresql+psycopg://billbot:billbot@127.0.0.1:5432/billbot``; the role must be able to
create databases). Each xdist worker gets its own database; each test starts on an empty, migrated
schema.
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
def _forget_cli_wiring() -> Iterator[None]:
    """A CLI command run in-process wires this process as ``cli`` (when nothing else did); the next
    test starts unwired, like a new process. Apps (web, sandbox) unwire in their own fixtures."""
    yield
    from bot import runtime

    w = runtime.wiring()
    if w is not None and w.role in ("cli", "worker"):
        runtime.reset()
