"""Shared by the chat tests: a shop with a catalog in the database, an SSE reader."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from server import models
from server.catalog.model import Menu
from server.db import Database
from server.ids import new_id


def make_shop(db: Database, menu: Menu, **fields: Any) -> models.Shop:
    """A shop whose live catalog is ``menu`` (rows written as an import would)."""
    with db.write() as s:
        shop = models.Shop(
            id=new_id("shp"),
            name=fields.pop("name", "Test Cafe"),
            slug=new_id("s"),
            currency=menu.currency,
            live_catalog_version=menu.version,
            **fields,
        )
        s.add(shop)
        s.flush()
    add_version(db, shop.id, menu)
    return shop


def add_version(db: Database, shop_id: str, menu: Menu) -> None:
    """Store ``menu`` as catalog version ``menu.version`` and make it live."""
    with db.write() as s:
        shop = s.get(models.Shop, shop_id)
        assert shop is not None
        shop.live_catalog_version = menu.version
        s.add(shop)
        catalog = models.Catalog(
            shop_id=shop.id, version=menu.version, product_count=len(menu.products)
        )
        s.add(catalog)
        s.flush()
        for position, p in enumerate(menu.products):
            s.add(
                models.Product(
                    catalog_id=catalog.id,
                    product_id=p.id,
                    position=position,
                    name=p.name,
                    category=p.category,
                    description=p.description,
                    price=p.price,
                    options=[g.to_json() for g in p.options],
                    tags=list(p.tags),
                    available=p.available,
                )
            )


def sell_out(db: Database, shop_id: str, product_id: str) -> None:
    """Mark a product of the live catalog sold out, as the owner's switch does."""
    from sqlmodel import select

    with db.write() as s:
        shop = s.get(models.Shop, shop_id)
        assert shop is not None
        catalog = s.exec(
            select(models.Catalog).where(
                models.Catalog.shop_id == shop_id,
                models.Catalog.version == shop.live_catalog_version,
            )
        ).one()
        product = s.exec(
            select(models.Product).where(
                models.Product.catalog_id == catalog.id, models.Product.product_id == product_id
            )
        ).one()
        product.available = False
        shop.menu_revision += 1
        s.add(product)
        s.add(shop)


@dataclass
class Event:
    id: int | None
    event: str
    data: dict[str, Any]


@dataclass
class Stream:
    status: int
    headers: dict[str, str]
    events: list[Event] = field(default_factory=list)
    body: Any = None

    def of(self, name: str) -> list[Event]:
        return [e for e in self.events if e.event == name]

    @property
    def text(self) -> str:
        return "".join(e.data["text"] for e in self.of("delta"))

    @property
    def thread(self) -> dict[str, Any]:
        return self.of("thread")[0].data


def parse_sse(lines: Any, stop_after: int | None = None, *, to_end: bool = False) -> list[Event]:
    """Events from SSE lines; stops after ``done``/``error`` (unless ``to_end``: when the
    server closes) or after ``stop_after`` events."""
    events: list[Event] = []
    current: dict[str, Any] = {}
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if data:
                ev = Event(
                    int(current["id"]) if current.get("id") else None,
                    current.get("event", "message"),
                    json.loads("\n".join(data)),
                )
                events.append(ev)
                terminal = ev.event in ("done", "error") and not to_end
                if terminal or (stop_after and len(events) >= stop_after):
                    return events
            current, data = {}, []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "data":
            data.append(value)
        else:
            current[key] = value
    return events


def post_chat(
    base_url: str, shop_id: str, timeout: float = 20.0, stop_after: int | None = None, **body: Any
) -> Stream:
    """POST a message and read the stream to its end (or ``stop_after`` events, then hang up)."""
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("POST", f"{base_url}/api/chat/{shop_id}", json=body) as response,
    ):
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            events = parse_sse(response.iter_lines(), stop_after)
            return Stream(response.status_code, dict(response.headers), events)
        response.read()
        return Stream(response.status_code, dict(response.headers), body=response.json())


def get_events(
    base_url: str,
    shop_id: str,
    thread_id: str,
    token: str,
    *,
    last_event_id: int | None = None,
    timeout: float = 20.0,
) -> Stream:
    headers = {"X-Thread-Token": token}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    url = f"{base_url}/api/chat/{shop_id}/threads/{thread_id}/events"
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        if response.status_code != 200:
            response.read()
            return Stream(response.status_code, dict(response.headers), body=response.json())
        return Stream(200, dict(response.headers), parse_sse(response.iter_lines(), to_end=True))
