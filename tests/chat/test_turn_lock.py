"""One reply per thread at a time, in one process and across workers sharing Redis: a second
message while a reply runs gets 409, the thread takes messages again once the reply is done,
a long reply keeps the thread by renewing its short-lived claim, and a worker that dies
mid-reply locks the thread only until that claim expires."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from server import models
from server.app import create_app
from server.chat.runner import BUSY, LOCK_SECONDS, TOO_LONG, ChatRunner
from server.chat.stream import FOLLOW_POLL_SECONDS
from server.db import Database
from server.events import MemoryBus
from server.ratelimit import MemoryRateLimiter, RateLimiter
from server.settings import Settings
from tests import services
from tests.chat.helpers import Event, parse_sse, post_chat
from tests.fakes.fake_openai import FakeOpenAI, ToolCall


class GatedOpenAI(FakeOpenAI):
    """The fake OpenAI server, holding every completion while ``gate`` is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    async def _completions(self, request: Request) -> Response:
        await asyncio.to_thread(self.gate.wait, 30)
        return await super()._completions(request)


@pytest.fixture
def fake_openai() -> Iterator[GatedOpenAI]:
    with GatedOpenAI() as fake:
        yield fake
        fake.gate.set()  # a request still held must not outlive the test


@dataclass
class Sent:
    """One POST sent from a thread: its status as soon as it is known, then its body."""

    status: int = 0
    known: threading.Event = field(default_factory=threading.Event)
    events: list[Event] = field(default_factory=list)
    body: Any = None


def send(base: str, shop_id: str, sent: Sent, **body: Any) -> None:
    """POST ``body`` and record the answer in ``sent`` (run it in a thread)."""
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{base}/api/chat/{shop_id}", json=body) as response,
    ):
        sent.status = response.status_code
        sent.known.set()
        if response.status_code == 200:
            sent.events = parse_sse(response.iter_lines())
        else:
            response.read()
            sent.body = response.json()


def send_both(
    fake: GatedOpenAI, bases: tuple[str, str], shop_id: str, **body: Any
) -> tuple[Sent, Sent]:
    """The same message to the same thread at the same moment through ``bases``; the model
    answers only once both statuses are known, so the first reply is still running when the
    second message arrives, whichever comes first."""
    fake.gate.clear()
    one, two = Sent(), Sent()
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(send, base, shop_id, s, **body)
            for base, s in zip(bases, (one, two), strict=True)
        ]
        assert one.known.wait(20) and two.known.wait(20)
        fake.gate.set()
        for future in futures:
            future.result(timeout=30)
    return one, two


def check_one_reply_one_refusal(one: Sent, two: Sent) -> Sent:
    """Exactly one 200 stream that ends ``done``, one 409 in the usual error shape."""
    assert sorted((one.status, two.status)) == [200, 409]
    ok, busy = (one, two) if one.status == 200 else (two, one)
    assert busy.body == {"error": "Conflict", "detail": BUSY}
    assert ok.events[-1].event == "done"
    return ok


def check_ids(stream: Sent, seqs: list[int]) -> None:
    """The reply's events came with consecutive ids, each stored once with that id."""
    ids = [e.id for e in stream.events]
    assert ids == list(range(ids[0] or 0, (ids[0] or 0) + len(ids)))
    assert set(ids) <= set(seqs)


def stored(db: Database, thread_id: str) -> tuple[list[int], list[str]]:
    """The thread's stored event ids and its customer messages."""
    with db.read() as s:
        seqs = s.exec(
            select(models.ThreadEvent.seq)
            .where(models.ThreadEvent.thread_id == thread_id)
            .order_by(col(models.ThreadEvent.seq))
        ).all()
        said = s.exec(
            select(models.Message.content)
            .where(models.Message.thread_id == thread_id, models.Message.role == "user")
            .order_by(col(models.Message.id))
        ).all()
    return list(seqs), list(said)


def first_message(base: str, shop_id: str) -> dict[str, str]:
    stream = post_chat(base, shop_id, message="hi")
    assert stream.events[-1].event == "done"
    return {"thread_id": stream.thread["thread_id"], "thread_token": stream.thread["thread_token"]}


