"""The payments seam: a four-method interface, the Stripe gateway and the demo gateway.

``build_payments(settings)`` chooses one from ``PAYMENTS`` (auto|stripe|demo). Routes talk only
to :class:`Payments`; tests pass a Stripe gateway pointed at a fake Stripe API on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import stripe

from server import models
from server.errors import AppError, UpstreamError
from server.ids import sign
from server.settings import Settings, SettingsError

log = logging.getLogger("shop_assist.payments")

# Stripe's own default: a signed event older than five minutes is refused (a replay).
WEBHOOK_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class CheckoutSession:
    url: str
    session_id: str
    expires_at: datetime


class WebhookRejected(AppError):
    """The webhook body or its signature is not acceptable (400, nothing is written)."""


class WebhookNotConfigured(AppError):
    """No webhook secret: refuse rather than accept events anyone could forge."""

    status_code = 503


class Payments(Protocol):
    """A checkout provider. Every method is async; none holds a database transaction."""

    name: str  # "stripe" | "demo"

    async def create_checkout(
        self,
        order: models.Order,
        shop: models.Shop,
        line_items: list[dict[str, Any]],
        *,
        idempotency_key: str,
        success_url: str,
        cancel_url: str,
        expires_at: datetime,
    ) -> CheckoutSession: ...

    async def parse_event(self, raw_body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """The verified event as a plain dict; raises :class:`WebhookRejected`."""
        ...

    async def retrieve(
        self, session_id: str, stripe_account: str | None = None
    ) -> dict[str, Any]: ...

    async def expire(
        self, session_id: str, stripe_account: str | None = None, *, timeout: float | None = None
    ) -> None:
        """Close an open session so it takes no payment; raises :class:`UpstreamError` when the
        provider cannot be asked. ``timeout``: give up after that many seconds, no retries."""
        ...


def verify_stripe_signature(
    raw_body: bytes, header: str | None, secret: str, *, tolerance: int = WEBHOOK_TOLERANCE_SECONDS
) -> dict[str, Any]:
    """Check ``Stripe-Signature`` (``t=...,v1=hmac_sha256(secret, "t.body")``) on the raw bytes
    and return the event. Old timestamps are replays; far-future ones are refused as well
    (stripe's own check lets those through)."""
    if not secret:
        raise WebhookNotConfigured("Webhook secret is not configured; events are refused.")
    if not header:
        raise WebhookRejected("Missing Stripe-Signature header.")
    try:
        stripe.WebhookSignature.verify_header(raw_body.decode("utf-8"), header, secret, tolerance)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as err:
        raise WebhookRejected(f"Signature verification failed: {err}") from None
    stamps = [p.partition("=")[2] for p in header.split(",") if p.strip().startswith("t=")]
    if not stamps or not stamps[0].isdigit() or int(stamps[0]) > time.time() + tolerance:
        raise WebhookRejected("Signature timestamp is outside the tolerance zone.")
    try:
        event = json.loads(raw_body)
    except json.JSONDecodeError:
        raise WebhookRejected("Body is not JSON.") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise WebhookRejected("Body is not a Stripe event.")
    return event


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name) or headers.get(name.lower())


class StripeHTTPXClient(stripe.HTTPXClient):
    """stripe's httpx client, sending the form body as ``content=``: its ``data=<str>`` is
    deprecated in httpx and warns on every request."""

    def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data
        return args, kwargs


