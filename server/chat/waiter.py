"""The OpenAI Waiter: Chat Completions with streaming and the six tools of ``tools.py``.

Each model round streams text (yielded as :class:`TextDelta`) and tool calls (joined by index).
Tool calls run against the catalog; their results go back to the model for the next round, at
most ``settings.llm_max_tool_rounds`` rounds per customer message. Provider failures surface as
:class:`~server.chat.llm.LLMUnavailable` so the runner can fall back to the offline Waiter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import openai

from server.catalog.model import Menu, Product
from server.catalog.money import format_amount
from server.chat.assistant import (
    AssistantEvent,
    CartChanged,
    Checkout,
    ShopContext,
    TextDelta,
    Turn,
    Usage,
)
from server.chat.llm import LLM, PROVIDER_ERRORS, LLMUnavailable, as_unavailable
from server.chat.tools import TOOL_SCHEMAS, run_tool
from server.orders.cart import Cart
from server.settings import Settings

log = logging.getLogger("shop_assist.chat")

FULL_MENU_MAX_PRODUCTS = 150
MAX_CATEGORIES_IN_PROMPT = 200
HISTORY_MESSAGES = 20  # earlier turns sent to the model; the cart carries the rest
ROUNDS_EXHAUSTED = "Sorry, I got stuck on that one. Could you say it another way?"


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("prompts")),
        autoescape=False,  # plain-text prompts, not HTML
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,  # shipped files: no stat of the template on every turn
    )


def render_prompt(name: str, **context: Any) -> str:
    """Render ``server/chat/prompts/{name}.j2``."""
    return _templates().get_template(f"{name}.j2").render(**context)


def _clean(text: str, limit: int = 80) -> str:
    """Catalog text inside the prompt: one line, no delimiter look-alikes, bounded."""
    text = " ".join(str(text).split()).replace("<<<", "").replace(">>>", "").replace("|", "/")
    return text[:limit]


def product_line(product: Product, currency: str) -> str:
    """``latte | Latte | $4.50 | Size: Small, Medium (+$0.50); Milk[required]: ...``"""
    groups = []
    for g in product.options:
        choices = ", ".join(
            _clean(c.name, 40)
            + (f" (+{format_amount(c.price_delta, currency)})" if c.price_delta else "")
            for c in g.choices
        )
        marks = "[required]" if g.required else ""
        if g.max_choices > 1:
            marks += f"[up to {g.max_choices}]"
        groups.append(f"{_clean(g.name, 40)}{marks}: {choices}")
    parts = [_clean(product.id, 60), _clean(product.name), format_amount(product.price, currency)]
    parts.append("; ".join(groups) or "-")
    if product.tags:
        parts.append("tags: " + ", ".join(_clean(t, 20) for t in product.tags))
    if not product.available:
        parts.append("SOLD OUT")
    return " | ".join(parts)


def cart_lines(cart: Cart) -> list[str]:
    lines = []
    for line in cart.lines:
        opts = ", ".join(s.choice for s in line.options)
        text = f"{line.line_id} | {line.quantity} x {_clean(line.name)}"
        text += f" ({_clean(opts, 120)})" if opts else ""
        if line.note:
            text += f" note: {_clean(line.note, 200)}"
        lines.append(f"{text} | {format_amount(line.line_total, cart.currency)}")
    return lines


_MENU_TEXT: dict[int, tuple[weakref.ref[Menu], list[str], str]] = {}


def _menu_text(menu: Menu) -> tuple[list[str], str]:
    """The menu's prompt lines and category summary, computed once per menu (menus are
    immutable and shared from the catalog cache)."""
    cached = _MENU_TEXT.get(id(menu))
    if cached is not None and cached[0]() is menu:
        return cached[1], cached[2]
    full = len(menu.products) <= FULL_MENU_MAX_PRODUCTS
    counts: dict[str, int] = {}
    for p in menu.products:
        counts[p.category or "Other"] = counts.get(p.category or "Other", 0) + 1
    cats = [f"{_clean(c, 40)} ({n})" for c, n in counts.items()]
    if len(cats) > MAX_CATEGORIES_IN_PROMPT:
        cats = [
            *cats[:MAX_CATEGORIES_IN_PROMPT],
            f"... and {len(cats) - MAX_CATEGORIES_IN_PROMPT} more",
        ]
    lines = [product_line(p, menu.currency) for p in menu.products] if full else []
    if len(_MENU_TEXT) > 256:
        _MENU_TEXT.clear()
    _MENU_TEXT[id(menu)] = (weakref.ref(menu), lines, "; ".join(cats))
    return lines, "; ".join(cats)


def waiter_system_prompt(shop: ShopContext, menu: Menu, cart: Cart) -> str:
    """The system prompt: rules, the menu (whole when small, categories when large), the cart."""
    lines, categories = _menu_text(menu)
    return render_prompt(
        "waiter",
        shop=shop,
        currency=menu.currency.upper(),
        full_menu=len(menu.products) <= FULL_MENU_MAX_PRODUCTS,
        menu_lines=lines,
        product_count=len(menu.products),
        categories=categories,
        cart_lines=cart_lines(cart),
        subtotal=format_amount(cart.subtotal, cart.currency),
    )


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters per token for English text)."""
    return (len(text) + 3) // 4