# ---------------------------------------------------------------- one process


def test_two_messages_at_once_get_one_reply_and_one_409(
    llm_app: Starlette,
    serve: Callable[[Starlette], str],
    shop: models.Shop,
    db: Database,
    fake_openai: GatedOpenAI,
) -> None:
    base = serve(llm_app)
    ids = first_message(base, shop.id)
    one, two = send_both(fake_openai, (base, base), shop.id, message="and a latte?", **ids)
    ok = check_one_reply_one_refusal(one, two)
    # Once the reply is done, the thread takes the next message at once.
    after = post_chat(base, shop.id, message="thanks", **ids)
    assert after.status == 200 and after.events[-1].event == "done"
    seqs, said = stored(db, ids["thread_id"])
    assert seqs == list(range(1, len(seqs) + 1))
    assert said == ["hi", "and a latte?", "thanks"]
    check_ids(ok, seqs)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def runner_for(app: Starlette, limiter: RateLimiter, **kw: Any) -> ChatRunner:
    state = app.state
    return ChatRunner(state.settings, state.db, state.bus, state.llm, limiter, **kw)


def die_holding(runner: ChatRunner, thread_id: str) -> None:
    """A worker that claimed the thread for a reply, then died: nothing gives it back."""

    async def claim_and_die() -> None:
        await runner.claim(thread_id)
        close = getattr(runner.limiter, "close", None)
        if close is not None:
            await close()

    asyncio.run(claim_and_die())


