"""Engines and sessions.

SQLite (embedded default): WAL, foreign keys on, a generous busy timeout, and write transactions
opened with ``BEGIN IMMEDIATE`` so two writers never interleave (pysqlite's own BEGIN handling is
switched off, see SQLAlchemy's "Serializable isolation / Savepoints / Transactional DDL" recipe).
PostgreSQL: psycopg 3; explicit row locks (``SELECT … FOR UPDATE``) where workflows need them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from storage.files import touch_private

_engines: dict[str, Engine] = {}


def make_engine(url: str, **kw: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):
            touch_private(Path(path))
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, **kw)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    return create_engine(url, pool_pre_ping=True, **kw)


def get_engine(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def dispose_all() -> None:
    for e in _engines.values():
        e.dispose()
    _engines.clear()


def is_sqlite(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "sqlite"


class Database:
    """One database: an engine plus session factories. Workflows own their transaction:
    ``with db.transaction() as s: …`` commits on success and rolls back on any error."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        read_engine = self.engine.execution_options(sqlite_begin="DEFERRED")
        self.ReadSession = sessionmaker(read_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.Session() as s, s.begin():
            yield s

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.ReadSession() as s:  # closing ends the transaction; loaded objects stay readable
            yield s
