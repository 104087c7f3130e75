"""Menu pages: the live catalog with sold-out toggles, and uploads that are previewed first
and go live only when the owner confirms."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.catalog.service import import_catalog, preview_catalog, set_product_available
from server.errors import CatalogInvalid, NotFound, PayloadTooLarge, Unprocessable
from server.models import Catalog, Owner, Product, Shop
from server.owners.auth import reading
from server.owners.pages import owner_page, redirect, render
from server.owners.service import owned_shop

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
UPLOAD_TTL_SECONDS = 3600
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def live_products(session: Any, shop: Shop) -> list[Product]:
    """The products of the shop's live catalog version, in file order."""
    if shop.live_catalog_version is None:
        return []
    catalog = session.exec(
        select(Catalog).where(
            Catalog.shop_id == shop.id, Catalog.version == shop.live_catalog_version
        )
    ).first()
    if catalog is None:
        return []
    return list(
        session.exec(
            select(Product).where(Product.catalog_id == catalog.id).order_by(col(Product.position))
        ).all()
    )


@owner_page
async def catalog_page(request: Request, owner: Owner) -> Response:
    with reading(request.app.state.db) as s:
        shop = owned_shop(s, owner.id, request.path_params["shop_id"])
        products = live_products(s, shop)
    ctx = {"shop": shop, "products": products, "imported": request.query_params.get("imported")}
    return render(request, "dashboard/catalog.html", ctx)


def _upload_dir(request: Request, shop_id: str) -> Path:
    return Path(request.app.state.settings.data_dir) / "uploads" / shop_id


def _forget_old_uploads(folder: Path) -> None:
    cutoff = time.time() - UPLOAD_TTL_SECONDS
    for path in folder.glob("*"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


@owner_page
async def catalog_preview(request: Request, owner: Owner) -> Response:
    """Parse the file and show what would change; nothing goes live yet. The bytes wait in the
    data directory under a random id until the owner confirms (or an hour passes)."""
    shop_id = request.path_params["shop_id"]
    with reading(request.app.state.db) as s:
        owned_shop(s, owner.id, shop_id)
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise Unprocessable("Choose a CSV or JSON file to upload.")
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge("The file is larger than 5 MB.")
    filename = Path(upload.filename).name[:200]
    errors: list[dict[str, Any]] = []
    preview: dict[str, Any] = {}
    with reading(request.app.state.db) as s:
        shop = owned_shop(s, owner.id, shop_id)
        try:
            preview = preview_catalog(s, shop, data, filename)
        except CatalogInvalid as exc:
            errors = exc.errors
    errors = errors or list(preview.get("errors") or [])
    if not errors and not preview.get("valid", True):
        errors = [{"line": None, "column": None, "message": "The file has no products."}]
    upload_id = ""
    if not errors:
        folder = _upload_dir(request, shop_id)
        folder.mkdir(parents=True, exist_ok=True)
        _forget_old_uploads(folder)
        upload_id = secrets.token_urlsafe(24)
        (folder / upload_id).write_bytes(data)
        (folder / f"{upload_id}.name").write_text(filename)
    ctx = {
        "shop": shop,
        "preview": preview,
        "errors": errors,
        "upload_id": upload_id,
        "filename": filename,
    }
    return render(request, "dashboard/catalog_preview.html", ctx, 422 if errors else 200)


@owner_page
async def catalog_confirm(request: Request, owner: Owner) -> Response:
    upload_id = str((await request.form()).get("upload_id", ""))
    shop_id = request.path_params["shop_id"]
    with reading(request.app.state.db) as s:
        owned_shop(s, owner.id, shop_id)
    path = _upload_dir(request, shop_id) / upload_id
    if not _UPLOAD_ID.match(upload_id) or not path.is_file():
        raise NotFound("That upload expired or was already published. Upload the file again.")
    data = path.read_bytes()
    filename = (
        (path.parent / f"{upload_id}.name").read_text()
        if (path.parent / f"{upload_id}.name").is_file()
        else "catalog.csv"
    )
    try:
        with request.app.state.db.write() as s:
            shop = owned_shop(s, owner.id, shop_id)
            result = import_catalog(s, shop, data, filename)
            version = getattr(result, "version", None) or shop.live_catalog_version
    except CatalogInvalid as exc:
        ctx = {
            "shop": shop,
            "preview": {},
            "errors": exc.errors,
            "upload_id": "",
            "filename": filename,
        }
        return render(request, "dashboard/catalog_preview.html", ctx, 422)
    path.unlink(missing_ok=True)
    (path.parent / f"{upload_id}.name").unlink(missing_ok=True)
    await _menu_changed(request, shop_id)
    return redirect(f"/dashboard/shops/{shop_id}/catalog?imported={version}")


@owner_page
async def product_availability(request: Request, owner: Owner) -> Response:
    """Sold-out toggle. A form post redirects back; ``Accept: application/json`` gets JSON."""
    available = str((await request.form()).get("available", "")) in ("1", "true", "on")
    shop_id, product_id = request.path_params["shop_id"], request.path_params["product_id"]
    with request.app.state.db.write() as s:
        shop = owned_shop(s, owner.id, shop_id)
        if not any(p.product_id == product_id for p in live_products(s, shop)):
            raise NotFound("No such product in the live catalog.")
        set_product_available(s, shop, product_id, available)
    await _menu_changed(request, shop_id)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"product_id": product_id, "available": available})
    return redirect(f"/dashboard/shops/{shop_id}/catalog")


async def _menu_changed(request: Request, shop_id: str) -> None:
    await request.app.state.bus.publish(
        f"shop:{shop_id}", {"type": "menu_changed", "shop_id": shop_id}
    )