class RenewalsSeen(MemoryRateLimiter):
    """The in-process limiter on a fake clock, noting when (on that clock) a claim was last
    renewed or taken, so a test can wait for the running turn's next renewal."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.clock = clock
        self.held_at = 0.0
        self.changed = threading.Condition()

    def _note(self, at: float) -> None:
        with self.changed:
            self.held_at = max(self.held_at, at)
            self.changed.notify_all()

    async def extend(self, key: str, ttl_seconds: float) -> bool:
        at = self.clock.now  # read first: the renewal counts from no later than this
        held = await super().extend(key, ttl_seconds)
        if held:
            self._note(at)
        return held

    async def claim(self, key: str, ttl_seconds: float) -> bool:
        at = self.clock.now
        taken = await super().claim(key, ttl_seconds)
        if taken:
            self._note(at)
        return taken

    def wait_held_at(self, at: float) -> None:
        """Wait until the claim was renewed (or taken back) at ``at`` or later."""
        with self.changed:
            assert self.changed.wait_for(lambda: self.held_at >= at, timeout=10)


@pytest.fixture
def on_fake_clock(
    llm_settings: Settings, db: Database, serve: Callable[[Starlette], str]
) -> Callable[..., tuple[str, RenewalsSeen, Clock]]:
    """Factory: an app whose limiter runs on a fake clock; returns (url, limiter, clock)."""

    def start(**runner_kw: Any) -> tuple[str, RenewalsSeen, Clock]:
        clock = Clock()
        limiter = RenewalsSeen(clock)
        app = create_app(llm_settings, db=db)
        app.state.limiter = limiter
        app.state.chat_runner = runner_for(app, limiter, **runner_kw)
        return serve(app), limiter, clock

    return start


def test_a_reply_whose_worker_died_locks_the_thread_only_until_its_claim_expires(
    on_fake_clock: Callable[..., tuple[str, RenewalsSeen, Clock]],
    llm_settings: Settings,
    db: Database,
    shop: models.Shop,
) -> None:
    base, limiter, clock = on_fake_clock()
    ids = first_message(base, shop.id)
    dead = ChatRunner(llm_settings, db, MemoryBus(), None, limiter)
    die_holding(dead, ids["thread_id"])  # claimed, then never renewed nor given back
    refused = post_chat(base, shop.id, message="hello?", **ids)
    assert refused.status == 409 and refused.body["detail"] == BUSY
    assert LOCK_SECONDS <= 30
    clock.now += LOCK_SECONDS - 1
    assert post_chat(base, shop.id, message="hello?", **ids).status == 409
    clock.now += 1.5
    assert post_chat(base, shop.id, message="hello?", **ids).events[-1].event == "done"


def reply_held_by_the_model(fake: GatedOpenAI, base: str, shop_id: str, **body: Any) -> Any:
    """Send a message whose reply waits for ``fake.gate``; returns (sent, thread) once the
    reply is running."""
    fake.gate.clear()
    sent = Sent()
    thread = threading.Thread(target=send, args=(base, shop_id, sent), kwargs=body)
    thread.start()
    assert sent.known.wait(20) and sent.status == 200
    return sent, thread


def test_a_long_reply_keeps_its_thread_past_many_claim_lifetimes(
    on_fake_clock: Callable[..., tuple[str, RenewalsSeen, Clock]],
    shop: models.Shop,
    fake_openai: GatedOpenAI,
) -> None:
    base, limiter, clock = on_fake_clock(renew_seconds=0.02)
    ids = first_message(base, shop.id)
    sent, thread = reply_held_by_the_model(fake_openai, base, shop.id, message="a latte?", **ids)
    for _ in range(4):  # 4 x 20 s on the limiter's clock: past two 30 s lifetimes
        clock.now += 20
        limiter.wait_held_at(clock.now)
        refused = post_chat(base, shop.id, message="hello?", **ids)
        assert refused.status == 409 and refused.body["detail"] == BUSY
    # A claim that lapsed anyway (the worker stalled) is taken back while nobody else has it.
    clock.now += LOCK_SECONDS + 1
    limiter.wait_held_at(clock.now)
    assert post_chat(base, shop.id, message="hello?", **ids).status == 409
    fake_openai.gate.set()
    thread.join(30)
    assert sent.events[-1].event == "done"
    assert post_chat(base, shop.id, message="thanks", **ids).events[-1].event == "done"


class SlowRelease(MemoryRateLimiter):
    """A limiter whose give-back takes longer than a follower's poll interval (a slow link to
    the shared store)."""

    async def release(self, key: str) -> None:
        await asyncio.sleep(FOLLOW_POLL_SECONDS * 1.5)
        await super().release(key)


def test_the_next_message_is_taken_as_soon_as_done_is_seen(
    llm_settings: Settings,
    db: Database,
    serve: Callable[[Starlette], str],
    shop: models.Shop,
    fake_openai: GatedOpenAI,
) -> None:
    """``done`` goes out only once the thread is given back: a customer who answers at once is
    never told a reply is still being written."""
    limiter = SlowRelease()
    app = create_app(llm_settings, db=db)
    app.state.limiter = limiter
    app.state.chat_runner = runner_for(app, limiter)
    base = serve(app)
    ids = first_message(base, shop.id)
    answer = post_chat(base, shop.id, message="thanks", **ids)
    assert answer.status == 200, answer.body
    assert answer.events[-1].event == "done"


class RenewalsFail(MemoryRateLimiter):
    """A limiter whose renewals fail (a broken link to the shared store)."""

    def __init__(self) -> None:
        super().__init__()
        self.tried = threading.Event()

    async def extend(self, key: str, ttl_seconds: float) -> bool:
        self.tried.set()
        raise ConnectionError("the limiter is unreachable")


def test_a_reply_goes_on_when_its_claim_cannot_be_renewed(
    llm_settings: Settings,
    db: Database,
    serve: Callable[[Starlette], str],
    shop: models.Shop,
    fake_openai: GatedOpenAI,
) -> None:
    limiter = RenewalsFail()
    app = create_app(llm_settings, db=db)
    app.state.limiter = limiter
    app.state.chat_runner = runner_for(app, limiter, renew_seconds=0.01)
    base = serve(app)
    ids = first_message(base, shop.id)
    sent, thread = reply_held_by_the_model(fake_openai, base, shop.id, message="a latte?", **ids)
    assert limiter.tried.wait(10)
    fake_openai.gate.set()
    thread.join(30)
    assert sent.events[-1].event == "done"
    assert post_chat(base, shop.id, message="thanks", **ids).events[-1].event == "done"


@contextlib.contextmanager
def turns_cut_after(runner: ChatRunner, seconds: float) -> Iterator[None]:
    """Turns started meanwhile are cut ``seconds`` in (only a model that never answers is
    expected to be: the turns before and after keep the usual deadline)."""
    usual, runner.turn_seconds = runner.turn_seconds, seconds
    try:
        yield
    finally:
        runner.turn_seconds = usual


def test_a_reply_past_the_turn_deadline_ends_with_an_error_and_frees_the_thread(
    llm_app: Starlette,
    serve: Callable[[Starlette], str],
    shop: models.Shop,
    fake_openai: GatedOpenAI,
) -> None:
    runner = llm_app.state.chat_runner = runner_for(llm_app, llm_app.state.limiter, lock_seconds=60)
    base = serve(llm_app)
    fake_openai.gate.clear()  # the model never answers
    with turns_cut_after(runner, 0.5):
        stream = post_chat(base, shop.id, message="hi")
    assert stream.events[-1].event == "error"
    assert stream.events[-1].data == {"code": "timeout", "message": TOO_LONG, "retryable": True}
    fake_openai.gate.set()
    ids = {"thread_id": stream.thread["thread_id"], "thread_token": stream.thread["thread_token"]}
    assert post_chat(base, shop.id, message="hi again", **ids).events[-1].event == "done"


def test_a_cashier_past_the_turn_deadline_ends_the_turn_with_an_error_and_no_order(
    llm_app: Starlette,
    serve: Callable[[Starlette], str],
    shop: models.Shop,
    db: Database,
    fake_openai: GatedOpenAI,
) -> None:
    runner = llm_app.state.chat_runner = runner_for(llm_app, llm_app.state.limiter, lock_seconds=60)
    base = serve(llm_app)
    fake_openai.add_tool_calls([ToolCall("add_to_cart", {"product_id": "espresso", "quantity": 1})])
    fake_openai.add_text("One espresso.")
    ids = first_message(base, shop.id)
    fake_openai.gate.clear()  # the Cashier never answers
    with turns_cut_after(runner, 0.5):
        stream = post_chat(base, shop.id, message="", action="checkout", **ids)
    assert stream.of("handoff")
    assert stream.events[-1].data == {"code": "timeout", "message": TOO_LONG, "retryable": True}
    fake_openai.gate.set()
    with db.read() as s:
        assert s.exec(select(models.Order)).first() is None


# ---------------------------------------------------------------- two workers, one Redis


@pytest.fixture
def two_workers(
    llm_settings: Settings, db: Database, serve: Callable[[Starlette], str]
) -> Iterator[Callable[..., tuple[str, str, str]]]:
    """Factory: two app instances (each its own engine, bus and limiter) on the test database
    and one Redis, under a key prefix of their own; returns (url A, url B, prefix)."""
    from server.redis_bus import RedisBus, RedisRateLimiter

    redis = services.redis_url()
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    settings = llm_settings.with_(redis_url=redis)
    engines: list[Database] = []

    def start(**runner_kw: Any) -> tuple[str, str, str]:
        urls = []
        for _ in range(2):
            engine = Database(settings.database_url)
            engines.append(engine)
            app = create_app(settings, db=engine, bus=RedisBus(redis, prefix=prefix))
            app.state.limiter = RedisRateLimiter(redis, prefix=prefix)
            if runner_kw:
                app.state.chat_runner = runner_for(app, app.state.limiter, **runner_kw)
            urls.append(serve(app))
        return urls[0], urls[1], prefix

    yield start
    for engine in engines:
        engine.dispose()


@pytest.mark.redis
def test_two_messages_at_once_on_two_workers_get_one_reply_and_one_409(
    two_workers: Callable[..., tuple[str, str, str]],
    shop: models.Shop,
    db: Database,
    fake_openai: GatedOpenAI,
) -> None:
    a, b, _ = two_workers()
    ids = first_message(a, shop.id)
    one, two = send_both(fake_openai, (a, b), shop.id, message="and a latte?", **ids)
    ok = check_one_reply_one_refusal(one, two)
    # The next message works on either worker as soon as the reply is done.
    for base, text in ((b, "thanks"), (a, "bye")):
        after = post_chat(base, shop.id, message=text, **ids)
        assert after.status == 200 and after.events[-1].event == "done"
    seqs, said = stored(db, ids["thread_id"])
    assert seqs == list(range(1, len(seqs) + 1))  # no id given twice
    assert said == ["hi", "and a latte?", "thanks", "bye"]
    check_ids(ok, seqs)


def claim_key(prefix: str, ids: dict[str, str]) -> str:
    """The Redis key of the thread's claim."""
    return f"{prefix}claim:turn:{ids['thread_id']}"


