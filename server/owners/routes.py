"""Owner routes: account pages, the dashboard and the owner API.

Every route with a ``{shop_id}``, ``{order_id}``, ``{product_id}`` or ``{token_id}`` resolves it
through the signed-in owner; ``tests/owners/test_isolation.py`` walks this list to prove it.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from server.owners import account, api, catalog_pages, dashboard

routes: list[BaseRoute] = [
    # accounts
    Route("/signup", account.signup_page, methods=["GET"]),
    Route("/signup", account.signup_submit, methods=["POST"]),
    Route("/login", account.login_page, methods=["GET"]),
    Route("/login", account.login_submit, methods=["POST"]),
    Route("/login/magic", account.magic_request, methods=["POST"]),
    Route("/login/magic/{token}", account.magic_confirm_page, methods=["GET"]),
    Route("/login/magic/{token}", account.magic_confirm, methods=["POST"]),
    Route("/logout", account.logout, methods=["POST"]),
    Route("/dashboard/account", account.account_page, methods=["GET"]),
    Route("/dashboard/account/password", account.password_submit, methods=["POST"]),
    Route("/dashboard/account/sessions/end", account.end_other_sessions_submit, methods=["POST"]),
    Route("/dashboard/account/tokens", account.token_create, methods=["POST"]),
    Route("/dashboard/account/tokens/{token_id}/revoke", account.token_revoke, methods=["POST"]),
    # dashboard
    Route("/dashboard", dashboard.home, methods=["GET"]),
    Route("/dashboard/shops", dashboard.shop_create, methods=["POST"]),
    Route("/dashboard/shops/{shop_id}", dashboard.shop_overview, methods=["GET"]),
    Route("/dashboard/shops/{shop_id}/settings", dashboard.shop_settings_page, methods=["GET"]),
    Route("/dashboard/shops/{shop_id}/settings", dashboard.shop_settings_submit, methods=["POST"]),
    Route("/dashboard/shops/{shop_id}/catalog", catalog_pages.catalog_page, methods=["GET"]),
    Route(
        "/dashboard/shops/{shop_id}/catalog/preview",
        catalog_pages.catalog_preview,
        methods=["POST"],
    ),
    Route(
        "/dashboard/shops/{shop_id}/catalog/confirm",
        catalog_pages.catalog_confirm,
        methods=["POST"],
    ),
    Route(
        "/dashboard/shops/{shop_id}/products/{product_id}/availability",
        catalog_pages.product_availability,
        methods=["POST"],
    ),
    Route("/dashboard/shops/{shop_id}/card", dashboard.share_card, methods=["GET"]),
    Route("/dashboard/shops/{shop_id}/events", api.shop_events, methods=["GET"]),
    Route("/dashboard/shops/{shop_id}/orders", dashboard.orders_page, methods=["GET"]),
    Route("/dashboard/shops/{shop_id}/orders.csv", api.orders_export, methods=["GET"]),
    Route("/dashboard/shops/{shop_id}/orders/{order_id}", dashboard.order_detail, methods=["GET"]),
    Route(
        "/dashboard/shops/{shop_id}/orders/{order_id}/status",
        dashboard.order_status_submit,
        methods=["POST"],
    ),
    # owner API
    Route("/api/shops/{shop_id}/orders", api.shop_orders, methods=["GET"]),
    Route("/api/orders/{order_id}", api.get_order, methods=["GET"]),
    Route("/api/orders/{order_id}", api.patch_order, methods=["PATCH"]),
    # the dashboard's own script and style (owner pages allow no inline ones)
    Route("/static/dashboard.js", dashboard.static_file, methods=["GET"]),
    Route("/static/dashboard.css", dashboard.static_file, methods=["GET"]),
]
