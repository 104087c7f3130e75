"""The ``shop-assist`` command: JSON output, exit codes, one-line settings errors, the demo."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import pytest

from server import cli
from server.db import Database
from server.owners.tokens import owner_from_bearer
from tests.conftest import free_port

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> str:
    for name in (
        "APP_ENV",
        "SECRET_KEY",
        "OPENAI_API_KEY",
        "STRIPE_SECRET_KEY",
        "PAYMENTS",
        "ASSISTANT",
        "REDIS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://shop.example.com")
    return database_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_shop_prints_json_with_a_working_token(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "create-shop", "Demo Coffee", "--csv", str(EXAMPLES / "coffee.csv"))
    assert code == 0
    data = json.loads(out)
    assert data["slug"] == "demo-coffee"
    assert data["link"] == "https://shop.example.com/s/demo-coffee"
    assert data["shop_id"].startswith("shp_")
    assert data["token"].startswith("sa_")
    assert data["version"] == 1 and data["products"] == 20
    assert data["embed_snippet"].startswith('<script src="https://shop.example.com/widget.js"')
    db = Database(env)
    with db.write() as s:
        owner = owner_from_bearer(s, f"Bearer {data['token']}")
        assert owner is not None and owner.email == cli.DEFAULT_OWNER
    db.dispose()
    # A second shop for the same owner reuses the account and gets its own slug and token.
    code, out, _ = run(capsys, "create-shop", "Demo Coffee", "--csv", str(EXAMPLES / "coffee.csv"))
    second = json.loads(out)
    assert (second["slug"], second["owner"]) == ("demo-coffee-2", cli.DEFAULT_OWNER)
    assert second["token"] != data["token"]


def test_create_shop_with_an_owner_and_currency(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "create-shop",
        "Pizza",
        "--csv",
        str(EXAMPLES / "pizzeria.csv"),
        "--currency",
        "EUR",
        "--owner",
        "ana@example.com",
    ]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert json.loads(out)["owner"] == "ana@example.com"


def test_create_shop_refuses_a_currency_that_is_not_iso_4217(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = str(EXAMPLES / "coffee.csv")
    code, out, err = run(capsys, "create-shop", "Pizza", "--csv", csv, "--currency", "usb")
    assert (code, out) == (1, "")
    assert err.strip() == (
        "error: Currency 'usb' is not an ISO 4217 currency code; use one such as usd, eur or jpy."
    )
    code, out, _ = run(capsys, "create-shop", "Pizza", "--csv", csv, "--currency", "KWD")
    assert code == 0 and json.loads(out)["slug"] == "pizza"  # the refused one made nothing


def test_import_catalog_and_its_errors(
    env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, out, _ = run(capsys, "create-shop", "Bakery", "--csv", str(EXAMPLES / "bakery.csv"))
    shop_id = json.loads(out)["shop_id"]
    code, out, _ = run(capsys, "import-catalog", shop_id, str(EXAMPLES / "coffee.csv"))
    assert code == 0
    assert json.loads(out)["version"] == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("name,price\nLatte,abc\nTea,-1\n")
    code, out, err = run(capsys, "import-catalog", shop_id, str(bad))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "error: The catalog has 2 problems; nothing was changed.",
        "  line 2, price: 'abc' is not a price",
        "  line 3, price: '-1' is negative; prices must be 0 or more",
    ]
    code, _, err = run(capsys, "import-catalog", "shp_unknown", str(bad))
    assert (code, err.strip()) == (1, "error: No such shop.")
    code, _, err = run(capsys, "import-catalog", shop_id, str(tmp_path / "missing.csv"))
    assert code == 1 and "missing.csv" in err


def test_settings_error_is_one_line_and_exit_2(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ENV", "staging")
    code, out, err = run(capsys, "migrate")
    assert (code, out) == (2, "")
    assert err == "error: APP_ENV: 'staging' is not one of development, production\n"


def test_create_owner_with_password_from_stdin(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery staple\n"))
    code, out, _ = run(capsys, "create-owner", "Bo@Example.com", "--password-stdin")
    assert code == 0
    assert json.loads(out)["email"] == "bo@example.com"
    code, _, err = run(capsys, "create-owner", "bo@example.com")
    assert code == 1 and err.startswith("error: ")


def test_demo_shop_is_created_once(env: str) -> None:
    settings = cli.load_settings()
    first = cli.ensure_demo_shop(settings)
    second = cli.ensure_demo_shop(settings)
    assert first == second
    assert first["slug"] == "demo-coffee"
    assert first["link"] == "https://shop.example.com/s/demo-coffee"


def test_example_site_gets_the_host_and_shop_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        '<script src="{{HOST}}/widget.js" data-shop="{{SHOP_ID}}"></script>'
    )
    (site / "style.css").write_text("body{}")
    monkeypatch.setattr(cli, "EXAMPLES", tmp_path)
    port = free_port()
    server = cli.start_example_site("127.0.0.1", port, "http://127.0.0.1:8000", "shp_demo")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as r:
            assert (
                r.read().decode()
                == '<script src="http://127.0.0.1:8000/widget.js" data-shop="shp_demo"></script>'
            )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/style.css") as r:
            assert r.read() == b"body{}"
    finally:
        server.shutdown()
        server.server_close()


def test_every_subcommand_has_a_handler() -> None:
    parser = cli.build_parser()
    for argv in (
        ["serve"],
        ["migrate"],
        ["demo", "--port", "9000"],
        ["create-owner", "a@b.co"],
        ["create-shop", "X", "--csv", "f.csv"],
        ["import-catalog", "shp_1", "f.csv"],
    ):
        assert callable(parser.parse_args(argv).func)
