"""Application errors and the one handler that turns them into JSON.

AppError (400)
├── NotFound (404)          unknown id, or not yours: reveals nothing
├── Unauthorized (401)      no or bad credentials
├── Forbidden (403)         CSRF failure, action not allowed
├── Conflict (409)          state does not allow it (order already paid, ...)
├── PayloadTooLarge (413)   message or upload too large
├── Unprocessable (422)     well-formed but invalid input
│   └── CatalogInvalid      a rejected catalog, with every line-numbered error
├── RateLimited (429)       carries ``retry_after`` seconds
└── UpstreamError (502)     OpenAI or Stripe failed
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


class AppError(Exception):
    status_code = 400

    def __init__(self, message: str, status_code: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "detail": self.message, **self.extra}


class NotFound(AppError):
    status_code = 404

    def __init__(self, message: str = "Not found.", **extra: Any) -> None:
        super().__init__(message, **extra)


class Unauthorized(AppError):
    status_code = 401


class Forbidden(AppError):
    status_code = 403


class Conflict(AppError):
    status_code = 409


class PayloadTooLarge(AppError):
    status_code = 413


class Unprocessable(AppError):
    status_code = 422


class CatalogInvalid(Unprocessable):
    def __init__(self, message: str, errors: list[dict[str, Any]], **extra: Any) -> None:
        super().__init__(message, errors=errors, **extra)
        self.errors = errors


class RateLimited(AppError):
    status_code = 429

    def __init__(self, message: str, retry_after: int, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class UpstreamError(AppError):
    status_code = 502


async def handle_app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(exc.to_json(), status_code=exc.status_code, headers=headers)
