"""The ``shop-assist`` command.

Each subcommand is one ``cmd_*`` function taking the parsed arguments and returning an exit
code, plus one entry in :func:`build_parser`. Settings errors print one line
``error: VARIABLE: problem`` and exit 2.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from server.errors import AppError, CatalogInvalid, Unprocessable
from server.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEMO_SLUG = "demo-coffee"
DEMO_OWNER = "demo@shop-assist.local"
DEFAULT_OWNER = "owner@shop-assist.local"


def load_settings() -> Settings:
    return Settings.from_env()


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2))


def _error_lines(exc: CatalogInvalid) -> list[str]:
    lines = []
    for e in exc.errors:
        where = ", ".join(
            str(p) for p in (f"line {e['line']}" if e.get("line") else None, e.get("column")) if p
        )
        lines.append(f"  {where}: {e['message']}" if where else f"  {e['message']}")
    return lines


# ---------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the app with uvicorn (proxy headers honoured from FORWARDED_ALLOW_IPS)."""
    settings = load_settings()
    _serve(settings, args.host, args.port)
    return 0


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from server.app import create_app, tune_gc_for_serving

    app = create_app(settings)
    tune_gc_for_serving()
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        log_level=settings.log_level,
        access_log=False,  # the app logs one structured line per request itself
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    """Upgrade the database to the latest schema."""
    from server.migrate import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    print("database is up to date", file=sys.stderr)
    return 0