class StripeGateway:
    """Stripe Checkout through the official SDK, async over httpx."""

    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.demo = DemoGateway(settings) if demo_allowed(settings) else None
        self._client: stripe.StripeClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> stripe.StripeClient:
        # httpx pools connections per event loop; a second loop (tests, CLI) gets its own client.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            base = {"api": self.settings.stripe_api_base} if self.settings.stripe_api_base else None
            self._client = stripe.StripeClient(
                self.settings.stripe_secret_key,
                http_client=StripeHTTPXClient(allow_sync_methods=True),
                base_addresses=base,  # type: ignore[arg-type]
                max_network_retries=2,
            )
            self._loop = loop
        return self._client

    async def create_checkout(
        self,
        order: models.Order,
        shop: models.Shop,
        line_items: list[dict[str, Any]],
        *,
        idempotency_key: str,
        success_url: str,
        cancel_url: str,
        expires_at: datetime,
    ) -> CheckoutSession:
        metadata = {"order_id": order.id, "shop_id": shop.id}
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": line_items,
            "client_reference_id": order.id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(expires_at.timestamp()),
        }
        options: dict[str, Any] = {"idempotency_key": idempotency_key}
        if shop.stripe_account_id:
            options["stripe_account"] = shop.stripe_account_id
        try:
            session = await self.client().v1.checkout.sessions.create_async(params, options)  # type: ignore[arg-type]
        except stripe.StripeError as err:
            log.warning(
                "stripe checkout failed",
                extra={
                    "order_id": order.id,
                    "stripe_error": type(err).__name__,
                    "http_status": err.http_status,
                    "detail": (err.user_message or str(err))[:300],
                },
            )
            raise UpstreamError(
                "The payment provider did not accept the checkout; please try again."
            ) from None
        return CheckoutSession(
            url=session.url or "",
            session_id=session.id,
            expires_at=datetime.fromtimestamp(session.expires_at, expires_at.tzinfo),
        )

    async def parse_event(self, raw_body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        return verify_stripe_signature(
            raw_body, _header(headers, "Stripe-Signature"), self.settings.stripe_webhook_secret
        )

    async def retrieve(self, session_id: str, stripe_account: str | None = None) -> dict[str, Any]:
        options = {"stripe_account": stripe_account} if stripe_account else None
        try:
            session = await self.client().v1.checkout.sessions.retrieve_async(
                session_id, options=options
            )  # type: ignore[arg-type]
        except stripe.StripeError as err:
            raise UpstreamError(
                f"Could not read the checkout session ({type(err).__name__})."
            ) from None
        return session.to_dict()

    async def expire(
        self, session_id: str, stripe_account: str | None = None, *, timeout: float | None = None
    ) -> None:
        options: dict[str, Any] = {"stripe_account": stripe_account} if stripe_account else {}
        if timeout is not None:
            options["max_network_retries"] = 0
        call = self.client().v1.checkout.sessions.expire_async(session_id, options=options or None)  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(call, timeout)
        except TimeoutError:
            raise UpstreamError(
                f"Could not expire the checkout session (no answer in {timeout:g} s)."
            ) from None
        except stripe.InvalidRequestError:
            # Already expired or completed: either way it can no longer take a payment for the
            # old cart, except a completed one, which the webhook then flags on amount mismatch.
            log.info("checkout session could not be expired", extra={"session_id": session_id})
        except stripe.StripeError as err:
            raise UpstreamError(
                f"Could not expire the previous checkout session ({type(err).__name__})."
            ) from None


class DemoGateway:
    """Checkout without a payment provider: our own page at ``/pay/demo/{order_id}``.

    Demo sessions live in our database (the order row); paying makes a synthetic
    ``checkout.session.completed`` event that runs through the same handler as Stripe's.
    """

    name = "demo"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def create_checkout(
        self,
        order: models.Order,
        shop: models.Shop,
        line_items: list[dict[str, Any]],
        *,
        idempotency_key: str,
        success_url: str,
        cancel_url: str,
        expires_at: datetime,
    ) -> CheckoutSession:
        # The same key gives the same session, as Stripe's idempotency does.
        session_id = "demo_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        query = urlencode(
            {"token": sign(self.settings.secret_key, "order", order.id), "session_id": session_id}
        )
        url = f"{self.settings.public_base_url}/pay/demo/{order.id}?{query}"
        return CheckoutSession(url=url, session_id=session_id, expires_at=expires_at)

    async def parse_event(self, raw_body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        # Demo events never come over HTTP; a configured secret still lets Stripe-format tools
        # (``stripe trigger``, tests) talk to the endpoint.
        return verify_stripe_signature(
            raw_body, _header(headers, "Stripe-Signature"), self.settings.stripe_webhook_secret
        )

    async def retrieve(self, session_id: str, stripe_account: str | None = None) -> dict[str, Any]:
        # The order row is the truth for demo sessions; nothing here can pay an order.
        return {
            "id": session_id,
            "object": "checkout.session",
            "status": "open",
            "payment_status": "unpaid",
        }

    async def expire(
        self, session_id: str, stripe_account: str | None = None, *, timeout: float | None = None
    ) -> None:
        return None


def is_live_key(secret_key: str) -> bool:
    """True for a live-mode Stripe key (``sk_live_``/``rk_live_``); test keys and no key at all
    (demo payments) mean test mode, so only test-mode events count."""
    return secret_key.startswith(("sk_live_", "rk_live_"))


def demo_allowed(settings: Settings) -> bool:
    return not settings.production or settings.allow_demo_payments_in_production


def build_payments(settings: Settings) -> Payments:
    """The Stripe gateway when configured (``PAYMENTS=stripe``, or ``auto`` with a key), else the
    demo gateway, which is refused when ``APP_ENV=production`` unless explicitly allowed."""
    if settings.use_stripe:
        if not settings.stripe_secret_key:
            raise SettingsError("STRIPE_SECRET_KEY", "is required when PAYMENTS=stripe")
        return StripeGateway(settings)
    if not demo_allowed(settings):
        raise SettingsError(
            "PAYMENTS", "demo payments are refused when APP_ENV=production (set STRIPE_SECRET_KEY)"
        )
    return DemoGateway(settings)


def gateway_for_shop(payments: Payments, shop: models.Shop) -> Payments:
    """A shop set to ``payments_mode="demo"`` uses demo checkout even when Stripe is configured."""
    if shop.payments_mode == "demo":
        demo = getattr(payments, "demo", None)
        if demo is not None:
            return demo  # type: ignore[no-any-return]
    return payments


def gateway_for_order(payments: Payments, order: models.Order) -> Payments:
    """The gateway that made the order's checkout session."""
    if order.payment_mode == "demo" and payments.name != "demo":
        demo = getattr(payments, "demo", None)
        if demo is not None:
            return demo  # type: ignore[no-any-return]
    return payments
