"""HTTP routes of the catalog: the owner's upload and the public menu.

``POST /api/catalog/upload`` (owner API token) and ``GET /api/menu/{shop_id}`` (public, CORS
``*`` without credentials, ETag, short cache).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from server.catalog.money import currency_problem
from server.catalog.parse import MAX_BYTES
from server.catalog.service import check_catalog, import_catalog, load_menu, menu_etag, menu_json
from server.errors import NotFound, PayloadTooLarge, Unprocessable
from server.models import Owner
from server.owners.auth import require_owner
from server.shops.service import create_shop, get_shop, shop_links

MENU_CACHE_CONTROL = "public, max-age=30"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "ETag",
}
FORM_OVERHEAD = 64 * 1024


async def upload_catalog(request: Request) -> Response:
    """Multipart ``file`` plus ``shop_id`` (one of the owner's shops), or ``name`` and
    ``currency`` for a new shop. 201 with the shop's links and the new version; 422 with every
    line-numbered error (nothing changes); 413 over 5 MB."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BYTES + FORM_OVERHEAD:
        raise PayloadTooLarge(f"The file is larger than {MAX_BYTES // 2**20} MB.")
    request = _body_limited(request, MAX_BYTES + FORM_OVERHEAD)
    owner = await require_owner(request)  # API token, or the dashboard's session + CSRF
    async with request.form(max_files=1, max_fields=20, max_part_size=64 * 1024) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Unprocessable("Attach the catalog as the multipart field 'file'.", field="file")
        data = await upload.read(MAX_BYTES + 1)
        filename = upload.filename or "catalog.csv"
        fields = {k: str(form.get(k) or "").strip() for k in ("shop_id", "name", "currency")}
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"The file is larger than {MAX_BYTES // 2**20} MB.")
    if not fields["shop_id"] and not fields["name"]:
        raise Unprocessable(
            "Send 'shop_id' to update a shop, or 'name' to create one.", field="name"
        )
    body = await run_in_threadpool(_import, request, owner, data, filename, fields)
    return JSONResponse(body, status_code=201)


def _import(
    request: Request, owner: Owner, data: bytes, filename: str, fields: dict[str, str]
) -> dict[str, Any]:
    db = request.app.state.db
    currency = (fields["currency"] or "usd").lower()
    if not fields["shop_id"] and (problem := currency_problem(currency)):
        raise Unprocessable(problem, field="currency")  # before parsing the file for nothing
    if fields["shop_id"]:
        with db.read() as session:
            shop = get_shop(session, fields["shop_id"])
            if shop.owner_id != owner.id:
                raise NotFound("No such shop.")
            currency = shop.currency
    # Parse before the write transaction: a large file must not hold the write lock.
    parsed = check_catalog(data, filename, currency)
    with db.write() as session:
        if fields["shop_id"]:
            shop = get_shop(session, fields["shop_id"])
        else:
            shop = create_shop(session, name=fields["name"], currency=currency, owner_id=owner.id)
        result = import_catalog(session, shop, data, filename, parsed=parsed)
        links = shop_links(request.app.state.settings, shop)
        return {
            "shop_id": shop.id,
            "slug": shop.slug,
            **links,
            "version": result.version,
            "products": result.products,
            "format": result.format,
            "warnings": result.warnings,
        }


def _body_limited(request: Request, limit: int) -> Request:
    """The request with a body that stops at ``limit`` bytes: a chunked upload without a
    Content-Length must not spool gigabytes to disk before the size check."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLarge(f"The file is larger than {MAX_BYTES // 2**20} MB.")
        return message

    return Request(request.scope, receive)


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def menu(request: Request) -> Response:
    """The public menu JSON (sync endpoint: Starlette runs it in a thread)."""
    if request.method == "OPTIONS":
        return Response(
            status_code=204,
            headers={
                **CORS,
                "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get(
                    "access-control-request-headers", "If-None-Match"
                ),
                "Access-Control-Max-Age": "86400",
            },
        )
    with request.app.state.db.read() as session:
        try:
            shop = get_shop(session, request.path_params["shop_id"])
        except NotFound as exc:
            return JSONResponse(exc.to_json(), status_code=404, headers=CORS)
        etag = menu_etag(shop)
        headers = {**CORS, "ETag": etag, "Cache-Control": MENU_CACHE_CONTROL}
        if _matches(request.headers.get("if-none-match", ""), etag):
            return Response(status_code=304, headers=headers)
        body = menu_json(shop, load_menu(session, shop.id))
    return JSONResponse(body, headers=headers)


routes: list[BaseRoute] = [
    Route("/api/catalog/upload", upload_catalog, methods=["POST"]),
    Route("/api/menu/{shop_id}", menu, methods=["GET", "HEAD", "OPTIONS"]),
]
