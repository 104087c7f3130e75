"""Sign-up, login, logout, lockout, sessions, CSRF, security headers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.db import Database
from server.ids import utcnow
from server.models import LoginThrottle, Owner
from server.settings import Settings
from tests.owners.helpers import PASSWORD, form_token, login, owner_id_of, session_csrf, signup


def test_signup_signs_in_and_shows_the_dashboard(client: TestClient) -> None:
    r = signup(client, "ana@example.com")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "ana@example.com" in page.text and "New shop" in page.text


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1A", "at least 10 characters"),
        ("alllowercaseletters", "two kinds of characters"),
        ("1234567890123", "two kinds of characters"),
        ("ana@example.com", "email address"),
    ],
)
def test_signup_refuses_weak_passwords(client: TestClient, password: str, message: str) -> None:
    r = signup(client, "ana@example.com", password)
    assert r.status_code == 422
    assert message in r.text
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_signup_twice_with_one_email_is_refused(client: TestClient) -> None:
    assert signup(client, "ana@example.com").status_code == 303
    other = TestClient(client.app)
    r = signup(other, "ANA@example.com ")
    assert r.status_code == 409 and "already exists" in r.text


def test_probing_sign_up_for_existing_emails_is_rate_limited(app: Starlette) -> None:
    """Sign-up has to say that an address is taken; probing it for many addresses is slowed down
    like password guessing, and the slowed-down answer says nothing about the address."""
    assert signup(TestClient(app), "ana@example.com").status_code == 303  # 1 of 10 this hour
    prober = TestClient(app)
    codes = [signup(prober, f"guess{i}@example.com", "x").status_code for i in range(9)]
    assert codes == [422] * 9
    r = signup(prober, "ana@example.com")
    assert r.status_code == 429 and "Too many sign-ups" in r.text
    assert "already exists" not in r.text


def test_login_and_logout(app: Starlette) -> None:
    signup(TestClient(app), "ana@example.com")
    with TestClient(app) as c:
        r = login(c, "ana@example.com")
        assert r.status_code == 303
        cookie = r.cookies.get("sa_session") or c.cookies.get("sa_session")
        assert cookie
        assert c.get("/dashboard").status_code == 200
        r = c.post("/logout", data={"csrf_token": session_csrf(c)}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert c.get("/dashboard", follow_redirects=False).headers["location"].startswith("/login")


def test_a_copied_cookie_stops_working_after_logout(app: Starlette) -> None:
    browser = TestClient(app)
    signup(browser, "ana@example.com")
    stolen = browser.cookies.get("sa_session")
    thief = TestClient(app, cookies={"sa_session": stolen})
    assert thief.get("/dashboard").status_code == 200
    browser.post("/logout", data={"csrf_token": session_csrf(browser)})
    assert thief.get("/dashboard", follow_redirects=False).status_code == 303
    assert thief.get("/api/orders/ord_x").status_code == 401


def test_wrong_password_and_unknown_email_get_the_same_answer(app: Starlette) -> None:
    signup(TestClient(app), "ana@example.com")
    c = TestClient(app)
    wrong = login(c, "ana@example.com", "not the password 1")
    unknown = login(c, "bob@example.com", "not the password 1")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password." in wrong.text and "Wrong email or password." in unknown.text
    assert "sa_session" not in c.cookies


@pytest.fixture
def strict_app(settings: Settings, db: Database) -> Starlette:
    from server.app import create_app

    return create_app(settings.with_(login_max_failures=3, login_lockout_seconds=600), db=db)


def test_lockout_after_repeated_failures_then_unlock_after_the_wait(
    strict_app: Starlette, db: Database
) -> None:
    signup(TestClient(strict_app), "ana@example.com")
    c = TestClient(strict_app)
    assert login(c, "ana@example.com", "wrong password 1").status_code == 401
    assert login(c, "ana@example.com", "wrong password 2").status_code == 401
    locked = login(c, "ana@example.com", "wrong password 3")
    assert locked.status_code == 429
    assert "Try again in 10 minutes" in locked.text
    assert int(locked.headers["retry-after"]) > 500
    # Even the right password is refused while locked.
    assert login(c, "ana@example.com").status_code == 429
    with db.write() as s:
        owner = s.get(Owner, owner_id_of(db, "ana@example.com"))
        assert owner is not None
        owner.locked_until = utcnow() - timedelta(seconds=1)
        s.add(owner)
    assert login(c, "ana@example.com").status_code == 303


def _error(page: str) -> str:
    m = re.search(r'class="error"[^>]*>(.*?)<', page, re.S)
    assert m, page
    return " ".join(m.group(1).split())


def test_the_lockout_answer_does_not_tell_whether_the_email_has_an_account(
    strict_app: Starlette,
) -> None:
    signup(TestClient(strict_app), "ana@example.com")
    answers = {}
    for email in ("ana@example.com", "nobody@example.com"):
        c = TestClient(strict_app)
        pages = [login(c, email, f"wrong password {i}") for i in range(4)]
        pages.append(login(c, email))  # even the right password (or none) while locked
        answers[email] = [(r.status_code, _error(r.text)) for r in pages]
        retry = [int(r.headers["retry-after"]) for r in pages[2:]]
        assert all(590 <= s <= 600 for s in retry), retry
    assert answers["ana@example.com"] == answers["nobody@example.com"]
    assert [code for code, _ in answers["nobody@example.com"]] == [401, 401, 429, 429, 429]
    assert "account" not in answers["nobody@example.com"][2][1]


@pytest.mark.parametrize("email", ["ana@example.com", "nobody@example.com"])
def test_every_login_answer_costs_one_password_check(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch, email: str
) -> None:
    """A locked or unknown address is not answered faster than a wrong password (which would
    tell an account apart): each attempt runs exactly one argon2 verification."""
    from server.owners import auth
    from server.owners.service import create_owner

    with db.write() as s:
        create_owner(s, "ana@example.com", PASSWORD)
    real = auth._hasher
    calls: list[str] = []

    class CountingHasher:
        def verify(self, stored: str, password: str) -> bool:
            calls.append(password)
            return real.verify(stored, password)

        def check_needs_rehash(self, stored: str) -> bool:
            return real.check_needs_rehash(stored)

    monkeypatch.setattr(auth, "_hasher", CountingHasher())
    strict = settings.with_(login_max_failures=2, login_lockout_seconds=600)
    outcomes = []
    for i in range(4):  # wrong, wrong (locks), locked, locked
        with db.write() as s:
            outcomes.append(auth.check_password_login(s, strict, email, f"wrong {i}"))
    assert [bool(o.retry_after) for o in outcomes] == [False, True, True, True]
    assert len(calls) == 4


@pytest.mark.parametrize("email", ["ana@example.com", "nobody@example.com"])
def test_a_lockout_ends_after_the_wait_for_any_address(
    db: Database, settings: Settings, email: str
) -> None:
    from server.owners.auth import WRONG_CREDENTIALS, check_password_login
    from server.owners.service import create_owner

    with db.write() as s:
        create_owner(s, "ana@example.com", PASSWORD)
    strict = settings.with_(login_max_failures=2, login_lockout_seconds=600)
    t0 = utcnow()

    def attempt(at: timedelta) -> tuple[str, int]:
        with db.write() as s:
            o = check_password_login(s, strict, email, "wrong guess 1", now=t0 + at)
        return o.message, o.retry_after

    assert attempt(timedelta(0)) == (WRONG_CREDENTIALS, 0)
    assert attempt(timedelta(seconds=1))[1] == 600
    assert attempt(timedelta(seconds=541)) == (
        "Too many failed sign-ins with this email address. Try again in 1 minute, "
        "or use an emailed sign-in link.",
        60,
    )
    assert attempt(timedelta(seconds=602)) == (WRONG_CREDENTIALS, 0)
    with db.read() as s:  # a lockout that ended leaves nothing behind
        assert [r.locked_until for r in s.exec(select(LoginThrottle)).all()] in ([], [None])
    assert attempt(timedelta(seconds=603))[1] == 600  # failures count again after it


def _attempts(
    db: Database, settings: Settings, email: str, times: list[int], window: int = 600
) -> list[int]:
    """Wrong passwords for ``email`` at ``times`` (seconds after a fixed start), with 3 failures
    allowed and a 600 s lockout; each attempt's Retry-After (0: a plain wrong password)."""
    from server.owners.auth import check_password_login
    from server.owners.service import create_owner

    with db.write() as s:
        create_owner(s, "ana@example.com", PASSWORD)
    strict = settings.with_(
        login_max_failures=3, login_lockout_seconds=600, login_failure_window_seconds=window
    )
    t0 = utcnow()
    answers = []
    for at in times:
        with db.write() as s:
            outcome = check_password_login(s, strict, email, "wrong guess 1", t0 + timedelta(0, at))
        answers.append(outcome.retry_after)
    return answers


