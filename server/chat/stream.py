"""Following a thread: stored events after N, then the running reply live, once each.

A follower subscribes to ``thread:{id}`` first, then reads the stored events and those the
running turn holds in memory, then relays live events, de-duplicating by sequence number and
filling any gap from memory or the database. It ends at the running turn's ``done`` or
``error``; a turn cut short by a restart ends with an ``interrupted`` error event (no id).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from server import models
from server.chat import threads
from server.events import MemoryBus
from server.shutdown import final_event

if TYPE_CHECKING:
    from server.chat.runner import ChatRunner, TurnLog

TERMINAL = ("done", "error")
FOLLOW_POLL_SECONDS = 1.0
GAP_WAITS = 20
GAP_WAIT_SECONDS = 0.1
INTERRUPTED = {
    "code": "interrupted",
    "message": "The reply was interrupted; please send your message again.",
    "retryable": True,
}


async def follow(
    runner: ChatRunner,
    thread_id: str,
    after: int,
    *,
    turn_log: TurnLog | None = None,
    token: str | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Any]:
    """SSE events after ``after``: stored, then buffered, then live until the turn ends.
    When ``stop`` is set (the server is shutting down) the stream ends with a final
    retryable ``error`` event, so the client resumes elsewhere with its last id."""
    async with runner.bus.subscribe(f"thread:{thread_id}") as sub:
        running = turn_log or runner.active.get(thread_id)
        if running is not None and after >= running.start_seq:
            # Everything after ``after`` belongs to the turn running here, which keeps all
            # its events in memory (the POST's own stream): nothing to read back.
            stored = []
        else:
            stored = await runner.read_db(lambda s: threads.events_after(s, thread_id, after))
        known = {e["seq"]: e for e in stored}
        for e in running.events if running else ():
            if e["seq"] > after:
                known.setdefault(e["seq"], e)
        last = after
        ended = running is None or running.finished.is_set()
        for seq in sorted(known):
            e = known[seq]
            yield _sse(e, token)
            last = seq
            if running and e["event"] in TERMINAL and seq > running.start_seq:
                ended = True
        if running is None and known:
            ended = known[max(known)]["event"] in TERMINAL
        elif running is None:
            # Nothing newer is stored, but a turn may be running on another worker: follow
            # it while its claim is held (its first events may not be stored yet: a turn
            # stores them every ~100 ms), or unless the thread's latest stored event ended a
            # turn. The claim is looked at first: a turn gives it back only after storing
            # its last event, so a turn that just ended shows in the read that follows.
            elsewhere = not isinstance(runner.bus, MemoryBus) and await runner.turn_running(
                thread_id
            )
            latest = await runner.read_db(lambda s: _last_event_name(s, thread_id))
            ended = not elsewhere and (latest is None or latest in TERMINAL)
        interrupted = False
        if not ended and running is None and isinstance(runner.bus, MemoryBus):
            # One process and no turn running in it: the last turn was cut short (a
            # restart). Say so instead of waiting for events that will never come.
            ended = interrupted = True

        async def since(seq: int) -> list[dict[str, Any]]:
            """Events after ``seq`` from the running turn, or else from the database."""
            if running is not None:
                return [e for e in running.events if e["seq"] > seq]
            return await runner.read_db(lambda s: threads.events_after(s, thread_id, seq))

        # The in-process bus hands us its queue: one timer per follower puts a tick in it
        # every poll interval, instead of a timeout (a task and a timer) per event.
        queue = getattr(sub, "queue", None)
        ticker = _Ticker(queue) if queue is not None and not ended else None
        idle_since = time.monotonic()
        held: dict[str, Any] | None = None  # taken from the queue, not handled yet
        try:
            while not ended:
                if stop is not None and stop.is_set():
                    yield final_event()
                    return
                if held is not None:
                    msg, held = held, None
                elif queue is not None:
                    msg = await queue.get()
                    msg = None if msg is _TICK else msg
                else:
                    msg = await sub.get(timeout=FOLLOW_POLL_SECONDS)
                if msg is None:
                    # Quiet: catch up from memory or the database (another worker's turn, a
                    # bus reconnect), and stop when that turn is over or long silent. Another
                    # worker's turn whose claim is gone (looked at before the read) and whose
                    # end is not stored was cut short: its worker died.
                    elsewhere = running is not None or await runner.turn_running(thread_id)
                    for e in await since(last):
                        yield _sse(e, token)
                        last = e["seq"]
                        idle_since = time.monotonic()
                        ended = ended or e["event"] in TERMINAL
                    if running is not None and running.finished.is_set():
                        ended = True
                    if not ended and not elsewhere:
                        ended = interrupted = True
                    if (
                        not ended
                        and time.monotonic() - idle_since > runner.settings.llm_timeout * 2
                    ):
                        ended = interrupted = True
                    continue
                seq = int(msg.get("seq", 0))
                if seq <= last:
                    continue
                if seq > last + 1:
                    # A gap (another worker's turn, not stored yet when we read): wait for
                    # its next batch rather than skip events.
                    for _ in range(GAP_WAITS):
                        gap = [e for e in await since(last) if e["seq"] < seq]
                        if len(gap) >= seq - last - 1:
                            break
                        await asyncio.sleep(GAP_WAIT_SECONDS)
                    for e in gap:
                        yield _sse(e, token)
                        last = e["seq"]
                parts = [_sse(msg, token)]
                last = seq
                ended = msg.get("event") in TERMINAL
                # Events already queued behind this one go out in the same write: a stream
                # that falls behind under load catches up with one send, not one per token.
                while queue is not None and not ended and not queue.empty():
                    nxt = queue.get_nowait()
                    if nxt is _TICK or int(nxt.get("seq", 0)) <= last:
                        continue  # a tick is moot while events flow
                    if int(nxt["seq"]) != last + 1:
                        held = nxt  # a gap: handled above, on the next pass
                        break
                    parts.append(_sse(nxt, token))
                    last = int(nxt["seq"])
                    ended = nxt.get("event") in TERMINAL
                yield parts[0] if len(parts) == 1 else b"".join(parts)
                idle_since = time.monotonic()
        finally:
            if ticker is not None:
                ticker.cancel()
        if interrupted:
            # No id: the client keeps its last real one.
            yield {"event": "error", "data": json.dumps(INTERRUPTED)}


_TICK = object()


class _Ticker:
    """Puts a tick in ``queue`` every FOLLOW_POLL_SECONDS until cancelled."""

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self.queue = queue
        self.loop = asyncio.get_running_loop()
        self.handle = self.loop.call_later(FOLLOW_POLL_SECONDS, self._tick)

    def _tick(self) -> None:
        self.queue.put_nowait(_TICK)
        self.handle = self.loop.call_later(FOLLOW_POLL_SECONDS, self._tick)

    def cancel(self) -> None:
        self.handle.cancel()


def _last_event_name(session: Any, thread_id: str) -> str | None:
    return session.exec(
        select(models.ThreadEvent.event)
        .where(models.ThreadEvent.thread_id == thread_id)
        .order_by(col(models.ThreadEvent.seq).desc())
        .limit(1)
    ).first()


def _sse(record: dict[str, Any], token: str | None) -> bytes:
    """One event, encoded here: sse-starlette sends bytes as they are, which skips building
    and encoding a ``ServerSentEvent`` for every token. The JSON has no line breaks and the
    event names are fixed words, so nothing needs escaping."""
    data = record["data"]
    if record["event"] == "thread" and token:
        data = {**data, "thread_token": token}
    return (
        f"id: {record['seq']}\r\nevent: {record['event']}\r\ndata: {json.dumps(data)}\r\n\r\n"
    ).encode()
