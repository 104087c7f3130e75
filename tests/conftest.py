"""Shared fixtures: a migrated database per test, the app, an HTTP client, a live server."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.db import Database
from server.migrate import upgrade
from server.settings import Settings
from tests import services

TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once per run; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


# SHOP_ASSIST_TEST_DB=postgres runs the whole suite on PostgreSQL (TEST_DATABASE_URL): every
# test gets a fresh database cloned from one migrated template (CREATE DATABASE ... TEMPLATE).
TEST_DB = os.environ.get("SHOP_ASSIST_TEST_DB", "sqlite").strip().lower() or "sqlite"


def _pg_admin_url() -> str:
    return services.postgres_url().replace("postgresql+psycopg://", "postgresql://")


def _pg_url_for(admin: str, name: str) -> str:
    root, _, _ = admin.rpartition("/")
    return f"postgresql+psycopg://{root.removeprefix('postgresql://')}/{name}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database used as the template of every test database."""
    import psycopg

    admin = _pg_admin_url()
    name = f"sa_tmpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        upgrade(_pg_url_for(admin, name))
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if TEST_DB == "postgres":
        import psycopg

        template = request.getfixturevalue("pg_template")
        admin = _pg_admin_url()
        name = f"sa_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield _pg_url_for(admin, name)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    target = tmp_path / "shop.db"
    shutil.copy(request.getfixturevalue("migrated_template"), target)
    yield f"sqlite:///{target}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        app_env="development",
        public_base_url="http://testserver",
        database_url=database_url,
        secret_key=TEST_SECRET,
        assistant="offline",
        payments="demo",
        orders_dir=str(tmp_path / "orders"),
        data_dir=str(tmp_path),
        log_level="warning",
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database) -> Starlette:
    return create_app(settings, db=db)


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn in a thread on a free port (in-process transports buffer SSE streams)."""

    def __init__(self, app: Starlette, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=2,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        _reset_sse_app_status()


def _reset_sse_app_status() -> None:
    # sse_starlette keeps a process-global "should exit" flag set by uvicorn's signal handling.
    try:
        from sse_starlette.sse import AppStatus

        AppStatus.should_exit = False
        if hasattr(AppStatus, "should_exit_event"):
            AppStatus.should_exit_event = None
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Factory: ``live_server(app)`` starts uvicorn; every server stops at teardown."""
    started: list[LiveServer] = []

    def start(app: Starlette, port: int | None = None) -> LiveServer:
        server = LiveServer(app, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    base = services.postgres_url()
    name = f"sa_test_{uuid.uuid4().hex[:12]}"
    admin = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    root, _, _ = admin.rpartition("/")
    url = f"postgresql+psycopg://{root.removeprefix('postgresql://')}/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    """A fake OpenAI-compatible server on loopback (see ``tests/fakes/fake_openai.py``);
    point ``openai_base_url`` at ``fake_openai.base_url``."""
    from tests.fakes.fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake


def pytest_report_header(config: Any) -> str:
    return f"SHOP_ASSIST_REQUIRE={','.join(sorted(services.REQUIRED)) or '(none)'}"