@pytest.mark.parametrize("email", ["ana@example.com", "nobody@example.com"])
def test_failures_older_than_the_window_are_forgotten_for_any_address(
    db: Database, settings: Settings, email: str
) -> None:
    # Two failures, then a third 601 s after the second: it starts a new count.
    assert _attempts(db, settings, email, [0, 1, 602, 603]) == [0, 0, 0, 0]


@pytest.mark.parametrize("email", ["ana@example.com", "nobody@example.com"])
def test_failures_within_the_window_still_lock_for_any_address(
    db: Database, settings: Settings, email: str
) -> None:
    assert _attempts(db, settings, email, [0, 300, 599]) == [0, 0, 600]


@pytest.mark.parametrize("email", ["ana@example.com", "nobody@example.com"])
def test_a_lockout_longer_than_the_window_is_kept_for_any_address(
    db: Database, settings: Settings, email: str
) -> None:
    assert _attempts(db, settings, email, [0, 1, 2, 300], window=60) == [0, 0, 600, 302]


def test_failures_for_unknown_addresses_leave_no_row_once_the_window_passes(
    db: Database, settings: Settings
) -> None:
    from server.owners.auth import check_password_login
    from server.owners.service import create_owner

    strict = settings.with_(login_max_failures=3, login_failure_window_seconds=600)
    t0 = utcnow()
    for i in range(5):  # one or two wrong guesses each: none of them locked
        for _ in range(1 + i % 2):
            with db.write() as s:
                check_password_login(s, strict, f"guess{i}@example.com", "wrong guess 1", t0)
    with db.read() as s:
        assert len(s.exec(select(LoginThrottle)).all()) == 5
    with db.write() as s:  # any sign-in, here one to an account, clears them out
        create_owner(s, "ana@example.com", PASSWORD)
        signed_in = check_password_login(
            s, strict, "ana@example.com", PASSWORD, t0 + timedelta(0, 601)
        )
        assert signed_in.owner is not None
    with db.read() as s:
        assert s.exec(select(LoginThrottle)).all() == []


