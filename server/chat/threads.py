"""Threads: commands (create, clone, store messages and events, count usage) and queries
(look up with the token, history, events after a sequence number).

A thread is reached only with its token; the database keeps its SHA-256. A wrong token and an
unknown id both raise the same :class:`~server.errors.NotFound`, so nothing is revealed.
Every function takes a session: the caller owns the (short) transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, insert, update
from sqlmodel import Session, col, select

from server import models
from server.catalog.model import Menu
from server.chat.assistant import ShopContext
from server.errors import NotFound
from server.ids import hash_token, iso, new_id, new_token, tokens_equal, utcnow
from server.orders.cart import Cart

THREAD_NOT_FOUND = "No such conversation."
_THREAD = models.Thread.__table__  # type: ignore[attr-defined]
_MESSAGE = models.Message.__table__  # type: ignore[attr-defined]
_THREAD_EVENT = models.ThreadEvent.__table__  # type: ignore[attr-defined]


# ---------------------------------------------------------------- commands


def create_thread(
    session: Session, shop_id: str, token: str, client_ip: str = "", *, thread_id: str = ""
) -> models.Thread:
    thread = models.Thread(
        id=thread_id or new_id("thr"),
        shop_id=shop_id,
        token_hash=hash_token(token),
        client_ip=client_ip[:64],
    )
    session.add(thread)
    session.flush()
    return thread


def clone_thread(
    session: Session, parent: models.Thread, cart: dict[str, Any] | None = None
) -> models.Thread:
    """The Cashier's copy: role ``cashier``, linked to ``parent``, same token, same messages,
    and ``cart`` (the live cart of the turn) or the parent's stored one."""
    child = models.Thread(
        id=new_id("thr"),
        shop_id=parent.shop_id,
        token_hash=parent.token_hash,
        role="cashier",
        parent_id=parent.id,
        cart=dict(cart if cart is not None else parent.cart),
        client_ip=parent.client_ip,
        message_count=parent.message_count,
    )
    session.add(child)
    session.flush()
    rows = session.exec(
        select(models.Message)
        .where(models.Message.thread_id == parent.id)
        .order_by(models.Message.id)
    ).all()
    for m in rows:
        session.add(
            models.Message(
                thread_id=child.id,
                role=m.role,
                content=m.content,
                tool_calls=m.tool_calls,
                tool_call_id=m.tool_call_id,
                complete=m.complete,
                created_at=m.created_at,
            )
        )
    session.flush()
    return child


def add_message(
    session: Session, thread_id: str, role: str, content: str, *, complete: bool = True
) -> models.Message:
    message = models.Message(thread_id=thread_id, role=role, content=content, complete=complete)
    session.add(message)
    session.flush()
    return message


