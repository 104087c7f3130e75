"""Migrations: upgrade and downgrade on SQLite and PostgreSQL, and the migrated schema matches
``server/models.py`` (a model change without a migration fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import server.models  # noqa: F401  (registers every table)
from server.db import make_null_pool_engine
from server.migrate import downgrade, upgrade

TABLES = {name for name in SQLModel.metadata.tables}


def _schema_diff(url: str) -> list[object]:
    engine = make_null_pool_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_null_pool_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _round_trip(url: str) -> None:
    upgrade(url)
    assert _tables(url) == TABLES
    assert _schema_diff(url) == []
    downgrade(url, "base")
    assert _tables(url) == set()
    upgrade(url)  # and back up again: the downgrade left nothing behind
    assert _tables(url) == TABLES


def test_sqlite_upgrade_downgrade_and_schema_matches_models(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path}/m.db")


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    upgrade(url)
    upgrade(url)
    assert _schema_diff(url) == []


def test_upgrade_creates_the_database_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new/dir/m.db"
    upgrade(url)
    assert (tmp_path / "new" / "dir" / "m.db").exists()


@pytest.mark.postgres
def test_postgres_upgrade_downgrade_and_schema_matches_models(pg_database_url: str) -> None:
    _round_trip(pg_database_url)