async def sse_chunks(response: Any, request: Any) -> AsyncIterator[dict[str, Any]]:
    """The JSON chunks of a Chat Completions stream, up to ``[DONE]``.

    Reads the body to its end (an HTTP/1.1 connection is reused only then). A chunk carrying
    an ``error`` raises :class:`openai.APIError`, as the SDK's own stream does. An uncompressed
    body (the usual case) is split into lines straight from the raw bytes, skipping three
    layers of per-token decoding; a compressed one is decoded by the HTTP client."""
    parser = _EventParser(request)
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        rest = b""
        async for piece in response.aiter_raw():
            *lines, rest = (rest + piece).split(b"\n")
            for chunk in parser.feed(lines):
                yield chunk
        lines = [rest] if rest else []
    else:
        async for line in response.aiter_lines():
            for chunk in parser.feed([line.encode()]):
                yield chunk
        lines = []
    for chunk in parser.feed(lines, end=True):
        yield chunk


class _EventParser:
    """Server-sent events to JSON chunks: ``data:`` lines joined, a blank line ends an event;
    ``event:``, ``id:`` and comments are nothing the Waiter uses."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.data: list[bytes] = []
        self.done = False

    def feed(self, lines: list[bytes], *, end: bool = False) -> list[dict[str, Any]]:
        chunks = []
        for line in lines:
            if self.done:
                break  # the caller still reads to the end, ignoring anything after [DONE]
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.startswith(b"data:"):
                self.data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif not line and self.data:
                chunk = self._event()
                if chunk is not None:
                    chunks.append(chunk)
        if end and self.data and not self.done:  # an event cut off at the end of the body
            chunk = self._event()
            if chunk is not None:
                chunks.append(chunk)
        return chunks

    def _event(self) -> dict[str, Any] | None:
        payload, self.data = b"\n".join(self.data), []
        if payload.startswith(b"[DONE]"):
            self.done = True
            return None
        chunk = json.loads(payload)
        if not isinstance(chunk, dict):
            return None
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            if not isinstance(message, str) or not message:
                message = "An error occurred during streaming"
            raise openai.APIError(message, self.request, body=error)
        return chunk


class OpenAIWaiter:
    """Implements the :class:`~server.chat.assistant.Waiter` protocol over Chat Completions."""

    def __init__(self, llm: LLM, settings: Settings) -> None:
        self.llm = llm
        self.settings = settings

    async def reply(self, turn: Turn) -> AsyncIterator[AssistantEvent]:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": waiter_system_prompt(turn.shop, turn.menu, turn.cart)},
            *[
                {"role": m["role"], "content": m["content"]}
                for m in turn.history[-HISTORY_MESSAGES:]
                if m.get("role") in ("user", "assistant") and m.get("content")
            ],
            {"role": "user", "content": turn.message},
        ]
        for _round in range(self.settings.llm_max_tool_rounds):
            calls: dict[int, dict[str, Any]] = {}
            text: list[str] = []
            async for event in self._stream(messages, calls, text):
                yield event
            if not calls:
                return
            ordered = [calls[i] for i in sorted(calls)]
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(text) or None,
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for c in ordered
                    ],
                }
            )
            checkout = False
            for call in ordered:
                result = run_tool(call["name"], call["arguments"], turn.menu, turn.cart)
                if not result.ok:
                    log.info(
                        "tool refused", extra={"tool": call["name"], "thread_id": turn.thread_id}
                    )
                if result.changed:
                    turn.cart = result.cart
                    yield CartChanged(result.cart)
                checkout = checkout or result.checkout
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": result.content}
                )
            if checkout:
                yield Checkout()
                return
        yield TextDelta(ROUNDS_EXHAUSTED)

    async def _stream(
        self, messages: list[dict[str, Any]], calls: dict[int, dict[str, Any]], text: list[str]
    ) -> AsyncIterator[AssistantEvent]:
        """One model round: yields text and usage; fills ``calls`` (joined by index)."""
        # The SDK's timeout bounds the connect and each read; this deadline bounds the reply.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.llm_timeout
        try:
            # The SDK still sends the request (retries, timeouts, error statuses), but the
            # stream is read raw: one ``json.loads`` per chunk instead of building pydantic
            # models for every token. The messages and the tool schemas go in ``extra_body``
            # (it replaces the body's keys), which the SDK sends as they are instead of
            # walking them against its type hints on every call: a fifth of the CPU it takes
            # to start a reply.
            async with self.llm.client.chat.completions.with_streaming_response.create(
                model=self.llm.model,
                messages=[],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=self.settings.llm_max_output_tokens,
                extra_body={"messages": messages, "tools": TOOL_SCHEMAS},
            ) as response:
                async for chunk in sse_chunks(response.http_response, response.http_request):
                    if loop.time() > deadline:
                        raise TimeoutError("reply deadline")
                    usage = chunk.get("usage")
                    if usage:
                        yield Usage(
                            int(usage.get("prompt_tokens") or 0),
                            int(usage.get("completion_tokens") or 0),
                        )
                    choices = chunk.get("choices")
                    if not choices:
                        continue
                    delta = choices[0].get("delta") or {}
                    content = delta.get("content")
                    if content:
                        text.append(content)
                        yield TextDelta(content)
                    for tc in delta.get("tool_calls") or ():
                        index = int(tc.get("index") or 0)
                        call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                        call["id"] = call["id"] or tc.get("id") or ""
                        function = tc.get("function")
                        if function:
                            # id and name come first; some servers repeat the name later.
                            call["name"] = call["name"] or function.get("name") or ""
                            call["arguments"] += function.get("arguments") or ""
        except PROVIDER_ERRORS as err:
            log.warning("llm call failed", extra={"error": repr(err)[:300]})
            raise as_unavailable(err) from err
        for index, call in calls.items():
            call["id"] = call["id"] or f"call_{index}"


__all__ = ["LLMUnavailable", "OpenAIWaiter", "estimate_tokens", "waiter_system_prompt"]