def insert_message(
    session: Session, thread_id: str, role: str, content: str, *, complete: bool = True
) -> int:
    """Like :func:`add_message`, as one plain INSERT (no ORM object to track); the new id."""
    result = session.execute(
        insert(_MESSAGE),
        {
            "thread_id": thread_id,
            "role": role,
            "content": content,
            "tool_calls": None,
            "tool_call_id": None,
            "complete": complete,
            "created_at": utcnow(),
        },
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def count_message(session: Session, thread_id: str) -> None:
    session.execute(
        update(models.Thread)
        .where(models.Thread.id == thread_id)
        .values(message_count=models.Thread.message_count + 1, updated_at=utcnow())
    )


def insert_events(session: Session, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Append ``(thread_id, {seq, event, data})`` rows of any number of threads (one bulk
    insert: deltas of every running reply are stored together)."""
    if not rows:
        return
    now = utcnow()
    # A Core executemany on the table: the ORM's bulk path costs more than the insert.
    session.execute(
        insert(_THREAD_EVENT),
        [
            {
                "thread_id": thread_id,
                "seq": e["seq"],
                "event": e["event"],
                "data": e["data"],
                "created_at": now,
            }
            for thread_id, e in rows
        ],
    )


def store_events(
    session: Session,
    thread_id: str,
    events: list[dict[str, Any]],
    *,
    messages: int = 0,
    cart: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> None:
    """Append ``[{seq, event, data}]`` to the thread's log and advance ``last_seq``; count
    ``messages`` new messages and store ``cart`` and ``state`` (when given) in the same
    UPDATE of the thread."""
    if not events and not messages and cart is None and state is None:
        return
    insert_events(session, [(thread_id, e) for e in events])
    T = models.Thread
    values: dict[str, Any] = {}
    if events:
        last = max(e["seq"] for e in events)
        values["last_seq"] = case((col(T.last_seq) < last, last), else_=col(T.last_seq))
    if messages:
        values["message_count"] = col(T.message_count) + messages
    if cart is not None:
        values["cart"] = cart
    if state is not None:
        values["state"] = state
    if messages or cart is not None or state is not None:
        values["updated_at"] = utcnow()
    session.execute(update(T).where(col(T.id) == thread_id).values(**values))


@dataclass(frozen=True)
class Opening:
    """A customer's message to store as a turn starts; ``new_token`` creates the thread."""

    shop_id: str
    thread_id: str
    new_token: str | None
    client_ip: str
    message: str


def open_turns(session: Session, turns: list[Opening]) -> None:
    """Store customers' messages, creating each new thread first (with the id its turn
    already uses), the message counted. One INSERT of threads, one of messages and one
    UPDATE (counting the messages of existing threads), whatever the number of turns."""
    now = utcnow()
    new = [t for t in turns if t.new_token is not None]
    if new:
        session.execute(
            insert(_THREAD),
            [
                {
                    "id": t.thread_id,
                    "shop_id": t.shop_id,
                    "token_hash": hash_token(t.new_token or ""),
                    "role": "waiter",
                    "parent_id": None,
                    "cart": {},
                    "state": {},
                    "order_id": None,
                    "message_count": 1 if t.message else 0,
                    "last_seq": 0,
                    "client_ip": t.client_ip[:64],
                    "created_at": now,
                    "updated_at": now,
                }
                for t in new
            ],
        )
    said = [t for t in turns if t.message]
    if said:
        session.execute(
            insert(_MESSAGE),
            [
                {
                    "thread_id": t.thread_id,
                    "role": "user",
                    "content": t.message,
                    "tool_calls": None,
                    "tool_call_id": None,
                    "complete": True,
                    "created_at": now,
                }
                for t in said
            ],
        )
    counted = [t.thread_id for t in said if t.new_token is None]
    if counted:
        session.execute(
            update(_THREAD)
            .where(_THREAD.c.id == bindparam("counted_id"))
            .values(message_count=_THREAD.c.message_count + 1, updated_at=now),
            [{"counted_id": thread_id} for thread_id in counted],
        )


def save_thread_state(
    session: Session,
    thread_id: str,
    *,
    cart: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    order_id: str | None = None,
) -> None:
    values: dict[str, Any] = {"updated_at": utcnow()}
    if cart is not None:
        values["cart"] = cart
    if state is not None:
        values["state"] = state
    if order_id is not None:
        values["order_id"] = order_id
    session.execute(update(models.Thread).where(models.Thread.id == thread_id).values(**values))


ANY_ORDER: Any = object()  # link_order: whatever order the thread points at


def link_order(
    session: Session,
    thread_id: str,
    order_id: str,
    *,
    expected: object = ANY_ORDER,
    state: dict[str, Any] | None = None,
) -> bool:
    """Point the thread at ``order_id`` (and set ``state``), only while it still points at
    ``expected`` (``None``: no order yet). One conditional UPDATE: of two transactions at
    once, the second waits for the first and then finds the thread changed. True when set."""
    values: dict[str, Any] = {"order_id": order_id, "updated_at": utcnow()}
    if state is not None:
        values["state"] = state
    stmt = update(_THREAD).where(_THREAD.c.id == thread_id)
    if expected is None:
        stmt = stmt.where(_THREAD.c.order_id.is_(None))
    elif expected is not ANY_ORDER:
        stmt = stmt.where(_THREAD.c.order_id == expected)
    return session.connection().execute(stmt.values(**values)).rowcount == 1


def add_usage(session: Session, shop_id: str, day: str, tokens: int) -> None:
    """Count model tokens against the shop's day: one upsert, safe between workers."""
    values = {"shop_id": shop_id, "day": day, "tokens": tokens}
    table = models.ShopUsage.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    stmt = upsert(table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "day"], set_={"tokens": table.c.tokens + stmt.excluded.tokens}
    )
    session.execute(stmt)


# ---------------------------------------------------------------- queries


def find_thread(session: Session, shop_id: str, thread_id: Any, token: Any) -> models.Thread:
    """The thread when ``token`` opens it, else NotFound (same answer for every failure)."""
    if not isinstance(thread_id, str) or not isinstance(token, str) or not token:
        raise NotFound(THREAD_NOT_FOUND)
    thread = session.get(models.Thread, thread_id)
    if thread is None or thread.shop_id != shop_id:
        raise NotFound(THREAD_NOT_FOUND)
    if not tokens_equal(thread.token_hash, hash_token(token)):
        raise NotFound(THREAD_NOT_FOUND)
    return thread


def history(session: Session, thread_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The customer-visible conversation: user and assistant text, oldest first."""
    rows = session.exec(
        select(models.Message)
        .where(
            models.Message.thread_id == thread_id,
            models.Message.role.in_(("user", "assistant")),  # type: ignore[attr-defined]
        )
        .order_by(models.Message.id.desc())  # type: ignore[union-attr]
        .limit(limit)
    ).all()
    return [
        {"role": m.role, "content": m.content, "created_at": iso(m.created_at)}
        for m in reversed(rows)
        if m.content
    ]


def events_after(session: Session, thread_id: str, after: int) -> list[dict[str, Any]]:
    rows = session.exec(
        select(models.ThreadEvent)
        .where(models.ThreadEvent.thread_id == thread_id, models.ThreadEvent.seq > after)
        .order_by(models.ThreadEvent.seq)
    ).all()
    return [{"seq": r.seq, "event": r.event, "data": r.data} for r in rows]


def usage_on(session: Session, shop_id: str, day: str) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(models.ShopUsage.tokens), 0)).where(
            models.ShopUsage.shop_id == shop_id, models.ShopUsage.day == day
        )
    ).one()
    return int(total or 0)


def shop_context(shop: models.Shop, now: datetime | None = None) -> ShopContext:
    """What the assistants know of the shop; outside its opening hours it takes no orders,
    as when the owner pauses ordering, and the customer is told when it opens again."""
    from server.shops.hours import is_open

    open_now, closed_reason = is_open(shop.opening_hours, now or utcnow())
    return ShopContext(
        shop_id=shop.id,
        name=shop.name,
        currency=shop.currency,
        greeting=shop.greeting,
        require_name=shop.require_name,
        fulfillment_modes=tuple(shop.fulfillment_modes or ["pickup"]),
        paused=shop.paused or not open_now,
        paused_reason="" if shop.paused else closed_reason,
    )


def thread_view(session: Session, thread: models.Thread) -> dict[str, Any]:
    """``GET .../threads/{id}``: messages, cart, order, role, parent."""
    from server.orders.create import order_to_json

    order = session.get(models.Order, thread.order_id) if thread.order_id else None
    cart = thread.cart or {}
    shop = session.get(models.Shop, thread.shop_id)
    currency = shop.currency if shop else "usd"
    return {
        "thread_id": thread.id,
        "role": thread.role,
        "messages": history(session, thread.id),
        "cart": {
            "lines": cart.get("lines", []),
            "subtotal": cart.get("subtotal", 0),
            "currency": cart.get("currency", currency),
        },
        "order": order_to_json(order) if order else None,
        "parent_id": thread.parent_id,
        "last_event_id": thread.last_seq,
    }


def new_thread_token() -> str:
    return new_token()


# ---------------------------------------------------------------- what a turn reads


def today() -> str:
    """The UTC day the daily token budget counts against."""
    return utcnow().strftime("%Y-%m-%d")


@dataclass(frozen=True)
class ThreadInfo:
    """A thread as read before a turn (plain values, no session attached)."""

    id: str
    role: str
    parent_id: str | None
    order_id: str | None
    state: dict[str, Any]
    last_seq: int = 0
    message_count: int = 0
    new: bool = False


@dataclass
class TurnContext:
    """What a turn needs, read in one short transaction before it starts."""

    shop: ShopContext
    menu: Menu | None
    thread: ThreadInfo
    cart: Cart
    history: list[dict[str, Any]]
    tokens_today: int


def load_turn(
    session: Session,
    shop_id: str,
    thread_id: str | None,
    token: str | None,
    *,
    tokens_today: int | None = None,
) -> TurnContext:
    """The shop, its live menu, the thread (NotFound without the right token; a new one, not
    stored yet, when ``thread_id`` is None), its cart and history, and today's tokens (read
    unless the caller knows them)."""
    from server.catalog.service import load_menu
    from server.shops.service import get_shop

    shop = get_shop(session, shop_id)
    menu = load_menu(session, shop_id)
    currency = menu.currency if menu else shop.currency
    if thread_id is None:
        info = ThreadInfo(new_id("thr"), "waiter", None, None, {}, new=True)
        cart, rows = Cart(currency=currency), []
    else:
        thread = find_thread(session, shop_id, thread_id, token)
        info = ThreadInfo(
            thread.id,
            thread.role,
            thread.parent_id,
            thread.order_id,
            dict(thread.state or {}),
            thread.last_seq,
            thread.message_count,
        )
        cart, rows = Cart.from_state(thread.cart, currency), history(session, thread.id, limit=60)
    return TurnContext(
        shop=shop_context(shop),
        menu=menu,
        thread=info,
        cart=cart,
        history=rows,
        tokens_today=usage_on(session, shop_id, today()) if tokens_today is None else tokens_today,
    )
