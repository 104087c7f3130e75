"""Fixtures for payment tests: a webhook secret, a recording bus, a fake Stripe on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.db import Database
from server.events import MemoryBus
from server.settings import Settings
from tests.fakes.fake_stripe import FakeStripe

WHSEC = "whsec_test_5d3f0c1a9b8e7d6c5b4a"


class RecordingBus(MemoryBus):
    """The in-process bus, remembering every message published (to count fulfilments)."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.published.append((channel, message))
        await super().publish(channel, message)

    def count(self, channel: str, kind: str) -> int:
        return sum(1 for c, m in self.published if c == channel and m.get("type") == kind)


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()


@pytest.fixture
def pay_settings(settings: Settings) -> Settings:
    return settings.with_(stripe_webhook_secret=WHSEC)


@pytest.fixture
def demo_app(pay_settings: Settings, db: Database, bus: RecordingBus) -> Starlette:
    return create_app(pay_settings, db=db, bus=bus)


@pytest.fixture
def demo_client(demo_app: Starlette) -> Iterator[TestClient]:
    with TestClient(demo_app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def fake_stripe(live_server: Callable[..., Any]) -> FakeStripe:
    fake = FakeStripe()
    fake.base = live_server(fake.app).url  # type: ignore[attr-defined]
    return fake


@pytest.fixture
def stripe_settings(pay_settings: Settings, fake_stripe: FakeStripe) -> Settings:
    return pay_settings.with_(
        payments="stripe",
        stripe_secret_key="sk_test_fake_0123456789",
        stripe_api_base=fake_stripe.base,
    )  # type: ignore[attr-defined]


@pytest.fixture
def stripe_app(stripe_settings: Settings, db: Database, bus: RecordingBus) -> Starlette:
    return create_app(stripe_settings, db=db, bus=bus)


@pytest.fixture
def stripe_client(stripe_app: Starlette) -> Iterator[TestClient]:
    with TestClient(stripe_app, base_url="http://testserver") as c:
        yield c
