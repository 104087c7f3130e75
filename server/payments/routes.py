"""HTTP routes of this feature (thin presentation over its commands and queries)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
