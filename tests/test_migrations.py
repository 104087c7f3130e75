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


def _owner_rows(url: str) -> tuple[int, int, int, int]:
    engine = make_null_pool_engine(url)
    try:
        with engine.connect() as conn:
            one = lambda sql: conn.exec_driver_sql(sql).scalar_one()  # noqa: E731
            return (
                one("SELECT count(*) FROM owner"),
                one("SELECT count(*) FROM ownersession"),
                one("SELECT count(*) FROM apitoken"),
                one("SELECT count(*) FROM shop WHERE owner_id IS NOT NULL"),
            )
    finally:
        engine.dispose()


def _downgrade_keeps_owners(url: str) -> None:
    """Stepping down to the first revision never rebuilds a table in a way that cascades:
    owners keep their sessions, tokens and shops."""
    from datetime import timedelta

    from sqlmodel import Session

    from server import models
    from server.ids import utcnow

    upgrade(url)
    engine = make_null_pool_engine(url)
    try:
        with Session(engine) as session:
            session.add(models.Owner(id="own_1", email="ana@example.com"))
            session.flush()
            session.add(
                models.OwnerSession(
                    id="s" * 64,
                    owner_id="own_1",
                    csrf_token="c",
                    expires_at=utcnow() + timedelta(days=1),
                )
            )
            session.add(models.ApiToken(id="tok_1", owner_id="own_1", token_hash="h" * 64))
            session.add(models.Shop(id="shp_1", owner_id="own_1", name="Cafe", slug="cafe"))
            session.commit()
    finally:
        engine.dispose()
    assert _owner_rows(url) == (1, 1, 1, 1)
    downgrade(url, "0001")
    assert _owner_rows(url) == (1, 1, 1, 1)
    upgrade(url)
    assert _owner_rows(url) == (1, 1, 1, 1)


def test_sqlite_downgrade_keeps_owners_sessions_and_shops(tmp_path: Path) -> None:
    _downgrade_keeps_owners(f"sqlite:///{tmp_path / 'keep.db'}")


@pytest.mark.postgres
def test_postgres_downgrade_keeps_owners_sessions_and_shops(pg_database_url: str) -> None:
    _downgrade_keeps_owners(pg_database_url)
