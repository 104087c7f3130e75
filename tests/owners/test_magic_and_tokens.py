"""Emailed sign-in links (single use; GET never signs in) and owner API tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.db import Database
from server.ids import utcnow
from server.models import MagicLink
from server.settings import Settings
from tests.owners.helpers import form_token, make_shop, owner_id_of, session_csrf, signup


@dataclass
class FakeMailer:
    sent: list[tuple[str, str, str]] = field(default_factory=list)

    async def send(self, to: str, subject: str, body: str) -> None:
        self.sent.append((to, subject, body))

    def last_path(self) -> str:
        m = re.search(r"http://testserver(/login/magic/\S+)", self.sent[-1][2])
        assert m
        return m.group(1)


def _request_link(app: Starlette, email: str) -> tuple[FakeMailer, TestClient]:
    mailer = FakeMailer()
    app.state.mailer = mailer
    c = TestClient(app)
    r = c.post("/login/magic", data={"email": email, "csrf_token": form_token(c)})
    assert r.status_code == 200 and "If an account exists" in r.text
    return mailer, c


def test_magic_link_signs_in_once_and_get_never_uses_it(app: Starlette, db: Database) -> None:
    signup(TestClient(app), "ana@example.com")
    mailer, c = _request_link(app, "ana@example.com")
    assert mailer.sent[0][0] == "ana@example.com"
    path = mailer.last_path()
    # A mail scanner (or the owner) opening the link twice uses nothing up.
    for _ in range(2):
        page = TestClient(app).get(path)
        assert page.status_code == 200 and "Press the button" in page.text
    assert "sa_session" not in c.cookies
    with db.read() as s:
        assert s.exec(select(MagicLink)).one().used_at is None
    token = form_token(c, path)
    r = c.post(path, data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    assert c.get("/dashboard").status_code == 200
    # Second use: refused, and no new session.
    other = TestClient(app)
    again = other.post(path, data={"csrf_token": form_token(other)}, follow_redirects=False)
    assert again.status_code == 410 and "no longer works" in again.text
    assert "sa_session" not in other.cookies
    assert TestClient(app).get(path).status_code == 410


def test_magic_link_expires_after_15_minutes(app: Starlette, db: Database) -> None:
    signup(TestClient(app), "ana@example.com")
    mailer, c = _request_link(app, "ana@example.com")
    with db.write() as s:
        link = s.exec(select(MagicLink)).one()
        assert (
            timedelta(minutes=14)
            < link.expires_at.replace(tzinfo=utcnow().tzinfo) - utcnow()
            <= timedelta(minutes=15)
        )
        link.expires_at = utcnow() - timedelta(seconds=1)
        s.add(link)
    path = mailer.last_path()
    assert c.get(path).status_code == 410
    assert c.post(path, data={"csrf_token": form_token(c)}).status_code == 410


def test_magic_link_request_reveals_nothing_about_unknown_emails(app: Starlette) -> None:
    mailer, _ = _request_link(app, "nobody@example.com")
    assert mailer.sent == []


def test_magic_link_stored_hashed(app: Starlette, db: Database) -> None:
    signup(TestClient(app), "ana@example.com")
    mailer, _ = _request_link(app, "ana@example.com")
    token = mailer.last_path().rsplit("/", 1)[1]
    with db.read() as s:
        assert s.exec(select(MagicLink)).one().token_hash != token


def test_magic_links_off_in_production_without_smtp(settings: Settings, db: Database) -> None:
    from server.app import create_app

    app = create_app(
        settings.with_(
            app_env="production", payments="demo", allow_demo_payments_in_production=True
        ),
        db=db,
    )
    c = TestClient(app)
    assert "Email me a sign-in link" not in c.get("/login").text
    assert (
        c.post(
            "/login/magic", data={"email": "a@example.com", "csrf_token": form_token(c)}
        ).status_code
        == 404
    )


def test_api_token_create_use_revoke(app: Starlette, db: Database) -> None:
    browser = TestClient(app)
    signup(browser, "ana@example.com")
    shop_id = make_shop(db, owner_id_of(db, "ana@example.com"))
    r = browser.post(
        "/dashboard/account/tokens", data={"name": "menu sync", "csrf_token": session_csrf(browser)}
    )
    assert r.status_code == 201
    m = re.search(r'<pre id="new-token" class="snippet">(sa_[^<]+)</pre>', r.text)
    assert m, "the plaintext token is shown once"
    token = m.group(1)
    assert token not in browser.get("/dashboard/account").text  # never shown again
    script = TestClient(app)
    auth = {"Authorization": f"Bearer {token}"}
    assert script.get(f"/api/shops/{shop_id}/orders", headers=auth).json() == {
        "orders": [],
        "next_cursor": None,
    }
    # No CSRF for bearer requests (browsers never send the header by themselves).
    assert (
        script.patch("/api/orders/ord_missing", json={"status": "ready"}, headers=auth).status_code
        == 404
    )
    token_id = re.search(
        r"/dashboard/account/tokens/(tok_\w+)/revoke", browser.get("/dashboard/account").text
    )
    assert token_id
    r = browser.post(
        f"/dashboard/account/tokens/{token_id.group(1)}/revoke",
        data={"csrf_token": session_csrf(browser)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert script.get(f"/api/shops/{shop_id}/orders", headers=auth).status_code == 401
    assert (
        script.get(
            f"/api/shops/{shop_id}/orders", headers={"Authorization": "Bearer sa_madeup"}
        ).status_code
        == 401
    )


def test_smtp_mailer_uses_starttls_and_login(monkeypatch: Any) -> None:
    import asyncio

    from server.owners.magic import SmtpMailer

    calls: list[str] = []

    class FakeSMTP:
        def __init__(self, host: str, port: int, timeout: float) -> None:
            calls.append(f"connect {host}:{port}")

        def __enter__(self) -> FakeSMTP:
            return self

        def __exit__(self, *exc: object) -> None:
            calls.append("quit")

        def ehlo(self) -> None:
            calls.append("ehlo")

        def has_extn(self, name: str) -> bool:
            return name == "starttls" and "ehlo" in calls  # like smtplib: known after EHLO

        def starttls(self, context: object) -> None:
            calls.append("starttls")

        def login(self, user: str, password: str) -> None:
            calls.append(f"login {user}")

        def send_message(self, msg: Any) -> None:
            calls.append(f"send {msg['To']} {msg['From']} {msg['Subject']}")

    monkeypatch.setattr("smtplib.SMTP", FakeSMTP)
    settings = Settings(
        smtp_host="mail.example.com",
        smtp_user="bot",
        smtp_password="pw",
        smtp_from="shop@example.com",
    )
    asyncio.run(SmtpMailer(settings).send("ana@example.com", "Your link", "body"))
    assert calls == [
        "connect mail.example.com:587",
        "ehlo",
        "starttls",
        "login bot",
        "send ana@example.com shop@example.com Your link",
        "quit",
    ]


class _SmtpServer:
    """A plain-socket SMTP server on loopback that offers STARTTLS (or not) and records the
    commands it hears; it refuses STARTTLS itself, so a client that asks stops there."""

    def __init__(self, offer_starttls: bool) -> None:
        import socket
        import threading

        self.offer = offer_starttls
        self.heard: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rb") as rf:
            conn.sendall(b"220 test ESMTP\r\n")
            for raw in rf:
                line = raw.decode().strip()
                self.heard.append(line.split(" ")[0].upper())
                verb = self.heard[-1]
                if verb == "EHLO":
                    conn.sendall(b"250-test\r\n" + (b"250-STARTTLS\r\n" if self.offer else b""))
                    conn.sendall(b"250 AUTH PLAIN\r\n")
                elif verb == "STARTTLS":
                    conn.sendall(b"454 TLS not available\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                elif verb == "DATA":
                    conn.sendall(b"354 go\r\n")
                    for body in rf:
                        if body.strip() == b".":
                            break
                    conn.sendall(b"250 ok\r\n")
                else:
                    conn.sendall(b"235 ok\r\n" if verb == "AUTH" else b"250 ok\r\n")
        self.sock.close()


def test_smtp_mailer_asks_for_starttls_before_sending_the_password() -> None:
    """smtplib knows a server's extensions only after EHLO; asking before always said no."""
    import asyncio
    import smtplib

    import pytest

    from server.owners.magic import SmtpMailer

    server = _SmtpServer(offer_starttls=True)
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=server.port, smtp_user="bot", smtp_password="pw"
    )
    with pytest.raises(smtplib.SMTPResponseException):  # our server refuses the TLS handshake
        asyncio.run(SmtpMailer(settings).send("ana@example.com", "Your link", "body"))
    server.thread.join(5)
    assert "STARTTLS" in server.heard
    assert "AUTH" not in server.heard and "MAIL" not in server.heard


