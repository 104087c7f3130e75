"""Account pages: sign-up, login (password or emailed link), logout, and the account page
(password change, signed-in devices, API tokens)."""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server.db import Database
from server.errors import AppError, NotFound
from server.http import client_ip
from server.models import ApiToken, Owner
from server.owners.auth import (
    SESSION_COOKIE,
    LoginOutcome,
    check_form_csrf,
    check_password_login,
    clear_session_cookie,
    end_other_sessions,
    end_session,
    find_session,
    form_csrf_token,
    normalize_email,
    owners_sessions,
    reading,
    require_owner,
    set_form_csrf_cookie,
    set_session_cookie,
    start_session,
)
from server.owners.magic import (
    build_mailer,
    consume_magic_link,
    create_magic_link,
    magic_link_email,
    magic_link_is_usable,
    magic_links_enabled,
)
from server.owners.pages import owner_page, redirect, render, safe_next
from server.owners.service import change_password, create_owner, find_owner
from server.owners.tokens import create_api_token, revoke_api_token
from server.settings import Settings

LOGIN_IP_LIMIT = (20, 300)  # attempts per IP per 5 minutes, on top of the per-account lockout
SIGNUP_IP_LIMIT = (10, 3600)
MAGIC_EMAIL_LIMIT = (3, 900)
log = logging.getLogger("shop_assist.owners")


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _anon_page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """A page shown before sign-in: its forms carry the double-submit CSRF token."""
    token = form_csrf_token(request)
    settings = request.app.state.settings
    ctx = {"csrf_token": token, "magic_links": magic_links_enabled(settings), **context}
    response = render(request, template, ctx, status_code)
    set_form_csrf_cookie(response, settings, token)
    return response


def _signed_in(request: Request) -> bool:
    with reading(request.app.state.db) as s:
        return find_session(s, request.cookies.get(SESSION_COOKIE, "")) is not None


def _sign_in(request: Request, owner_id: str, target: str) -> Response:
    with request.app.state.db.write() as s:
        token, _ = start_session(s, owner_id, request.headers.get("user-agent", ""))
    response = redirect(safe_next(target))
    set_session_cookie(response, request.app.state.settings, token)
    return response


async def _limited(request: Request, key: str, limit: tuple[int, int]) -> int | None:
    return await request.app.state.limiter.hit(key, limit[0], limit[1])  # type: ignore[no-any-return]


# Password hashing takes tens of milliseconds of CPU: these run in the thread pool so live
# order streams on the same worker do not stall while someone signs in.


def _create_owner_tx(db: Database, email: str, password: str) -> Owner:
    with db.write() as s:
        return create_owner(s, email, password)


def _login_tx(db: Database, settings: Settings, email: str, password: str) -> LoginOutcome:
    with db.write() as s:
        return check_password_login(s, settings, email, password)


def _change_password_tx(
    db: Database, owner_id: str, current: str, new: str, keep: str | None
) -> None:
    with db.write() as s:
        owner = s.get(Owner, owner_id)
        assert owner is not None
        change_password(s, owner, current, new, keep_session_id=keep)


# ---------------------------------------------------------------- sign-up and login


async def signup_page(request: Request) -> Response:
    if _signed_in(request):
        return redirect("/dashboard")
    return _anon_page(request, "auth/signup.html", {"email": ""})


async def signup_submit(request: Request) -> Response:
    await check_form_csrf(request)
    form = await _form(request)
    email = form.get("email", "")
    retry = await _limited(request, f"signup:{client_ip(request)}", SIGNUP_IP_LIMIT)
    if retry:
        return _anon_page(
            request,
            "auth/signup.html",
            {
                "email": email,
                "error": f"Too many sign-ups from your network. Try again in {retry} seconds.",
            },
            429,
        )
    try:
        owner = await run_in_threadpool(
            _create_owner_tx, request.app.state.db, email, form.get("password", "")
        )
    except AppError as exc:
        return _anon_page(
            request, "auth/signup.html", {"email": email, "error": exc.message}, exc.status_code
        )
    return _sign_in(request, owner.id, "/dashboard")


async def login_page(request: Request) -> Response:
    target = safe_next(request.query_params.get("next"))
    if _signed_in(request):
        return redirect(target)
    return _anon_page(request, "auth/login.html", {"email": "", "next": target})


async def login_submit(request: Request) -> Response:
    await check_form_csrf(request)
    form = await _form(request)
    email, target = form.get("email", ""), safe_next(form.get("next"))
    ctx: dict[str, Any] = {"email": email, "next": target}
    retry = await _limited(request, f"login:{client_ip(request)}", LOGIN_IP_LIMIT)
    if retry:
        ctx["error"] = f"Too many sign-in attempts from your network. Try again in {retry} seconds."
        response = _anon_page(request, "auth/login.html", ctx, 429)
        response.headers["Retry-After"] = str(retry)
        return response
    outcome = await run_in_threadpool(
        _login_tx, request.app.state.db, request.app.state.settings, email, form.get("password", "")
    )
    if outcome.owner is None:
        ctx["error"] = outcome.message
        response = _anon_page(request, "auth/login.html", ctx, 429 if outcome.retry_after else 401)
        if outcome.retry_after:
            response.headers["Retry-After"] = str(outcome.retry_after)
        return response
    return _sign_in(request, outcome.owner.id, target)


