"""Rendering owner pages: a strict Content-Security-Policy on every one, the CSRF token in the
template context, and the ``owner_page`` wrapper that sends signed-out browsers to the login."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlparse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server.catalog.money import format_amount
from server.errors import NotFound, Unauthorized
from server.models import Owner
from server.owners.auth import SAFE_METHODS, require_owner

# No inline script or style anywhere on owner pages; nobody may frame them.
OWNER_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": OWNER_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

OwnerHandler = Callable[[Request, Owner], Awaitable[Response]]


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """Render an owner page with the security headers and the session's CSRF token."""
    ctx = dict(context or {})
    session = getattr(request.state, "owner_session", None)
    ctx.setdefault("csrf_token", session.csrf_token if session else "")
    ctx.setdefault("owner", getattr(request.state, "owner", None))
    templates = request.app.state.templates
    templates.env.filters.setdefault("money", format_amount)
    response = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    return secure(response)


def redirect(url: str) -> Response:
    return secure(RedirectResponse(url, status_code=303))


def safe_next(target: str | None) -> str:
    """Only same-site paths after login (an open redirect would make a fine phishing link)."""
    if not target:
        return "/dashboard"
    p = urlparse(target)
    if (
        p.scheme
        or p.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
    ):
        return "/dashboard"
    return target


def owner_page(handler: OwnerHandler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a page handler ``(request, owner)``: signed-out GETs go to ``/login?next=...``;
    anything else that is not signed in, or lacks the CSRF token, gets the JSON 401/403. A
    browser asking for something that is not there (or not theirs) gets an HTML 404 page."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            owner = await require_owner(request)
        except Unauthorized:
            if request.method in SAFE_METHODS and "text/event-stream" not in request.headers.get(
                "accept", ""
            ):
                return redirect(f"/login?next={quote(request.url.path)}")
            raise
        try:
            return secure(await handler(request, owner))
        except NotFound as exc:
            if request.method not in SAFE_METHODS or "text/html" not in request.headers.get(
                "accept", ""
            ):
                raise
            return render(request, "dashboard/not_found.html", {"detail": exc.message}, 404)

    return endpoint


def owner_api(handler: OwnerHandler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an API handler ``(request, owner)``: token or session auth, JSON errors."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        owner = await require_owner(request)
        response = await handler(request, owner)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return endpoint
