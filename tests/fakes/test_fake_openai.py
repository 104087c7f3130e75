"""The fake OpenAI server parses with the real ``openai`` client, streaming and not."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tokens=3) as server:
        yield server


def client(fake: FakeOpenAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)


async def test_default_reply_streams_word_by_word_with_usage(fake: FakeOpenAI) -> None:
    async with client(fake) as oa:
        stream = await oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage, finish = [], None, None
        async for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == "word0 word1 word2"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 3
    assert fake.requests[0]["messages"] == [{"role": "user", "content": "hi"}]


async def test_tool_call_arguments_arrive_split_and_join_by_index(fake: FakeOpenAI) -> None:
    fake.add_tool_calls(
        [
            ToolCall("add_to_cart", {"product_id": "latte", "quantity": 2}),
            ToolCall("view_cart", {}),
        ],
        arg_chunk=5,
    )
    async with client(fake) as oa:
        stream = await oa.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "2 lattes"}], stream=True
        )
        calls: dict[int, dict[str, str]] = {}
        argument_chunks = 0
        async for chunk in stream:
            for tc in chunk.choices[0].delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
                    argument_chunks += 1
            finish = chunk.choices[0].finish_reason
    assert [c["name"] for c in calls.values()] == ["add_to_cart", "view_cart"]
    assert calls[0]["arguments"] == '{"product_id": "latte", "quantity": 2}'
    assert all(c["id"].startswith("call_") for c in calls.values())
    assert argument_chunks > 2
    assert finish == "tool_calls"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (401, openai.AuthenticationError),
    ],
)
async def test_scripted_http_errors_raise_the_matching_openai_error(
    fake: FakeOpenAI, status: int, error: type[Exception]
) -> None:
    fake.add_error(status, "nope", retry_after=1)
    async with client(fake) as oa:
        with pytest.raises(error):
            await oa.chat.completions.create(model="m", messages=[], stream=True)
        # The script is consumed: the next call gets the default reply.
        reply = await oa.chat.completions.create(model="m", messages=[])
    assert reply.choices[0].message.content == "word0 word1 word2"


async def test_non_streaming_tool_call_and_queue_order(fake: FakeOpenAI) -> None:
    fake.add_text("first").add_tool_calls([ToolCall("checkout")])
    async with client(fake) as oa:
        one = await oa.chat.completions.create(model="m", messages=[])
        two = await oa.chat.completions.create(model="m", messages=[])
    assert one.choices[0].message.content == "first"
    assert two.choices[0].message.tool_calls[0].function.name == "checkout"
    assert two.choices[0].finish_reason == "tool_calls"
    assert fake.pending() == 0


async def test_dropped_stream_raises_in_the_client(fake: FakeOpenAI) -> None:
    fake.add(Reply(text="a b c d", abort_after=2))
    got: list[str] = []
    async with client(fake) as oa:
        stream = await oa.chat.completions.create(model="m", messages=[], stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "a b"
