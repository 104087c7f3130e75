"""HTTP routes of this feature (thin presentation over its commands and queries).

``routes`` is a plain list: the QR images here, the widget and page routes from ``pages``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.shops import pages
from server.shops.qr import qr_png, qr_svg
from server.shops.service import get_shop, shop_links


def _qr(request: Request, render, media_type: str, extension: str) -> Response:  # type: ignore[no-untyped-def]
    with request.app.state.db.read() as session:
        shop = get_shop(session, request.path_params["shop_id"])
        link = shop_links(request.app.state.settings, shop)["link"]
        slug = shop.slug
    headers = {"Cache-Control": "public, max-age=3600"}
    if request.query_params.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="{slug}-qr.{extension}"'
    return Response(render(link), media_type=media_type, headers=headers)


def qr_svg_image(request: Request) -> Response:
    """The hosted page's QR code as SVG (``?download=1`` to save it as a file)."""
    return _qr(request, qr_svg, "image/svg+xml", "svg")


def qr_png_image(request: Request) -> Response:
    """The hosted page's QR code as PNG (``?download=1`` to save it as a file)."""
    return _qr(request, qr_png, "image/png", "png")


routes: list[BaseRoute] = [
    Route("/api/shops/{shop_id}/qr.svg", qr_svg_image, methods=["GET"]),
    Route("/api/shops/{shop_id}/qr.png", qr_png_image, methods=["GET"]),
]
routes.extend(pages.routes)  # widget loader, embed and hosted pages
