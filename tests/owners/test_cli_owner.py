"""``shop-assist create-owner EMAIL``: the password from a prompt, then the owner signs in."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server import cli
from tests.owners.helpers import login


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> None:
    for name in (
        "APP_ENV",
        "SECRET_KEY",
        "PAYMENTS",
        "ASSISTANT",
        "REDIS_URL",
        "STRIPE_SECRET_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_create_owner_prompts_for_a_password_then_login_works(
    env: None, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["long enough pass 1", "long enough pass 1"])
    monkeypatch.setattr("sys.stdin", _Tty())
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert cli.main(["create-owner", "cli@example.com"]) == 0
    assert login(TestClient(app), "cli@example.com", "long enough pass 1").status_code == 303


def test_create_owner_refuses_a_weak_password(
    env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["create-owner", "cli@example.com", "--password-stdin"]) == 1
    assert "at least 10 characters" in capsys.readouterr().err


def test_create_owner_sets_a_password_for_an_owner_made_by_create_shop(
    env: None, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    assert (
        cli.main(
            [
                "create-shop",
                "Cafe",
                "--csv",
                str(examples / "coffee.csv"),
                "--owner",
                "shop@example.com",
            ]
        )
        == 0
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("now a real password 5\n"))
    assert cli.main(["create-owner", "shop@example.com", "--password-stdin"]) == 0
    assert login(TestClient(app), "shop@example.com", "now a real password 5").status_code == 303
