"""Owner sign-in: argon2id passwords, server-side sessions, CSRF, login throttling, and the
``require_owner`` gate every owner route passes through.

    browser  --cookie sa_session (random token)--->  OwnerSession (sha256 of it) -> Owner
    scripts  --Authorization: Bearer TOKEN-------->  ApiToken (sha256 of it)     -> Owner

A state-changing request signed in by cookie must also carry its session's CSRF token (form
field ``csrf_token`` or header ``X-CSRF-Token``). Browsers never attach a bearer token on their
own, so bearer requests need none. Forms shown before sign-in (login, sign-up, magic link) use a
double-submit cookie instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import Response

from server.errors import Forbidden, Unauthorized
from server.ids import hash_token, new_token, sign, tokens_equal, utcnow
from server.models import LoginThrottle, Owner, OwnerSession
from server.owners.tokens import owner_from_bearer
from server.settings import Settings

SESSION_COOKIE = "sa_session"
FORM_CSRF_COOKIE = "sa_csrf"
SESSION_LIFETIME = timedelta(days=14)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory profile
_dummy_hash: str | None = None


# ---------------------------------------------------------------- passwords (pure)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches. Without a stored hash a dummy one is checked anyway, so
    an unknown email takes as long as a wrong password."""
    global _dummy_hash
    if not stored_hash:
        _dummy_hash = _dummy_hash or _hasher.hash("not-a-password-0")
        stored_hash, password = _dummy_hash, password + "\x00"
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    if len(email) > 254 or not _EMAIL.match(email):
        return "Enter a valid email address."
    return None


