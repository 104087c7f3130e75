"""One ``Settings`` object, read from the environment when asked; nothing happens at import.

A bad value raises :class:`SettingsError` whose message is one line naming the variable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse


class SettingsError(Exception):
    """A setting is missing or malformed. ``str(err)`` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


@dataclass(frozen=True)
class Settings:
    app_env: str = "development"
    public_base_url: str = "http://127.0.0.1:8000"
    database_url: str = "sqlite:///var/shop.db"
    secret_key: str = "dev-insecure-key-for-tests-only-000000"
    assistant: str = "auto"
    openai_api_key: str = ""
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    payments: str = "auto"
    allow_demo_payments_in_production: bool = False
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""
    redis_url: str = ""
    orders_dir: str = "var/orders"
    data_dir: str = "var"
    log_level: str = "info"
    # Chat limits (all configurable).
    max_message_chars: int = 2000
    max_thread_messages: int = 100
    thread_rate_per_minute: int = 20
    ip_rate_per_minute: int = 60
    checkout_rate_per_ip: int = 30  # new checkout sessions per client IP per 10 minutes
    shop_daily_tokens: int = 2_000_000
    llm_max_output_tokens: int = 600
    llm_max_tool_rounds: int = 6
    llm_timeout: float = 60.0
    llm_connect_timeout: float = 5.0
    llm_max_retries: int = 2
    # Streams.
    sse_ping_seconds: int = 15
    shutdown_grace_seconds: int = 10
    # Owner accounts.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    # login_max_failures wrong passwords for one email address, each within
    # login_failure_window_seconds of the one before, lock it for login_lockout_seconds.
    login_max_failures: int = 5
    login_lockout_seconds: int = 900
    login_failure_window_seconds: int = 900
    # Development: the order notification webhook may point at this machine or the local network
    # (a receiver on localhost). Never in production: see ``private_webhooks_allowed``.
    allow_private_webhooks: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    @property
    def private_webhooks_allowed(self) -> bool:
        """Whether notification webhooks may reach loopback, private or link-local addresses
        (when saved and when sent); always False in production, where anyone can sign up."""
        return self.allow_private_webhooks and not self.production

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def https(self) -> bool:
        return self.public_base_url.startswith("https://")

    @property
    def use_openai(self) -> bool:
        if self.assistant == "auto":
            return bool(self.openai_api_key or self.openai_base_url)
        return self.assistant == "openai"

    @property
    def use_stripe(self) -> bool:
        if self.payments == "auto":
            return bool(self.stripe_secret_key)
        return self.payments == "stripe"

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests build their own settings this way)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment. Raises :class:`SettingsError`."""
        env = os.environ if env is None else env
        get = lambda name, default="": (env.get(name) or default).strip()  # noqa: E731

        app_env = _choice(get, "APP_ENV", "development", ("development", "production"))
        data_dir = get("DATA_DIR", "var")
        base = get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
        parsed = urlparse(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path:
            raise SettingsError(
                "PUBLIC_BASE_URL",
                f"{base!r} is not an http(s) origin like https://shop.example.com",
            )
        if app_env == "production" and parsed.scheme != "https":
            raise SettingsError("PUBLIC_BASE_URL", "must be https:// when APP_ENV=production")

        db_url = get("DATABASE_URL", f"sqlite:///{data_dir}/shop.db")
        if db_url.startswith("postgres://"):
            db_url = "postgresql+psycopg://" + db_url[len("postgres://") :]
        elif db_url.startswith("postgresql://"):
            db_url = "postgresql+psycopg://" + db_url[len("postgresql://") :]
        if not (db_url.startswith("sqlite:///") or db_url.startswith("postgresql+psycopg://")):
            raise SettingsError(
                "DATABASE_URL",
                f"unsupported database URL {_redact(db_url)!r} (sqlite:/// or postgresql://)",
            )

        secret = get("SECRET_KEY")
        if not secret:
            if app_env == "production":
                raise SettingsError("SECRET_KEY", "is required when APP_ENV=production")
            secret = _persisted_secret(Path(data_dir) / "secret_key")
        elif len(secret) < 32:
            raise SettingsError("SECRET_KEY", "must be at least 32 characters")

        assistant = _choice(get, "ASSISTANT", "auto", ("auto", "openai", "offline"))
        if assistant == "openai" and not (get("OPENAI_API_KEY") or get("OPENAI_BASE_URL")):
            raise SettingsError(
                "OPENAI_API_KEY", "is required when ASSISTANT=openai (or set OPENAI_BASE_URL)"
            )
        openai_base = get("OPENAI_BASE_URL")
        if openai_base and urlparse(openai_base).scheme not in ("http", "https"):
            raise SettingsError("OPENAI_BASE_URL", f"{openai_base!r} is not an http(s) URL")

        payments = _choice(get, "PAYMENTS", "auto", ("auto", "stripe", "demo"))
        stripe_key = get("STRIPE_SECRET_KEY")
        if payments == "stripe" and not stripe_key:
            raise SettingsError("STRIPE_SECRET_KEY", "is required when PAYMENTS=stripe")
        if stripe_key and not stripe_key.startswith(("sk_", "rk_")):
            raise SettingsError(
                "STRIPE_SECRET_KEY", "does not look like a Stripe secret key (sk_... or rk_...)"
            )
        allow_demo = _bool(get, "ALLOW_DEMO_PAYMENTS", False)
        uses_stripe = payments == "stripe" or (payments == "auto" and stripe_key)
        if app_env == "production" and not uses_stripe and not allow_demo:
            raise SettingsError(
                "PAYMENTS",
                "demo payments are refused when APP_ENV=production (set STRIPE_SECRET_KEY, or ALLOW_DEMO_PAYMENTS=1)",
            )
        stripe_api_base = get("STRIPE_API_BASE")
        if stripe_api_base and urlparse(stripe_api_base).scheme not in ("http", "https"):
            raise SettingsError("STRIPE_API_BASE", f"{stripe_api_base!r} is not an http(s) URL")

        allow_private_webhooks = _bool(get, "ALLOW_PRIVATE_WEBHOOKS", app_env != "production")
        if app_env == "production" and allow_private_webhooks:
            raise SettingsError(
                "ALLOW_PRIVATE_WEBHOOKS",
                "is refused when APP_ENV=production (the server would POST into its own network)",
            )

        redis_url = get("REDIS_URL")
        if redis_url and urlparse(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError("REDIS_URL", f"{_redact(redis_url)!r} is not a redis:// URL")

        return cls(
            app_env=app_env,
            public_base_url=base,
            database_url=db_url,
            secret_key=secret,
            assistant=assistant,
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=openai_base,
            openai_model=get("OPENAI_MODEL", "gpt-4o-mini"),
            payments=payments,
            allow_demo_payments_in_production=allow_demo,
            stripe_secret_key=stripe_key,
            stripe_webhook_secret=get("STRIPE_WEBHOOK_SECRET"),
            stripe_api_base=stripe_api_base,
            redis_url=redis_url,
            orders_dir=get("ORDERS_DIR", f"{data_dir}/orders"),
            data_dir=data_dir,
            log_level=_choice(get, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            max_message_chars=_int(get, "MAX_MESSAGE_CHARS", 2000, 1),
            max_thread_messages=_int(get, "MAX_THREAD_MESSAGES", 100, 2),
            thread_rate_per_minute=_int(get, "THREAD_RATE_PER_MINUTE", 20, 1),
            ip_rate_per_minute=_int(get, "IP_RATE_PER_MINUTE", 60, 1),
            checkout_rate_per_ip=_int(get, "CHECKOUT_RATE_PER_IP", 30, 1),
            shop_daily_tokens=_int(get, "SHOP_DAILY_TOKENS", 2_000_000, 0),
            llm_max_output_tokens=_int(get, "LLM_MAX_OUTPUT_TOKENS", 600, 16),
            llm_max_tool_rounds=_int(get, "LLM_MAX_TOOL_ROUNDS", 6, 1),
            llm_timeout=float(_int(get, "LLM_TIMEOUT", 60, 1)),
            sse_ping_seconds=_int(get, "SSE_PING_SECONDS", 15, 1),
            shutdown_grace_seconds=_int(get, "SHUTDOWN_GRACE_SECONDS", 10, 0),
            smtp_host=get("SMTP_HOST"),
            smtp_port=_int(get, "SMTP_PORT", 587, 1),
            smtp_user=get("SMTP_USER"),
            smtp_password=get("SMTP_PASSWORD"),
            smtp_from=get("SMTP_FROM"),
            allow_private_webhooks=allow_private_webhooks,
        )


def _choice(get, name: str, default: str, allowed: tuple[str, ...]) -> str:  # type: ignore[no-untyped-def]
    value = get(name, default).lower()
    if value not in allowed:
        raise SettingsError(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _int(get, name: str, default: int, minimum: int) -> int:  # type: ignore[no-untyped-def]
    raw = get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(name, f"must be at least {minimum}")
    return value


def _bool(get, name: str, default: bool) -> bool:  # type: ignore[no-untyped-def]
    raw = get(name, "1" if default else "0").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(name, f"{raw!r} is not a boolean (1/0, true/false)")


def _persisted_secret(path: Path) -> str:
    """Development only: generate a secret key once and keep it in the data directory."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


def _redact(url: str) -> str:
    p = urlparse(url)
    if p.password:
        return url.replace(f":{p.password}@", ":***@")
    return url
