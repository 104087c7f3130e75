"""LLM client seam. ``build_llm(settings)`` returns an :class:`LLM` (OpenAI or any
OpenAI-compatible server through ``OPENAI_BASE_URL``: Ollama, vLLM, llama.cpp) or ``None``, which
means the built-in offline assistant answers.

Timeouts: connect ``settings.llm_connect_timeout`` (5 s), the whole reply ``settings.llm_timeout``
(60 s). Retries: the SDK retries 429 and 5xx with backoff, ``settings.llm_max_retries`` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import openai

from server.settings import Settings


class LLMUnavailable(Exception):
    """The provider failed (after the SDK's retries) or timed out."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


#: The provider errors that end a model call: timeouts, refused connections, 4xx/5xx answers.
PROVIDER_ERRORS: tuple[type[BaseException], ...] = (
    openai.APIError,
    httpx.HTTPError,
    httpx2.HTTPError,
    TimeoutError,
)


def _timed_out(err: BaseException) -> bool:
    """A timeout, not a refused connection or a failed name lookup (which the aiohttp
    transport also reports as a connect timeout: the OS error it wraps says what happened)."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return False
        cause = cause.__cause__
    return isinstance(
        err,
        openai.APITimeoutError | httpx.TimeoutException | httpx2.TimeoutException | TimeoutError,
    )


def as_unavailable(err: BaseException) -> LLMUnavailable:
    status = getattr(err, "status_code", None)
    if _timed_out(err):
        return LLMUnavailable("The assistant took too long to answer.", status=status)
    # The customer reads this; the error itself is logged where it was caught.
    return LLMUnavailable("The assistant is unavailable right now.", status=status)


@dataclass
class LLM:
    """An OpenAI client and the model to ask."""

    client: openai.AsyncOpenAI
    model: str

    async def close(self) -> None:
        await self.client.close()


def build_llm(settings: Settings, *, http_client: Any = None) -> LLM | None:
    """The OpenAI-backed client when the settings ask for it, else ``None`` (offline).

    ``http_client`` lets tests inject an ``httpx.AsyncClient`` (respx sees it). Otherwise the
    SDK talks through its aiohttp transport (the ``openai[aiohttp]`` extra): aiohttp parses
    HTTP in C and its pool does not scan every connection per request, which with hundreds of
    streams open costs about a quarter less CPU per reply than the default httpx2 transport.
    Without aiohttp installed, the default transport is used."""
    if not settings.use_openai:
        return None
    # Applied to every request (the SDK overrides the HTTP client's own timeout with it).
    timeout = httpx2.Timeout(settings.llm_timeout, connect=settings.llm_connect_timeout)
    client = http_client or default_http_client(timeout)
    return LLM(
        client=openai.AsyncOpenAI(
            api_key=settings.openai_api_key or "not-needed",  # local servers take any key
            base_url=settings.openai_base_url or None,
            max_retries=settings.llm_max_retries,
            timeout=timeout,
            http_client=client,
        ),
        model=settings.openai_model,
    )


def default_http_client(timeout: httpx2.Timeout) -> httpx2.AsyncClient:
    """The SDK's aiohttp-backed client when aiohttp is installed, else its httpx2 one."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return openai.DefaultAsyncHttpx2Client(timeout=timeout)
    return openai.DefaultAioHttpClient(timeout=timeout)