def password_problems(password: str, email: str = "") -> list[str]:
    """Every rule the password breaks, as sentences for the form (empty list: acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"Use at most {MAX_PASSWORD_LENGTH} characters.")
    classes = sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )
    if password and classes < 2:
        problems.append(
            "Mix at least two kinds of characters (letters, capitals, digits, symbols)."
        )
    folded = password.strip().casefold()
    if email and folded and folded in {email.casefold(), email.split("@")[0].casefold()}:
        problems.append("Do not use your email address as your password.")
    return problems


# ---------------------------------------------------------------- login throttling


@dataclass(frozen=True)
class LoginOutcome:
    owner: Owner | None
    message: str = ""
    retry_after: int = 0


WRONG_CREDENTIALS = "Wrong email or password."


def check_password_login(
    session: Session, settings: Settings, email: str, password: str, now: datetime | None = None
) -> LoginOutcome:
    """Check a password sign-in and record the attempt (failure count, lockout). Returns the
    outcome instead of raising, so the caller's transaction commits the failure count.

    A failure counts towards the lockout while the one before it is at most
    ``login_failure_window_seconds`` old; after a longer pause the count starts again.

    An address without an account is counted and locked out exactly like one with an account
    (in :class:`LoginThrottle`), and every answer costs one argon2 check: neither the message,
    the status nor the time taken tells whether the address has an account."""
    now = now or utcnow()
    email = normalize_email(email)
    _forget_old_failures(session, settings, now)
    # FOR UPDATE: parallel wrong guesses (several workers, PostgreSQL) each add one failure.
    owner = session.exec(select(Owner).where(Owner.email == email).with_for_update()).first()
    record: Owner | LoginThrottle = owner or _throttle_row(session, settings, email, now)
    locked_until = aware(record.locked_until)
    if locked_until and locked_until > now:
        verify_password(None, password)  # the same work as a wrong password
        return _locked(locked_until, now)
    last_failure = aware(record.last_failed_login_at)
    if last_failure is None or last_failure < now - _failure_window(settings):
        # The same schedule on which _forget_old_failures deletes an unknown address's row.
        record.failed_logins = 0
    right = verify_password(owner.password_hash if owner else None, password)
    if owner is None or not right:
        record.failed_logins += 1
        record.last_failed_login_at = now
        record.locked_until = None
        if record.failed_logins >= settings.login_max_failures:
            record.failed_logins = 0
            record.locked_until = now + timedelta(seconds=settings.login_lockout_seconds)
            session.add(record)
            return _locked(record.locked_until, now)
        session.add(record)
        return LoginOutcome(None, WRONG_CREDENTIALS)
    owner.failed_logins = 0
    owner.locked_until = None
    if owner.password_hash and password_needs_rehash(owner.password_hash):
        owner.password_hash = hash_password(password)
    session.add(owner)
    return LoginOutcome(owner)


def _failure_window(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.login_failure_window_seconds)


def _forget_old_failures(session: Session, settings: Settings, now: datetime) -> None:
    """Drop the rows of unknown addresses that are not locked and whose last failure is older
    than the window: they say nothing a missing row does not. Run on every password sign-in,
    so no row outlives the window by more than the time to the next sign-in."""
    locked_until = col(LoginThrottle.locked_until)
    session.execute(
        delete(LoginThrottle).where(
            col(LoginThrottle.last_failed_login_at) < now - _failure_window(settings),
            or_(locked_until.is_(None), locked_until <= now),
        )
    )


def _throttle_row(session: Session, settings: Settings, email: str, now: datetime) -> LoginThrottle:
    """The locked row counting failures for ``email`` (which has no account), made on first use."""
    key = sign(settings.secret_key, "login-throttle", email)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(LoginThrottle)
        .values(id=key, failed_logins=0, locked_until=None, last_failed_login_at=now)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    return session.exec(
        select(LoginThrottle).where(LoginThrottle.id == key).with_for_update()
    ).one()


def _locked(until: datetime, now: datetime) -> LoginOutcome:
    seconds = max(1, int((until - now).total_seconds()))
    minutes = (seconds + 59) // 60
    return LoginOutcome(
        None,
        f"Too many failed sign-ins with this email address. Try again in {minutes} minute"
        f"{'s' if minutes != 1 else ''}, or use an emailed sign-in link.",
        retry_after=seconds,
    )


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


# ---------------------------------------------------------------- sessions


def start_session(
    session: Session, owner_id: str, user_agent: str = ""
) -> tuple[str, OwnerSession]:
    """A new signed-in browser. Returns the cookie token (only its hash is stored)."""
    token = new_token()
    row = OwnerSession(
        id=hash_token(token),
        owner_id=owner_id,
        csrf_token=new_token(24),
        expires_at=utcnow() + SESSION_LIFETIME,
        user_agent=user_agent[:300],
    )
    session.add(row)
    return token, row


def find_session(session: Session, token: str) -> tuple[OwnerSession, Owner] | None:
    """The live session for a cookie token, or None when unknown, ended or expired."""
    if not token or len(token) > 200:
        return None
    row = session.get(OwnerSession, hash_token(token))
    if row is None or row.revoked_at is not None or aware(row.expires_at) <= utcnow():  # type: ignore[operator]
        return None
    owner = session.get(Owner, row.owner_id)
    return (row, owner) if owner else None


def end_session(session: Session, token: str) -> None:
    row = session.get(OwnerSession, hash_token(token)) if token else None
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)


def end_other_sessions(session: Session, owner_id: str, keep_session_id: str | None = None) -> int:
    """End every session of the owner except ``keep_session_id``. Returns how many ended."""
    stmt = (
        update(OwnerSession)
        .where(col(OwnerSession.owner_id) == owner_id, col(OwnerSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    if keep_session_id:
        stmt = stmt.where(col(OwnerSession.id) != keep_session_id)
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=settings.https,
        path="/",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.https
    )


# ---------------------------------------------------------------- CSRF


async def sent_csrf_token(request: Request) -> str:
    """The CSRF token a request carries: header ``X-CSRF-Token`` or form field ``csrf_token``."""
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached by Starlette, so the endpoint can read it again
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


def form_csrf_token(request: Request) -> str:
    """The double-submit token for forms shown before sign-in (cookie value, or a new one the
    caller must set with :func:`set_form_csrf_cookie`)."""
    existing = request.cookies.get(FORM_CSRF_COOKIE, "")
    return existing if 20 <= len(existing) <= 100 else new_token(24)


def set_form_csrf_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        FORM_CSRF_COOKIE, token, httponly=True, samesite="lax", secure=settings.https, path="/"
    )


async def check_form_csrf(request: Request) -> None:
    """Pre-sign-in forms: the field must equal the cookie."""
    cookie = request.cookies.get(FORM_CSRF_COOKIE, "")
    sent = await sent_csrf_token(request)
    if not cookie or not sent or not tokens_equal(cookie, sent):
        raise Forbidden(
            "This form expired or was not sent from this site. Reload the page and try again."
        )


# ---------------------------------------------------------------- the gate


@contextmanager
def reading(db: Any) -> Iterator[Session]:
    """``db.read()`` whose loaded rows stay usable afterwards: pages render them after the
    transaction (a rollback would expire them)."""
    with db.read() as session:
        yield session
        session.expunge_all()


async def require_owner(request: Request) -> Owner:
    """The signed-in owner, by ``Authorization: Bearer`` API token or by session cookie (plus
    the CSRF token on unsafe methods). Raises Unauthorized (401) or Forbidden (403).

    Sets ``request.state.owner`` and, for cookie sessions, ``request.state.owner_session``."""
    cached = getattr(request.state, "owner", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    db = request.app.state.db
    authorization = request.headers.get("authorization")
    if authorization:
        with db.write() as s:  # the token records when it was last used
            owner = owner_from_bearer(s, authorization)
        if owner is None:
            raise Unauthorized("This API token is not valid or was revoked.")
        request.state.owner = owner
        request.state.owner_session = None
        return owner
    token = request.cookies.get(SESSION_COOKIE, "")
    with reading(db) as s:
        found = find_session(s, token)
    if found is None:
        raise Unauthorized("Sign in first.")
    row, owner = found
    if request.method not in SAFE_METHODS:
        sent = await sent_csrf_token(request)
        if not sent or not tokens_equal(sent, row.csrf_token):
            raise Forbidden("Missing or wrong CSRF token. Reload the page and try again.")
    request.state.owner = owner
    request.state.owner_session = row
    return owner


def owners_sessions(session: Session, owner_id: str) -> list[OwnerSession]:
    """The owner's live sessions, newest first (for the account page)."""
    rows = session.exec(
        select(OwnerSession)
        .where(OwnerSession.owner_id == owner_id, col(OwnerSession.revoked_at).is_(None))
        .order_by(col(OwnerSession.created_at).desc())
    ).all()
    now = utcnow()
    return [r for r in rows if aware(r.expires_at) > now]  # type: ignore[operator]