def test_smtp_mailer_refuses_clear_text_to_a_remote_server_without_starttls(
    monkeypatch: Any,
) -> None:
    import asyncio
    import smtplib

    import pytest

    from server.owners.magic import SmtpMailer

    server = _SmtpServer(offer_starttls=False)
    real_smtp = smtplib.SMTP

    def remote(host: str, port: int, timeout: float) -> smtplib.SMTP:
        return real_smtp("127.0.0.1", server.port, timeout=timeout)  # "mail.example.com"

    monkeypatch.setattr("smtplib.SMTP", remote)
    settings = Settings(smtp_host="mail.example.com", smtp_user="bot", smtp_password="pw")
    with pytest.raises(smtplib.SMTPNotSupportedError):
        asyncio.run(SmtpMailer(settings).send("ana@example.com", "Your link", "body"))
    server.thread.join(5)
    assert server.heard[0] == "EHLO"
    assert "AUTH" not in server.heard and "MAIL" not in server.heard


def test_smtp_mailer_may_speak_plain_smtp_to_a_relay_on_this_machine() -> None:
    import asyncio

    from server.owners.magic import SmtpMailer

    server = _SmtpServer(offer_starttls=False)
    settings = Settings(smtp_host="127.0.0.1", smtp_port=server.port)
    asyncio.run(SmtpMailer(settings).send("ana@example.com", "Your link", "body"))
    server.thread.join(5)
    assert "MAIL" in server.heard and "DATA" in server.heard


def test_a_failing_mail_server_gives_the_same_page_as_an_unknown_address(
    app: Starlette,
) -> None:
    """A 500 only for known addresses would tell anyone which emails have an account."""
    import smtplib

    class BrokenMailer:
        async def send(self, to: str, subject: str, body: str) -> None:
            raise smtplib.SMTPServerDisconnected("gone")

    signup(TestClient(app), "ana@example.com")
    app.state.mailer = BrokenMailer()
    c = TestClient(app)
    r = c.post("/login/magic", data={"email": "ana@example.com", "csrf_token": form_token(c)})
    assert r.status_code == 200 and "If an account exists" in r.text
