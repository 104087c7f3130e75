"""Owner commands and the owner-scoped queries every dashboard and API route goes through.

Isolation lives here: a shop or order is only ever looked up together with its owner's id, and
anything that is not the caller's is reported exactly like something that does not exist.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from server.errors import Conflict, NotFound, Unprocessable
from server.ids import new_id
from server.models import Order, Owner, Shop
from server.owners.auth import (
    email_problem,
    end_other_sessions,
    hash_password,
    normalize_email,
    password_problems,
    verify_password,
)

# ---------------------------------------------------------------- owners


def find_owner(session: Session, email: str) -> Owner | None:
    return session.exec(select(Owner).where(Owner.email == normalize_email(email))).first()


def create_owner(session: Session, email: str, password: str | None = None) -> Owner:
    """A new owner. Without a password the owner signs in by emailed link until one is set.

    Raises Unprocessable (bad email or password) or Conflict (email taken)."""
    email = normalize_email(email)
    problem = email_problem(email)
    if problem:
        raise Unprocessable(problem, field="email")
    if password is not None:
        _check_password(password, email)
    if find_owner(session, email) is not None:
        raise Conflict("An account with this email already exists. Sign in instead.", field="email")
    owner = Owner(
        id=new_id("own"),
        email=email,
        password_hash=hash_password(password) if password is not None else None,
    )
    session.add(owner)
    session.flush()
    return owner


def set_password(
    session: Session, owner: Owner, password: str, *, keep_session_id: str | None = None
) -> None:
    """Set a new password and end every other session of the owner (a stolen cookie stops
    working the moment the password changes)."""
    _check_password(password, owner.email)
    owner.password_hash = hash_password(password)
    owner.failed_logins = 0
    owner.locked_until = None
    session.add(owner)
    end_other_sessions(session, owner.id, keep_session_id)


def change_password(
    session: Session, owner: Owner, current: str, new: str, *, keep_session_id: str | None
) -> None:
    """The account page's password change: the current password must be right (when set)."""
    if owner.password_hash and not verify_password(owner.password_hash, current):
        raise Unprocessable("Your current password is not right.", field="current_password")
    set_password(session, owner, new, keep_session_id=keep_session_id)


def _check_password(password: str, email: str) -> None:
    problems = password_problems(password, email)
    if problems:
        raise Unprocessable(" ".join(problems), field="password", problems=problems)


# ---------------------------------------------------------------- owner-scoped lookups


def owner_shops(session: Session, owner_id: str) -> list[Shop]:
    return list(
        session.exec(
            select(Shop).where(Shop.owner_id == owner_id).order_by(col(Shop.created_at).desc())
        ).all()
    )


def owned_shop(session: Session, owner_id: str, shop_id: str) -> Shop:
    """The owner's shop, or NotFound (also when it exists but belongs to someone else)."""
    shop = session.exec(select(Shop).where(Shop.id == shop_id, Shop.owner_id == owner_id)).first()
    if shop is None:
        raise NotFound("No such shop.")
    return shop


def owned_order(
    session: Session, owner_id: str, order_id: str, shop_id: str | None = None
) -> tuple[Order, Shop]:
    """The order and its shop when the shop is the owner's, else NotFound."""
    stmt = (
        select(Order, Shop)
        .join(Shop, col(Shop.id) == col(Order.shop_id))
        .where(Order.id == order_id, Shop.owner_id == owner_id)
    )
    if shop_id is not None:
        stmt = stmt.where(Order.shop_id == shop_id)
    row = session.exec(stmt).first()
    if row is None:
        raise NotFound("No such order.")
    return row[0], row[1]
