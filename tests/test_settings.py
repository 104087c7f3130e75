"""Settings from the environment: defaults, normalisation, and one-line errors naming the variable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from server.settings import Settings, SettingsError

KEY = "k" * 40
STRIPE = {"STRIPE_SECRET_KEY": "sk_test_123"}


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path), **values}


def test_defaults_in_development(tmp_path: Path) -> None:
    s = Settings.from_env(env(tmp_path))
    assert s.app_env == "development" and not s.production
    assert s.public_base_url == "http://127.0.0.1:8000"
    assert s.database_url == f"sqlite:///{tmp_path}/shop.db"
    assert s.assistant == "auto" and not s.use_openai
    assert s.payments == "auto" and not s.use_stripe
    assert s.orders_dir == f"{tmp_path}/orders"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db/shop", "postgresql+psycopg://u:p@db/shop"),
        ("postgresql://u:p@db/shop", "postgresql+psycopg://u:p@db/shop"),
        ("postgresql+psycopg://u@db/shop", "postgresql+psycopg://u@db/shop"),
        ("sqlite:////data/shop.db", "sqlite:////data/shop.db"),
    ],
)
def test_database_urls_are_normalised(tmp_path: Path, given: str, expected: str) -> None:
    assert Settings.from_env(env(tmp_path, DATABASE_URL=given)).database_url == expected


def test_openai_and_stripe_are_chosen_when_their_keys_are_set(tmp_path: Path) -> None:
    s = Settings.from_env(env(tmp_path, OPENAI_API_KEY="sk-x", **STRIPE))
    assert s.use_openai and s.use_stripe
    assert Settings.from_env(env(tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9999/v1")).use_openai


@pytest.mark.parametrize(
    ("values", "variable", "problem"),
    [
        ({"APP_ENV": "staging"}, "APP_ENV", "is not one of development, production"),
        ({"PUBLIC_BASE_URL": "shop.example.com"}, "PUBLIC_BASE_URL", "is not an http(s) origin"),
        (
            {"PUBLIC_BASE_URL": "https://x.example/shop"},
            "PUBLIC_BASE_URL",
            "is not an http(s) origin",
        ),
        ({"DATABASE_URL": "mysql://u@db/x"}, "DATABASE_URL", "unsupported database URL"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY", "at least 32 characters"),
        ({"ASSISTANT": "gpt"}, "ASSISTANT", "is not one of auto, openai, offline"),
        ({"ASSISTANT": "openai"}, "OPENAI_API_KEY", "is required when ASSISTANT=openai"),
        ({"OPENAI_BASE_URL": "ftp://x"}, "OPENAI_BASE_URL", "is not an http(s) URL"),
        ({"PAYMENTS": "paypal"}, "PAYMENTS", "is not one of auto, stripe, demo"),
        ({"PAYMENTS": "stripe"}, "STRIPE_SECRET_KEY", "is required when PAYMENTS=stripe"),
        (
            {"STRIPE_SECRET_KEY": "pk_test_1"},
            "STRIPE_SECRET_KEY",
            "does not look like a Stripe secret key",
        ),
        ({"STRIPE_API_BASE": "localhost:12111"}, "STRIPE_API_BASE", "is not an http(s) URL"),
        ({"REDIS_URL": "http://cache"}, "REDIS_URL", "is not a redis:// URL"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "is not one of"),
        ({"MAX_MESSAGE_CHARS": "many"}, "MAX_MESSAGE_CHARS", "is not a whole number"),
        ({"MAX_MESSAGE_CHARS": "0"}, "MAX_MESSAGE_CHARS", "must be at least 1"),
        ({"ALLOW_DEMO_PAYMENTS": "perhaps"}, "ALLOW_DEMO_PAYMENTS", "is not a boolean"),
        (
            {"APP_ENV": "production", "PUBLIC_BASE_URL": "http://x.example"},
            "PUBLIC_BASE_URL",
            "must be https://",
        ),
        (
            {"APP_ENV": "production", "PUBLIC_BASE_URL": "https://x.example", **STRIPE},
            "SECRET_KEY",
            "is required when APP_ENV=production",
        ),
        (
            {"APP_ENV": "production", "PUBLIC_BASE_URL": "https://x.example", "SECRET_KEY": KEY},
            "PAYMENTS",
            "demo payments are refused",
        ),
        (
            {
                "APP_ENV": "production",
                "PUBLIC_BASE_URL": "https://x.example",
                "SECRET_KEY": KEY,
                "ALLOW_PRIVATE_WEBHOOKS": "1",
                **STRIPE,
            },
            "ALLOW_PRIVATE_WEBHOOKS",
            "is refused when APP_ENV=production",
        ),
    ],
)
def test_bad_values_stop_with_one_line_naming_the_variable(
    tmp_path: Path, values: dict[str, str], variable: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env(tmp_path, **values))
    message = str(info.value)
    assert info.value.variable == variable
    assert message.startswith(f"{variable}: ")
    assert problem in message
    assert "\n" not in message


def test_database_password_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env(tmp_path, DATABASE_URL="mysql://user:hunter2@db/x"))
    assert "hunter2" not in str(info.value)


def test_production_with_everything_set(tmp_path: Path) -> None:
    s = Settings.from_env(
        env(
            tmp_path,
            APP_ENV="production",
            PUBLIC_BASE_URL="https://shop.example.com/",
            SECRET_KEY=KEY,
            **STRIPE,
        )
    )
    assert s.production and s.https and s.use_stripe
    assert not s.private_webhooks_allowed
    assert s.public_base_url == "https://shop.example.com"
    assert s.secret_key == KEY
    assert not (tmp_path / "secret_key").exists()


def test_development_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings.from_env(env(tmp_path)).secret_key
    path = tmp_path / "secret_key"
    assert len(first) >= 32
    assert path.read_text() == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Settings.from_env(env(tmp_path)).secret_key == first


def test_with_returns_a_changed_copy(tmp_path: Path) -> None:
    s = Settings.from_env(env(tmp_path))
    t = s.with_(public_base_url="https://a.example")
    assert t.public_base_url == "https://a.example" and s.public_base_url == "http://127.0.0.1:8000"


def test_private_webhooks_only_in_development(tmp_path: Path) -> None:
    """A notification receiver on localhost is a development convenience, never production's."""
    assert Settings.from_env(env(tmp_path)).private_webhooks_allowed
    assert not Settings.from_env(env(tmp_path, ALLOW_PRIVATE_WEBHOOKS="0")).private_webhooks_allowed
    assert not Settings(app_env="production").private_webhooks_allowed
