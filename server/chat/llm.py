"""LLM client seam. ``build_llm(settings)`` returns the OpenAI client or ``None`` (offline)."""

from __future__ import annotations

from typing import Any

from server.settings import Settings


def build_llm(settings: Settings) -> Any:
    return None
