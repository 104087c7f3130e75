"""A small blocking SSE reader for tests that follow streams from threads."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    data: Any
    id: str | None = None


def iter_events(response: httpx.Response):  # type: ignore[no-untyped-def]
    """Yield :class:`Event` objects from an open streaming response."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = (
                fields[name] + "\n" + value if name == "data" and name in fields else value
            )
            continue
        if "data" in fields or "event" in fields:
            raw = fields.get("data", "")
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw
            yield Event(fields.get("event", "message"), data, fields.get("id"))
        fields = {}


@dataclass
class StreamWatcher:
    """Reads one stream in a thread until ``until(event)`` is true (or the stream ends)."""

    client: httpx.Client
    method: str
    url: str
    until: Callable[[Event], bool]
    kwargs: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    first: threading.Event = field(default_factory=threading.Event)
    matched: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> StreamWatcher:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with self.client.stream(self.method, self.url, **self.kwargs) as r:
                r.raise_for_status()
                for event in iter_events(r):
                    self.events.append(event)
                    self.first.set()
                    if self.until(event):
                        self.matched.set()
                        return
        except BaseException as exc:
            self.error = exc
        finally:
            self.first.set()
            self.ended.set()
