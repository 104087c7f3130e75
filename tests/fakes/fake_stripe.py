"""A small fake of Stripe's Checkout API, speaking Stripe's wire format on loopback.

Form-encoded ``POST /v1/checkout/sessions``, ``GET /v1/checkout/sessions/{id}``,
``POST /v1/checkout/sessions/{id}/expire``. Honours ``Idempotency-Key`` (same key and body:
the first response again; same key, other body: Stripe's ``idempotency_error``) and
``Stripe-Account`` (a connected account's session is not visible without it). Every request is
recorded. Point the SDK at it with ``STRIPE_API_BASE``; :meth:`FakeStripe.complete` plays the
customer paying, :func:`signed_event` builds a webhook delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``line_items[0][price_data][currency]=usd`` -> nested dicts; numeric keys become lists."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        parts = [a or b for a, b in _KEY.findall(raw_key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: listify(v) for k, v in node.items()}
            if node and all(k.isdigit() for k in node):
                return [node[k] for k in sorted(node, key=int)]
        return node

    return listify(root)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, Any]


@dataclass
class FakeStripe:
    api_key_prefix: str = "sk_test_"
    # While True every request gets Stripe's 500 ``api_error`` (with ``Stripe-Should-Retry:
    # false``, so the SDK gives up at once): Stripe is down.
    outage: bool = False
    # The same, for expire requests only (Stripe made the new session but cannot close the old
    # one); ``expire_retryable`` answers them 503 with ``Stripe-Should-Retry: true`` instead.
    expire_outage: bool = False
    expire_retryable: bool = False
    # While set, an expire request is held until the event is set (Stripe hangs), at most
    # ``hold_seconds``; ``answered`` lists the expire requests answered so far.
    expire_gate: threading.Event | None = None
    hold_seconds: float = 30.0
    answered: list[str] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _idempotent: dict[tuple[str | None, str], tuple[str, int, dict[str, Any]]] = field(
        default_factory=dict
    )
    _accounts: dict[str, str | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create, methods=["POST"]),
                Route("/v1/checkout/sessions/{sid}", self._retrieve, methods=["GET"]),
                Route("/v1/checkout/sessions/{sid}/expire", self._expire, methods=["POST"]),
            ]
        )

    # ------------------------------------------------------------------ helpers for tests

    def created(self) -> list[Recorded]:
        return [
            r for r in self.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"
        ]

    def expired_ids(self) -> list[str]:
        return [r.path.split("/")[-2] for r in self.requests if r.path.endswith("/expire")]

    def complete(
        self,
        session_id: str,
        *,
        payment_status: str = "paid",
        amount_total: int | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """The customer finished Checkout (``payment_status`` "unpaid" for a delayed method)."""
        with self._lock:
            s = self.sessions[session_id]
            s["status"] = "complete"
            s["payment_status"] = payment_status
            s["payment_intent"] = s.get("payment_intent") or "pi_" + secrets.token_hex(12)
            if amount_total is not None:
                s["amount_total"] = amount_total
            if currency is not None:
                s["currency"] = currency
            return dict(s)

    # ------------------------------------------------------------------ wire format

    async def _record(self, request: Request) -> Recorded | JSONResponse:
        body = (await request.body()).decode()
        rec = Recorded(
            request.method,
            request.url.path,
            {k.lower(): v for k, v in request.headers.items()},
            decode_form(parse_qsl(body, keep_blank_values=True)),
        )
        with self._lock:
            self.requests.append(rec)
        auth = request.headers.get("authorization", "")
        if not auth.startswith(f"Bearer {self.api_key_prefix}"):
            return _error(401, "invalid_request_error", "Invalid API Key provided.")
        if self.outage:
            return JSONResponse(
                _error_body("api_error", "An unknown error occurred."),
                status_code=500,
                headers={"Stripe-Should-Retry": "false"},
            )
        return rec

    async def _create(self, request: Request) -> JSONResponse:
        rec = await self._record(request)
        if isinstance(rec, JSONResponse):
            return rec
        account = rec.headers.get("stripe-account")
        key = rec.headers.get("idempotency-key")
        fingerprint = json.dumps(rec.form, sort_keys=True)
        with self._lock:
            if key and (account, key) in self._idempotent:
                first_print, status, payload = self._idempotent[(account, key)]
                if first_print != fingerprint:
                    return _error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    )
                return JSONResponse(
                    payload, status_code=status, headers={"Idempotent-Replayed": "true"}
                )
            status, payload = self._new_session(rec.form, account)
            if key:
                self._idempotent[(account, key)] = (fingerprint, status, payload)
        return JSONResponse(payload, status_code=status)

    def _new_session(self, form: dict[str, Any], account: str | None) -> tuple[int, dict[str, Any]]:
        if (
            form.get("mode") != "payment"
            or not form.get("line_items")
            or not form.get("success_url")
        ):
            return 400, _error_body(
                "invalid_request_error", "mode, line_items and success_url are required."
            )
        now = int(time.time())
        expires_at = int(form.get("expires_at") or now + 86400)
        if not now + 1800 <= expires_at <= now + 86400:
            return 400, _error_body(
                "invalid_request_error",
                "expires_at must be between 30 minutes and 24 hours from now.",
                "expires_at",
            )
        currencies = {li["price_data"]["currency"] for li in form["line_items"]}
        if len(currencies) != 1:
            return 400, _error_body(
                "invalid_request_error", "All line items must use the same currency."
            )
        total = sum(
            int(li["price_data"]["unit_amount"]) * int(li["quantity"]) for li in form["line_items"]
        )
        sid = "cs_test_" + secrets.token_hex(16)
        session = {
            "id": sid,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_subtotal": total,
            "amount_total": total,
            "currency": currencies.pop(),
            "client_reference_id": form.get("client_reference_id"),
            "metadata": form.get("metadata") or {},
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "expires_at": expires_at,
            "created": now,
            "livemode": False,
            "payment_intent": None,
            "url": f"https://checkout.stripe.com/c/pay/{sid}",
        }
        self.sessions[sid] = session
        self._accounts[sid] = account
        return 200, dict(session)

    def _find(self, rec: Recorded, sid: str) -> dict[str, Any] | None:
        if sid not in self.sessions or self._accounts.get(sid) != rec.headers.get("stripe-account"):
            return None
        return self.sessions[sid]

    async def _retrieve(self, request: Request) -> JSONResponse:
        rec = await self._record(request)
        if isinstance(rec, JSONResponse):
            return rec
        with self._lock:
            session = self._find(rec, request.path_params["sid"])
            if session is None:
                return _error(
                    404, "invalid_request_error", "No such checkout.session.", "resource_missing"
                )
            return JSONResponse(dict(session))

    async def _expire(self, request: Request) -> JSONResponse:
        try:
            return await self._expire_now(request)
        finally:
            with self._lock:
                self.answered.append(request.path_params["sid"])

    async def _expire_now(self, request: Request) -> JSONResponse:
        rec = await self._record(request)
        if isinstance(rec, JSONResponse):
            return rec
        if self.expire_gate is not None:
            await anyio.to_thread.run_sync(self.expire_gate.wait, self.hold_seconds)
        if self.expire_outage or self.expire_retryable:
            retry = "true" if self.expire_retryable else "false"
            return JSONResponse(
                _error_body("api_error", "An unknown error occurred."),
                status_code=503 if self.expire_retryable else 500,
                headers={"Stripe-Should-Retry": retry},
            )
        with self._lock:
            session = self._find(rec, request.path_params["sid"])
            if session is None:
                return _error(
                    404, "invalid_request_error", "No such checkout.session.", "resource_missing"
                )
            if session["status"] != "open":
                return _error(
                    400,
                    "invalid_request_error",
                    f'Only Checkout Sessions with a status in ["open"] can be expired. This session has a status of "{session["status"]}".',
                )
            session["status"] = "expired"
            return JSONResponse(dict(session))


def _error_body(
    kind: str, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    err: dict[str, Any] = {"type": kind, "message": message}
    if param:
        err["param"] = param
    if code:
        err["code"] = code
    return {"error": err}


def _error(status: int, kind: str, message: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(_error_body(kind, message, code=code), status_code=status)


def make_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    account: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A Stripe event envelope around ``obj`` (a session or a charge). ``account``: the event
    of a connected account, as a Connect platform's endpoint receives it (top-level
    ``account``)."""
    event: dict[str, Any] = {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": int(time.time()),
        "livemode": livemode,
        "type": event_type,
        "data": {"object": obj},
    }
    if account is not None:
        event["account"] = account
    return event


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` for ``payload``: ``t=...,v1=hmac_sha256(secret, "t.payload")``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def signed_event(
    event: dict[str, Any], secret: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one webhook delivery, as Stripe sends it."""
    body = json.dumps(event).encode()
    return body, {
        "Stripe-Signature": sign_payload(body, secret, timestamp),
        "Content-Type": "application/json",
    }
