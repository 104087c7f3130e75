"""Chat fixtures: a coffee shop in the database, an app wired to the fake OpenAI server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette

from server import models
from server.app import create_app
from server.db import Database
from server.settings import Settings
from tests.chat.helpers import make_shop
from tests.orders.menus import coffee_menu


@pytest.fixture
def shop(db: Database) -> models.Shop:
    return make_shop(db, coffee_menu())


@pytest.fixture
def llm_settings(settings: Settings, fake_openai: Any) -> Settings:
    return settings.with_(
        assistant="openai",
        openai_base_url=fake_openai.base_url,
        openai_api_key="sk-test",
        llm_max_retries=0,
        llm_timeout=5.0,
    )


@pytest.fixture
def llm_app(llm_settings: Settings, db: Database) -> Starlette:
    return create_app(llm_settings, db=db)


@pytest.fixture
def serve(live_server: Callable[..., Any]) -> Callable[[Starlette], str]:
    """``serve(app) -> base_url`` (uvicorn in a thread: SSE needs a real server)."""

    def start(app: Starlette) -> str:
        return str(live_server(app).url)

    return start