def wait_until(check: Callable[[], bool]) -> None:
    """Wait for ``check`` to hold (what Redis or a running reply does next), not for a time."""
    for _ in range(1000):
        if check():
            return
        time.sleep(0.01)
    raise AssertionError("never happened")


@pytest.mark.redis
def test_a_claim_left_by_a_dead_worker_expires_after_its_ttl(
    two_workers: Callable[..., tuple[str, str, str]],
    llm_settings: Settings,
    db: Database,
    shop: models.Shop,
) -> None:
    from redis import Redis

    from server.redis_bus import RedisRateLimiter

    a, b, prefix = two_workers()
    held, expiring = first_message(a, shop.id), first_message(a, shop.id)
    limiter = RedisRateLimiter(services.redis_url(), prefix=prefix)
    dead = ChatRunner(llm_settings, db, MemoryBus(), None, limiter)
    die_holding(dead, held["thread_id"])
    die_holding(dead, expiring["thread_id"])
    with Redis.from_url(services.redis_url()) as redis:
        # Nothing will give the claims back: each expires after the usual lifetime.
        for ids in (held, expiring):
            assert 0 < redis.pttl(claim_key(prefix, ids)) <= LOCK_SECONDS * 1000
        for ids in (held, expiring):
            refused = post_chat(b, shop.id, message="hello?", **ids)
            assert refused.status == 409 and refused.body["detail"] == BUSY
        # One lifetime runs out.
        redis.pexpire(claim_key(prefix, expiring), 1)
        wait_until(lambda: not redis.exists(claim_key(prefix, expiring)))
    assert post_chat(b, shop.id, message="hello?", **expiring).events[-1].event == "done"
    assert post_chat(a, shop.id, message="hello?", **held).status == 409