def cmd_create_owner(args: argparse.Namespace) -> int:
    """Create an owner account; the password from stdin, a prompt, or none (sign-in link)."""
    from server.db import Database
    from server.owners.service import create_owner, find_owner, set_password

    password: str | None = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password (empty: sign in by emailed link): ") or None
        if password is not None and getpass.getpass("Repeat password: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 1
    db = Database(load_settings().database_url)
    try:
        with db.write() as session:
            existing = find_owner(session, args.email) if password else None
            if existing is not None:  # e.g. made by create-shop without a password: set one
                set_password(session, existing, password)  # type: ignore[arg-type]
            owner = existing or create_owner(session, args.email, password)
            _print_json({"owner_id": owner.id, "email": owner.email})
    finally:
        db.dispose()
    return 0


def cmd_create_shop(args: argparse.Namespace) -> int:
    """Create a shop from a catalog file; print its id, slug, link and a new API token."""
    from server.catalog.money import currency_problem
    from server.catalog.service import check_catalog, import_catalog
    from server.db import Database
    from server.owners.service import create_owner, find_owner
    from server.owners.tokens import create_api_token
    from server.shops.service import create_shop, shop_links

    problem = currency_problem(args.currency)
    if problem:
        raise Unprocessable(problem, field="currency")
    settings = load_settings()
    path = Path(args.csv)
    data = path.read_bytes()
    parsed = check_catalog(data, path.name, args.currency.lower())
    db = Database(settings.database_url)
    try:
        with db.write() as session:
            email = args.owner or DEFAULT_OWNER
            owner = find_owner(session, email) or create_owner(session, email)
            shop = create_shop(session, name=args.name, currency=args.currency, owner_id=owner.id)
            result = import_catalog(session, shop, data, path.name, parsed=parsed)
            _, token = create_api_token(session, owner.id, f"cli: {shop.slug}")
            out = {
                "shop_id": shop.id,
                "slug": shop.slug,
                **shop_links(settings, shop),
                "owner": owner.email,
                "token": token,
                "version": result.version,
                "products": result.products,
                "warnings": result.warnings,
            }
    finally:
        db.dispose()
    _print_json(out)
    return 0


def cmd_import_catalog(args: argparse.Namespace) -> int:
    """Import a catalog file as the shop's new live version."""
    from server.catalog.service import check_catalog, import_catalog
    from server.db import Database
    from server.shops.service import get_shop

    settings = load_settings()
    path = Path(args.file)
    data = path.read_bytes()
    db = Database(settings.database_url)
    try:
        with db.read() as session:
            currency = get_shop(session, args.shop_id).currency
        parsed = check_catalog(data, path.name, currency)
        with db.write() as session:
            shop = get_shop(session, args.shop_id)
            result = import_catalog(session, shop, data, path.name, parsed=parsed)
    finally:
        db.dispose()
    _print_json(
        {
            "shop_id": args.shop_id,
            "version": result.version,
            "products": result.products,
            "warnings": result.warnings,
        }
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Migrate, create the demo shop once, serve the example site on port+1, then the app."""
    from server.migrate import upgrade

    settings = load_settings()
    browse_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    if not os.environ.get("PUBLIC_BASE_URL"):
        settings = settings.with_(public_base_url=f"http://{browse_host}:{args.port}")
    upgrade(settings.database_url)
    info = ensure_demo_shop(settings)
    site = start_example_site(args.host, args.port + 1, settings.public_base_url, info["shop_id"])
    site_url = f"http://{browse_host}:{args.port + 1}/"
    print(
        "\nShop Assist demo\n"
        f"  Hosted page:   {info['link']}\n"
        f"  QR code:       {info['qr_png']}\n"
        f"  Embed snippet: {info['embed_snippet']}\n"
        f"  Example site:  {site_url}\n",
        flush=True,
    )
    try:
        _serve(settings, args.host, args.port)
    finally:
        site.shutdown()
    return 0


def ensure_demo_shop(settings: Settings) -> dict[str, str]:
    """The "Demo Coffee" shop from examples/coffee.csv, created on the first run only."""
    from server.catalog.service import import_catalog
    from server.db import Database
    from server.owners.service import create_owner, find_owner
    from server.shops.service import create_shop, get_shop_by_slug, shop_links

    db = Database(settings.database_url)
    try:
        with db.write() as session:
            shop = get_shop_by_slug(session, DEMO_SLUG)
            if shop is None:
                owner = find_owner(session, DEMO_OWNER) or create_owner(session, DEMO_OWNER)
                shop = create_shop(
                    session,
                    name="Demo Coffee",
                    currency="usd",
                    owner_id=owner.id,
                    greeting="Hi! I can tell you about our coffee and take your order.",
                )
            if shop.live_catalog_version is None:
                path = EXAMPLES / "coffee.csv"
                import_catalog(session, shop, path.read_bytes(), path.name)
            return {"shop_id": shop.id, "slug": shop.slug, **shop_links(settings, shop)}
    finally:
        db.dispose()


class _SiteHandler(SimpleHTTPRequestHandler):
    """Static files of examples/site; HTML gets ``{{HOST}}`` and ``{{SHOP_ID}}`` filled in."""

    replacements: ClassVar[dict[str, str]] = {}

    def send_head(self):  # type: ignore[no-untyped-def]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_text(encoding="utf-8")
        for key, value in self.replacements.items():
            body = body.replace(key, value)
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        return io.BytesIO(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the demo prints its own URLs


def start_example_site(host: str, port: int, app_url: str, shop_id: str) -> ThreadingHTTPServer:
    """Serve examples/site in a background thread (a third-party page embedding the widget)."""
    handler = type(
        "SiteHandler",
        (_SiteHandler,),
        {"replacements": {"{{HOST}}": app_url, "{{SHOP_ID}}": shop_id}},
    )
    server = ThreadingHTTPServer((host, port), partial(handler, directory=str(EXAMPLES / "site")))
    threading.Thread(target=server.serve_forever, daemon=True, name="example-site").start()
    return server


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the scripted conversations; non-zero exit when any ends in the wrong order."""
    from server.chat.eval import run_eval

    return run_eval(args.assistant, args.dir, verbose=args.verbose)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shop-assist", description="Shop Assist: sell through chat."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def host_port(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        return p

    host_port(sub.add_parser("serve", help="serve the app")).set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="upgrade the database").set_defaults(func=cmd_migrate)
    host_port(sub.add_parser("demo", help="demo shop + example site, then serve")).set_defaults(
        func=cmd_demo
    )

    p = sub.add_parser("create-owner", help="create an owner account")
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_create_owner)

    p = sub.add_parser("create-shop", help="create a shop from a catalog file; prints JSON")
    p.add_argument("name")
    p.add_argument(
        "--csv", required=True, help="catalog file (CSV, JSON, Shopify or WooCommerce export)"
    )
    p.add_argument("--currency", default="usd")
    p.add_argument("--owner", help=f"owner email (default {DEFAULT_OWNER}, created if missing)")
    p.set_defaults(func=cmd_create_shop)

    p = sub.add_parser("import-catalog", help="import a catalog file as a shop's new version")
    p.add_argument("shop_id")
    p.add_argument("file")
    p.set_defaults(func=cmd_import_catalog)

    p = sub.add_parser("eval", help="run scripted conversations; prints how many order right")
    p.add_argument("--assistant", choices=("offline", "openai"), default="offline")
    p.add_argument("--dir", type=Path, help="conversation files (default examples/conversations)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every transcript")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CatalogInvalid as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        print("\n".join(_error_lines(exc)), file=sys.stderr)
        return 1
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
