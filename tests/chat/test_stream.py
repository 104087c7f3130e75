"""The chat stream through a real server: events, ids, tokens, storage, replay."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlmodel import select
from starlette.applications import Starlette

from server import models
from server.app import create_app
from server.chat import threads
from server.chat.runner import BUDGET_NOTICE, FALLBACK_NOTICE
from tests.chat.helpers import get_events, parse_sse, post_chat
from tests.fakes.fake_openai import Reply, ToolCall

LARGE_OAT = [{"group": "Size", "choice": "Large"}, {"group": "Milk", "choice": "Oat"}]


def test_a_new_thread_streams_the_reply_with_ids(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    fake_openai.add_text("Hello! What can I get you?")
    base = serve(llm_app)
    stream = post_chat(base, shop.id, message="hi")
    assert stream.status == 200
    assert stream.events[0].event == "thread"
    assert stream.events[-1].event == "done"
    assert stream.text == "Hello! What can I get you?"
    ids = [e.id for e in stream.events]
    assert ids == list(range(1, len(ids) + 1))
    assert stream.thread["thread_token"] and stream.thread["role"] == "waiter"


def _thread(base: str, shop_id: str, thread_id: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{base}/api/chat/{shop_id}/threads/{thread_id}",
        headers={"X-Thread-Token": token},
        timeout=10,
    )


def _wait_for_reply(base: str, shop_id: str, thread_id: str, token: str) -> dict[str, Any]:
    """Poll the thread until the assistant's reply is stored (the turn runs on its own)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        view = _thread(base, shop_id, thread_id, token).json()
        if any(m["role"] == "assistant" for m in view["messages"]):
            return view
        time.sleep(0.05)
    raise AssertionError("the reply was never stored")


