"""The chat stream through a real server: events, ids, tokens, storage, replay."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from server import models
from tests.chat.helpers import post_chat


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