@pytest.mark.redis
def test_a_long_reply_on_one_worker_keeps_its_thread_from_the_other_by_renewing_its_claim(
    two_workers: Callable[..., tuple[str, str, str]],
    shop: models.Shop,
    fake_openai: GatedOpenAI,
) -> None:
    from redis import Redis

    a, b, prefix = two_workers(renew_seconds=0.05)
    ids = first_message(a, shop.id)
    sent, thread = reply_held_by_the_model(fake_openai, a, shop.id, message="a latte?", **ids)
    key = claim_key(prefix, ids)
    with Redis.from_url(services.redis_url()) as redis:
        for _ in range(3):
            # Most of the claim's lifetime is gone: the running reply renews it.
            assert redis.pexpire(key, 5000)
            wait_until(lambda: redis.pttl(key) > 5000)
            refused = post_chat(b, shop.id, message="hello?", **ids)
            assert refused.status == 409 and refused.body["detail"] == BUSY
        # A claim that lapsed anyway (the worker stalled) is taken back while nobody has it.
        redis.delete(key)
        wait_until(lambda: bool(redis.exists(key)))
        assert 0 < redis.pttl(key) <= LOCK_SECONDS * 1000
        assert post_chat(b, shop.id, message="hello?", **ids).status == 409
    fake_openai.gate.set()
    thread.join(30)
    assert sent.events[-1].event == "done"
    assert post_chat(b, shop.id, message="thanks", **ids).events[-1].event == "done"
