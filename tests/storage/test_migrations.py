"""Migrations build the schema on an empty database, on both backends, and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from storage.db import Database
from storage.migrate import current, upgrade
from storage.models import AuditHead, Base

#: The latest migration: every database is upgraded to it.
HEAD = "0012"


def test_upgrade_builds_every_table_and_is_repeatable(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert current(db) == HEAD
    upgrade(db)  # a second upgrade is a no-op
    with db.read() as s:
        head = s.execute(select(AuditHead)).scalar_one()
    assert head.last_id == 0 and head.last_hash == "0" * 64


def test_the_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_on_a_brand_new_database(backend: str, tmp_path) -> None:
    if backend == "sqlite":
        fresh = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
        upgrade(fresh)
        assert current(fresh) == HEAD
        fresh.engine.dispose()
        return
    from tests.conftest import create_pg_database, drop_pg_database

    url = create_pg_database("billbot_fresh_migration")
    try:
        fresh = Database(url)
        upgrade(fresh)
        assert current(fresh) == HEAD
        fresh.engine.dispose()
    finally:
        drop_pg_database("billbot_fresh_migration")
