"""Emailed sign-in links and the mail seam.

A link is single use, lives 15 minutes and is stored hashed. Opening it (GET) only shows a
confirm button; the POST signs in. Mail scanners that prefetch links therefore cannot use them up.
Links are offered when SMTP is configured; in development without SMTP the link goes to the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import update
from sqlmodel import Session, col, select

from server.ids import hash_token, new_id, new_token, utcnow
from server.models import MagicLink, Owner
from server.settings import Settings

MAGIC_LINK_LIFETIME = timedelta(minutes=15)
log = logging.getLogger("shop_assist.owners")


def magic_links_enabled(settings: Settings) -> bool:
    return bool(settings.smtp_host) or not settings.production


def create_magic_link(session: Session, owner_id: str) -> str:
    """A new sign-in link token for the owner (returned once; only its hash is stored)."""
    token = new_token()
    session.add(
        MagicLink(
            id=new_id("mgl"),
            owner_id=owner_id,
            token_hash=hash_token(token),
            expires_at=utcnow() + MAGIC_LINK_LIFETIME,
        )
    )
    return token


def magic_link_is_usable(session: Session, token: str) -> bool:
    """True when the link exists, is unused and unexpired (the GET page asks; nothing changes)."""
    if not token or len(token) > 200:
        return False
    row = session.exec(select(MagicLink).where(MagicLink.token_hash == hash_token(token))).first()
    if row is None or row.used_at is not None:
        return False
    expires = (
        row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=utcnow().tzinfo)
    )
    return expires > utcnow()


def consume_magic_link(session: Session, token: str) -> Owner | None:
    """Use the link up and return its owner; None when unknown, used or expired. One
    conditional UPDATE, so two simultaneous clicks cannot both sign in."""
    if not token or len(token) > 200:
        return None
    now = utcnow()
    digest = hash_token(token)
    result = session.execute(
        update(MagicLink)
        .where(
            col(MagicLink.token_hash) == digest,
            col(MagicLink.used_at).is_(None),
            col(MagicLink.expires_at) > now,
        )
        .values(used_at=now)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    link = session.exec(select(MagicLink).where(MagicLink.token_hash == digest)).one()
    owner = session.get(Owner, link.owner_id)
    if owner is not None:  # an emailed link proves the mailbox; it also lifts a lockout
        owner.failed_logins = 0
        owner.locked_until = None
        session.add(owner)
    return owner


# ---------------------------------------------------------------- mail


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None: ...


class SmtpMailer:
    """Plain SMTP (STARTTLS on 587, TLS on 465), run in a thread so the loop never blocks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, to: str, subject: str, body: str) -> None:
        await asyncio.to_thread(self._send, to, subject, body)

    def _send(self, to: str, subject: str, body: str) -> None:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.smtp_from or s.smtp_user or f"no-reply@{s.smtp_host}"
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        context = ssl.create_default_context()
        if s.smtp_port == 465:
            with smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=20, context=context) as smtp:
                self._deliver(smtp, msg)
        else:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=20) as smtp:
                smtp.ehlo()  # has_extn() knows no extension before EHLO
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                elif not _is_loopback(s.smtp_host):
                    # A stripped STARTTLS offer must not get the password and the link in clear.
                    raise smtplib.SMTPNotSupportedError(
                        f"{s.smtp_host} does not offer STARTTLS; not sending in clear text."
                    )
                self._deliver(smtp, msg)

    def _deliver(self, smtp: smtplib.SMTP, msg: EmailMessage) -> None:
        if self.settings.smtp_user:
            smtp.login(self.settings.smtp_user, self.settings.smtp_password)
        smtp.send_message(msg)


def _is_loopback(host: str) -> bool:
    """A relay on this machine (a local MTA, a development mail catcher) may speak plain SMTP."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LogMailer:
    """Development without SMTP: the message (with its link) is written to the log."""

    async def send(self, to: str, subject: str, body: str) -> None:
        log.warning(
            "email not sent (no SMTP_HOST); development copy follows",
            extra={"to": to, "subject": subject, "body": body},
        )


def build_mailer(settings: Settings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else LogMailer()


def magic_link_email(shop_host: str, url: str) -> tuple[str, str]:
    subject = "Your Shop Assist sign-in link"
    body = (
        f"Someone asked to sign in to Shop Assist ({shop_host}) with this email address.\n\n"
        f"Open this link within 15 minutes and press the button to sign in:\n\n{url}\n\n"
        "The link works once. If you did not ask for it, ignore this email."
    )
    return subject, body