def test_continuing_needs_the_right_token(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    base = serve(llm_app)
    first = post_chat(base, shop.id, message="hi")
    tid, token = first.thread["thread_id"], first.thread["thread_token"]
    wrong = post_chat(base, shop.id, message="hi", thread_id=tid, thread_token="nope")
    missing = post_chat(base, shop.id, message="hi", thread_id=tid)
    unknown = post_chat(base, shop.id, message="hi", thread_id="thr_x", thread_token=token)
    assert wrong.status == missing.status == unknown.status == 404
    assert wrong.body == missing.body == unknown.body
    assert _thread(base, shop.id, tid, "nope").status_code == 404
    again = post_chat(base, shop.id, message="and again", thread_id=tid, thread_token=token)
    assert again.status == 200 and "thread_token" not in again.thread
    assert again.events[0].id == first.events[-1].id + 1
    view = _thread(base, shop.id, tid, token).json()
    assert [m["role"] for m in view["messages"]] == ["user", "assistant", "user", "assistant"]
    assert view["role"] == "waiter" and view["order"] is None and view["parent_id"] is None
    assert len(fake_openai.requests) == 2


def test_oversized_message_is_413_before_any_model_call(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any, llm_settings: Any
) -> None:
    base = serve(llm_app)
    big = post_chat(base, shop.id, message="x" * (llm_settings.max_message_chars + 1))
    assert big.status == 413 and big.body["error"] == "PayloadTooLarge"
    assert fake_openai.requests == []


def test_rate_limits_answer_429_with_retry_after_and_no_model_call(
    llm_settings: Any, db: Any, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    app = create_app(llm_settings.with_(ip_rate_per_minute=3, thread_rate_per_minute=1), db=db)
    base = serve(app)
    first = post_chat(base, shop.id, message="hi")
    tid, token = first.thread["thread_id"], first.thread["thread_token"]
    second = post_chat(base, shop.id, message="again", thread_id=tid, thread_token=token)
    assert second.status == 429 and int(second.headers["retry-after"]) >= 1
    post_chat(base, shop.id, message="another thread")
    third = post_chat(base, shop.id, message="and another")
    assert third.status == 429 and "retry-after" in third.headers
    assert len(fake_openai.requests) == 2


def test_a_thread_has_a_message_limit(
    llm_settings: Any, db: Any, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    base = serve(create_app(llm_settings.with_(max_thread_messages=4), db=db))
    first = post_chat(base, shop.id, message="one")
    ids = {"thread_id": first.thread["thread_id"], "thread_token": first.thread["thread_token"]}
    assert post_chat(base, shop.id, message="two", **ids).status == 200
    full = post_chat(base, shop.id, message="three", **ids)
    assert full.status == 409 and full.body["code"] == "thread_full"
    assert len(fake_openai.requests) == 2


def test_tool_calls_stream_cart_events_and_the_cart_is_kept(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    fake_openai.add_tool_calls(
        [ToolCall("add_to_cart", {"product_id": "latte", "quantity": 2, "options": LARGE_OAT})]
    )
    fake_openai.add_text("Two large oat lattes.")
    base = serve(llm_app)
    stream = post_chat(base, shop.id, message="two large oat lattes")
    cart = stream.of("cart")[0].data["cart"]
    assert cart["subtotal"] == 1220 and cart["lines"][0]["unit_price"] == 610
    view = _thread(base, shop.id, stream.thread["thread_id"], stream.thread["thread_token"]).json()
    assert view["cart"]["subtotal"] == 1220


def test_disconnect_mid_reply_the_reply_is_stored_and_replayed(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    words = " ".join(f"w{i}" for i in range(30))
    fake_openai.add_text(words, delay=0.03)
    base = serve(llm_app)
    partial = post_chat(base, shop.id, message="tell me a story", stop_after=3)
    assert partial.events[-1].event == "delta"  # we hung up mid-reply
    tid, token = partial.thread["thread_id"], partial.thread["thread_token"]
    view = _wait_for_reply(base, shop.id, tid, token)
    assert view["messages"][-1] == {**view["messages"][-1], "role": "assistant", "content": words}
    replay = get_events(base, shop.id, tid, token)
    assert "".join(e.data["text"] for e in replay.of("delta")) == words
    assert replay.events[-1].event == "done"
    assert "thread_token" not in replay.events[0].data  # the token is never stored


def test_resume_with_last_event_id_no_duplicate_no_gap(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    fake_openai.add_text(words, delay=0.02)
    base = serve(llm_app)
    head = post_chat(base, shop.id, message="go", stop_after=5)
    tid, token = head.thread["thread_id"], head.thread["thread_token"]
    tail = get_events(base, shop.id, tid, token, last_event_id=head.events[-1].id)
    events = head.events + tail.events
    ids = [e.id for e in events]
    assert ids == list(range(1, len(ids) + 1))
    assert "".join(e.data["text"] for e in events if e.event == "delta") == words
    assert events[-1].event == "done"
    # ?after= works the same, and a finished thread's replay ends by itself.
    again = httpx.get(
        f"{base}/api/chat/{shop.id}/threads/{tid}/events?after=3&token={token}", timeout=10
    )
    assert again.status_code == 200 and "id: 4" in again.text and "id: 3\r\n" not in again.text


def test_provider_failure_falls_back_to_simple_mode_with_one_notice(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    fake_openai.add_error(500)
    base = serve(llm_app)
    stream = post_chat(base, shop.id, message="hello")
    notices = [e.data["text"] for e in stream.of("notice")]
    assert notices == [FALLBACK_NOTICE]
    assert stream.text and stream.events[-1].event == "done"


def test_upstream_drop_mid_reply_ends_with_an_error_and_keeps_the_partial_reply(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    fake_openai.add(Reply(text="Our lattes are lovely and", abort_after=3))
    base = serve(llm_app)
    stream = post_chat(base, shop.id, message="tell me about lattes")
    assert stream.events[-1].event == "error"
    error = stream.events[-1].data
    assert error["code"] == "upstream_error" and error["retryable"] is True
    assert error["message"] == (
        "The assistant is unavailable right now. Please send your message again."
    )
    assert stream.text == "Our lattes are"
    tid, token = stream.thread["thread_id"], stream.thread["thread_token"]
    view = _thread(base, shop.id, tid, token).json()
    assert view["messages"][-1]["content"] == "Our lattes are"


def test_daily_token_budget_switches_to_simple_mode(
    llm_settings: Any, db: Any, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    base = serve(create_app(llm_settings.with_(shop_daily_tokens=10), db=db))
    first = post_chat(base, shop.id, message="hi")  # spends the budget
    assert first.events[-1].event == "done"
    with db.read() as s:
        spent = s.exec(select(models.ShopUsage.shop_id, models.ShopUsage.tokens)).one()
    assert spent[0] == shop.id and spent[1] > 10
    second = post_chat(base, shop.id, message="hi again")
    assert [e.data["text"] for e in second.of("notice")] == [BUDGET_NOTICE]
    assert len(fake_openai.requests) == 1


def test_a_second_message_while_a_reply_runs_is_refused(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    fake_openai.add_text(" ".join(f"w{i}" for i in range(30)), delay=0.05)
    base = serve(llm_app)
    head = post_chat(base, shop.id, message="go", stop_after=2)
    ids = {"thread_id": head.thread["thread_id"], "thread_token": head.thread["thread_token"]}
    busy = post_chat(base, shop.id, message="and?", **ids)
    assert busy.status == 409
    _wait_for_reply(base, shop.id, ids["thread_id"], ids["thread_token"])
    assert post_chat(base, shop.id, message="and?", **ids).status == 200


def test_events_need_the_token(llm_app: Starlette, serve: Any, shop: models.Shop) -> None:
    base = serve(llm_app)
    stream = post_chat(base, shop.id, message="hi")
    tid = stream.thread["thread_id"]
    assert get_events(base, shop.id, tid, "wrong").status == 404
    assert get_events(base, "shp_other", tid, stream.thread["thread_token"]).status == 404


def test_a_reply_cut_short_by_a_restart_replays_then_says_so(
    llm_app: Starlette, serve: Any, shop: models.Shop, db: Any
) -> None:
    token = "t" * 43
    with db.write() as s:
        tid = threads.create_thread(s, shop.id, token).id
        threads.store_events(
            s,
            tid,
            [
                {"seq": 1, "event": "thread", "data": {"thread_id": tid, "role": "waiter"}},
                {"seq": 2, "event": "delta", "data": {"text": "Half a"}},
            ],
        )
    base = serve(llm_app)
    replay = get_events(base, shop.id, tid, token)
    assert [e.event for e in replay.events] == ["thread", "delta", "error"]
    assert replay.events[-1].id is None and replay.events[-1].data["code"] == "interrupted"
    assert get_events(base, shop.id, tid, token, last_event_id=2).events[-1].data["retryable"]


# With no grace the reply (10 s long) is cut; with 30 s it (1 s long) finishes.
@pytest.mark.parametrize(("grace", "n_words", "complete"), [(0, 200, False), (30, 20, True)])
def test_stopping_the_server_keeps_the_reply_in_progress(
    llm_settings: Any,
    db: Any,
    live_server: Any,
    shop: models.Shop,
    fake_openai: Any,
    grace: int,
    n_words: int,
    complete: bool,
) -> None:
    words = " ".join(f"w{i}" for i in range(n_words))
    fake_openai.add_text(words, delay=0.05)
    server = live_server(create_app(llm_settings.with_(shutdown_grace_seconds=grace), db=db))
    head = post_chat(server.url, shop.id, message="go", stop_after=3)
    server.stop()
    tid = head.thread["thread_id"]
    with db.read() as s:
        reply = s.exec(
            select(models.Message.content, models.Message.complete).where(
                models.Message.thread_id == tid, models.Message.role == "assistant"
            )
        ).one()
        stored = threads.events_after(s, tid, 0)
    assert reply[1] is complete and words.startswith(reply[0]) and reply[0]
    assert (reply[0] == words) is complete
    assert "".join(e["data"]["text"] for e in stored if e["event"] == "delta") == reply[0]
    assert (stored[-1]["event"] == "done") is complete


def test_an_open_stream_ends_with_a_retryable_event_when_the_server_stops(
    llm_app: Starlette, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    from server.shutdown import begin_shutdown

    fake_openai.add_text(" ".join(f"w{i}" for i in range(40)), delay=0.05)
    base = serve(llm_app)
    with (
        httpx.Client(timeout=20) as client,
        client.stream("POST", f"{base}/api/chat/{shop.id}", json={"message": "go"}) as response,
    ):
        lines = response.iter_lines()
        head = parse_sse(lines, stop_after=3)
        begin_shutdown(llm_app)  # what the watcher does when uvicorn gets SIGTERM
        tail = parse_sse(lines, to_end=True)
    assert head[0].event == "thread" and tail[-1].event == "error"
    assert tail[-1].id is None and tail[-1].data["code"] == "shutdown"
    assert tail[-1].data["retryable"] is True


def test_a_model_that_times_out_falls_back_to_simple_mode(
    llm_settings: Any, db: Any, serve: Any, shop: models.Shop, fake_openai: Any
) -> None:
    fake_openai.add(Reply(text="far too late", first_delay=3))
    base = serve(create_app(llm_settings.with_(llm_timeout=0.5), db=db))
    stream = post_chat(base, shop.id, message="two large oat lattes")
    assert [e.data["text"] for e in stream.of("notice")] == [FALLBACK_NOTICE]
    assert stream.of("cart")[-1].data["cart"]["subtotal"] == 2 * 610  # the order still works
    assert stream.events[-1].event == "done" and "far too late" not in stream.text