def test_too_many_attempts_from_one_address_are_slowed_down(app: Starlette) -> None:
    c = TestClient(app)
    token = form_token(c)
    codes = [
        c.post(
            "/login", data={"email": f"x{i}@example.com", "password": "x", "csrf_token": token}
        ).status_code
        for i in range(21)
    ]
    assert codes[:20] == [401] * 20
    assert codes[20] == 429


def test_password_change_ends_other_sessions(app: Starlette) -> None:
    laptop = TestClient(app)
    signup(laptop, "ana@example.com")
    phone = TestClient(app)
    login(phone, "ana@example.com")
    assert phone.get("/dashboard").status_code == 200
    new = "a brand new pass 7"
    r = laptop.post(
        "/dashboard/account/password",
        data={
            "csrf_token": session_csrf(laptop),
            "current_password": PASSWORD,
            "new_password": new,
            "confirm_password": new,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert laptop.get("/dashboard").status_code == 200  # this device stays signed in
    assert phone.get("/dashboard", follow_redirects=False).status_code == 303
    assert login(TestClient(app), "ana@example.com").status_code == 401
    assert login(TestClient(app), "ana@example.com", new).status_code == 303


def test_password_change_needs_the_current_password(client: TestClient) -> None:
    signup(client, "ana@example.com")
    r = client.post(
        "/dashboard/account/password",
        data={
            "csrf_token": session_csrf(client),
            "current_password": "guess guess 1",
            "new_password": "another pass 99",
            "confirm_password": "another pass 99",
        },
    )
    assert r.status_code == 422 and "current password is not right" in r.text


def test_state_changing_requests_need_the_csrf_token(client: TestClient) -> None:
    signup(client, "ana@example.com")
    assert (
        client.post("/dashboard/shops", data={"name": "Cafe", "currency": "usd"}).status_code == 403
    )
    assert (
        client.post(
            "/dashboard/shops", data={"name": "Cafe", "currency": "usd", "csrf_token": "forged"}
        ).status_code
        == 403
    )
    assert client.patch("/api/orders/ord_x", json={"status": "ready"}).status_code == 403
    assert client.post("/logout").status_code == 403
    r = client.post(
        "/dashboard/shops",
        data={"name": "Cafe", "currency": "usd", "csrf_token": session_csrf(client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    # The header works too (the dashboard's fetch calls use it).
    r = client.patch(
        "/api/orders/ord_x",
        json={"status": "ready"},
        headers={"X-CSRF-Token": session_csrf(client)},
    )
    assert r.status_code == 404


def test_pre_sign_in_forms_need_their_csrf_cookie(app: Starlette) -> None:
    signup(TestClient(app), "ana@example.com")
    c = TestClient(app)
    assert (
        c.post("/login", data={"email": "ana@example.com", "password": PASSWORD}).status_code == 403
    )
    assert (
        c.post(
            "/login",
            data={
                "email": "ana@example.com",
                "password": PASSWORD,
                "csrf_token": "made-up-token-000000000",
            },
        ).status_code
        == 403
    )


def test_session_cookie_flags(client: TestClient) -> None:
    r = signup(client, "ana@example.com")
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("sa_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_under_https(settings: Settings, db: Database) -> None:
    from server.app import create_app

    app = create_app(settings.with_(public_base_url="https://shop.example"), db=db)
    c = TestClient(app, base_url="https://testserver")
    r = signup(c, "ana@example.com")
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("sa_session="))
    assert "Secure" in cookie


@pytest.mark.parametrize("path", ["/login", "/signup", "/dashboard", "/dashboard/account"])
def test_owner_pages_send_a_strict_csp(client: TestClient, path: str) -> None:
    signup(client, "ana@example.com")
    r = client.get(path)
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert (
        "frame-ancestors 'none'" in csp
        and "default-src 'self'" in csp
        and "'unsafe-inline'" not in csp
    )
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script>" not in r.text and "style=" not in r.text


def test_signed_out_pages_go_to_login_and_come_back(app: Starlette) -> None:
    signup(TestClient(app), "ana@example.com")
    c = TestClient(app)
    r = c.get("/dashboard/account", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/dashboard/account"
    token = form_token(c, "/login?next=/dashboard/account")
    r = c.post(
        "/login",
        data={
            "email": "ana@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/dashboard/account",
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/dashboard/account"
    r = c.post(
        "/login",
        data={
            "email": "ana@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/dashboard"