async def logout(request: Request) -> Response:
    """Ends the session server-side: a copied cookie stops working too."""
    token = request.cookies.get(SESSION_COOKIE, "")
    with reading(request.app.state.db) as s:
        found = find_session(s, token)
    if found is not None:
        await require_owner(request)  # CSRF: a cross-site form must not sign anyone out
        with request.app.state.db.write() as s:
            end_session(s, token)
    response = redirect("/login")
    clear_session_cookie(response, request.app.state.settings)
    return response


# ---------------------------------------------------------------- emailed sign-in links


async def magic_request(request: Request) -> Response:
    settings = request.app.state.settings
    if not magic_links_enabled(settings):
        raise NotFound("Sign-in links are not enabled on this server.")
    await check_form_csrf(request)
    email = normalize_email((await _form(request)).get("email", ""))
    sent = {
        "email": email,
        "next": "/dashboard",
        "notice": "If an account exists for that address, a sign-in link is on its way. It works once, for 15 minutes.",
    }
    if await _limited(request, f"magic:{email}", MAGIC_EMAIL_LIMIT) or await _limited(
        request, f"magic-ip:{client_ip(request)}", (20, 900)
    ):
        return _anon_page(request, "auth/login.html", sent)  # same answer: reveals nothing
    with request.app.state.db.write() as s:
        owner = find_owner(s, email)
        token = create_magic_link(s, owner.id) if owner else None
    if owner and token:
        url = f"{settings.public_base_url}/login/magic/{token}"
        subject, body = magic_link_email(settings.public_base_url, url)
        mailer = getattr(request.app.state, "mailer", None) or build_mailer(settings)
        try:
            await mailer.send(owner.email, subject, body)
        except (OSError, smtplib.SMTPException) as err:
            # The same page as for an unknown address: a 500 here would say the account exists.
            log.error("sign-in link not sent", extra={"error": repr(err)[:300]})
    return _anon_page(request, "auth/login.html", sent)


async def magic_confirm_page(request: Request) -> Response:
    """GET only shows a button: link scanners that fetch it use nothing up."""
    token = request.path_params["token"]
    with reading(request.app.state.db) as s:
        usable = magic_link_is_usable(s, token)
    return _anon_page(
        request, "auth/magic.html", {"token": token, "usable": usable}, 200 if usable else 410
    )


async def magic_confirm(request: Request) -> Response:
    await check_form_csrf(request)
    with request.app.state.db.write() as s:
        owner = consume_magic_link(s, request.path_params["token"])
    if owner is None:
        return _anon_page(request, "auth/magic.html", {"token": "", "usable": False}, 410)
    return _sign_in(request, owner.id, "/dashboard")


# ---------------------------------------------------------------- the account page


def _account_context(request: Request, owner: Owner, **extra: Any) -> dict[str, Any]:
    with reading(request.app.state.db) as s:
        tokens = s.exec(
            select(ApiToken)
            .where(ApiToken.owner_id == owner.id, col(ApiToken.revoked_at).is_(None))
            .order_by(col(ApiToken.created_at).desc())
        ).all()
        sessions = owners_sessions(s, owner.id)
    current = getattr(request.state, "owner_session", None)
    return {
        "tokens": tokens,
        "sessions": sessions,
        "current_session_id": current.id if current else None,
        **extra,
    }


@owner_page
async def account_page(request: Request, owner: Owner) -> Response:
    return render(
        request,
        "dashboard/account.html",
        _account_context(request, owner, saved=request.query_params.get("saved")),
    )


@owner_page
async def password_submit(request: Request, owner: Owner) -> Response:
    form = await _form(request)
    current = getattr(request.state, "owner_session", None)
    if form.get("new_password", "") != form.get("confirm_password", ""):
        ctx = _account_context(request, owner, password_error="The two new passwords differ.")
        return render(request, "dashboard/account.html", ctx, 422)
    try:
        await run_in_threadpool(
            _change_password_tx,
            request.app.state.db,
            owner.id,
            form.get("current_password", ""),
            form.get("new_password", ""),
            current.id if current else None,
        )
    except AppError as exc:
        ctx = _account_context(request, owner, password_error=exc.message)
        return render(request, "dashboard/account.html", ctx, exc.status_code)
    return redirect("/dashboard/account?saved=password")


@owner_page
async def end_other_sessions_submit(request: Request, owner: Owner) -> Response:
    current = getattr(request.state, "owner_session", None)
    with request.app.state.db.write() as s:
        end_other_sessions(s, owner.id, current.id if current else None)
    return redirect("/dashboard/account?saved=sessions")


@owner_page
async def token_create(request: Request, owner: Owner) -> Response:
    name = (await _form(request)).get("name", "").strip()[:100] or "API token"
    with request.app.state.db.write() as s:
        _, plaintext = create_api_token(s, owner.id, name)
    # Shown once, on this response only: it is not stored anywhere we could show it again.
    ctx = _account_context(request, owner, new_token=plaintext, new_token_name=name)
    return render(request, "dashboard/account.html", ctx, 201)


@owner_page
async def token_revoke(request: Request, owner: Owner) -> Response:
    token_id = request.path_params["token_id"]
    with request.app.state.db.write() as s:
        revoke_api_token(s, owner.id, token_id)  # NotFound when the token is not this owner's
    return redirect("/dashboard/account?saved=token")
