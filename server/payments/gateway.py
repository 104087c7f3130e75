"""Payments seam. ``build_payments(settings)`` returns the Stripe or the demo gateway."""

from __future__ import annotations

from typing import Any

from server.settings import Settings


def build_payments(settings: Settings) -> Any:
    return None
