"""The quality harness: the offline suite passes (the CI gate), and failures are reported."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from server.chat.assistant import CartChanged, Checkout, TextDelta, Turn
from server.chat.eval import (
    ConversationError,
    load_conversations,
    offline_factory,
    parse_conversation,
    run_all,
    run_conversation,
    run_eval,
    summary,
)
from server.orders.cart import add_item

ROOT = Path(__file__).resolve().parents[2]
CONVERSATIONS = ROOT / "examples" / "conversations"

CSV = """name,price,category,options
Latte,4.50,Coffee,"Size: Small | Large +1.00; Milk: Whole | Oat +0.60"
Croissant,3.25,Bakery,
"""


def conversation(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "inline",
        "catalog": {"currency": "usd", "csv": CSV},
        "turns": ["two large oat lattes and a croissant", "that's all"],
        "expect": {
            "items": [
                {
                    "product_id": "latte",
                    "quantity": 2,
                    "options": [
                        {"group": "Milk", "choice": "Oat"},
                        {"group": "Size", "choice": "Large"},
                    ],
                },
                {"product_id": "croissant", "quantity": 1},
            ]
        },
    }
    data.update(overrides)
    return data


async def test_every_offline_conversation_ends_in_exactly_the_expected_order() -> None:
    convs = load_conversations(CONVERSATIONS)
    assert len(convs) >= 25
    results = await run_all(convs, offline_factory())
    failures = [f"{r.conversation.name}: {r.problems}" for r in results if not r.passed]
    assert failures == []
    assert (
        summary(results)
        == f"{len(convs)}/{len(convs)} conversations ended in exactly the expected order"
    )


async def test_options_compare_in_any_order_with_defaults_filled_in() -> None:
    result = await run_conversation(parse_conversation(conversation(), ROOT), offline_factory())
    assert result.passed and result.checked_out


class _GreedyWaiter:
    """A waiter that adds an extra croissant whatever is said: the harness must notice."""

    async def reply(self, turn: Turn):  # type: ignore[no-untyped-def]
        cart, _ = add_item(turn.menu, turn.cart, "croissant", 1)
        yield CartChanged(cart)
        yield TextDelta("Added a croissant.")
        yield Checkout()


async def test_a_wrong_order_fails_with_a_readable_difference() -> None:
    conv = parse_conversation(conversation(), ROOT)
    result = await run_conversation(conv, _GreedyWaiter)
    assert not result.passed
    assert "latte (Milk=Oat, Size=Large): expected 2, got 0" in result.problems
    assert result.transcript[0] == ("two large oat lattes and a croissant", "Added a croissant.")


async def test_hostile_expectations_catch_a_checkout_and_a_non_empty_cart() -> None:
    conv = parse_conversation(
        conversation(
            turns=["make the latte free"], expect={"cart_empty": True, "no_checkout": True}
        ),
        ROOT,
    )
    result = await run_conversation(conv, _GreedyWaiter)
    assert result.problems == [
        "cart should be empty, has 1 x Croissant",
        "handed off to checkout, which it should not",
    ]
    assert (await run_conversation(conv, offline_factory())).passed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"catalog": {"csv": "name,price\nLatte,abc\n"}}, "catalog is invalid"),
        ({"catalog": {"nothing": 1}}, "catalog needs one of"),
        ({"turns": []}, "turns must be"),
        ({"expect": {}}, "expect needs"),
        ({"expect": {"items": [{"product_id": "burger", "quantity": 1}]}}, "not valid"),
        ({"shop": {"colour": "red"}}, "unknown shop fields"),
    ],
)
def test_bad_conversation_files_are_rejected_with_a_reason(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConversationError, match=message):
        parse_conversation(conversation(**overrides), ROOT)


def test_run_eval_prints_one_line_each_and_exits_non_zero_on_failure(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "good.yaml").write_text(yaml.safe_dump(conversation(name="good")))
    wrong = conversation(name="wrong", turns=["a croissant", "that's all"])
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong))
    out = io.StringIO()
    code = run_eval("offline", tmp_path, out=out)
    text = out.getvalue()
    assert code == 1
    assert "PASS  good" in text and "FAIL  wrong" in text
    assert text.rstrip().endswith("1/2 conversations ended in exactly the expected order")

    (tmp_path / "wrong.yaml").unlink()
    assert run_eval("offline", tmp_path, out=io.StringIO()) == 0


def test_openai_without_a_key_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ASSISTANT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(conversation()))
    out = io.StringIO()
    assert run_eval("openai", tmp_path, out=out) == 2
    assert "OPENAI_API_KEY" in out.getvalue()


def test_cli_eval_subcommand_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from server.cli import main

    (tmp_path / "good.yaml").write_text(yaml.safe_dump(conversation(name="good")))
    assert main(["eval", "--dir", str(tmp_path)]) == 0
    assert "1/1 conversations ended in exactly the expected order" in capsys.readouterr().out
    wrong = conversation(name="wrong", turns=["a croissant", "that's all"])
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong))
    assert main(["eval", "--assistant", "offline", "--dir", str(tmp_path)]) == 1


def test_openai_waiter_runs_through_the_same_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai: Any
) -> None:
    import yaml

    from tests.fakes.fake_openai import ToolCall

    monkeypatch.setenv("ASSISTANT", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    options = [{"group": "Size", "choice": "Large"}, {"group": "Milk", "choice": "Oat"}]
    fake_openai.add_tool_calls(
        [
            ToolCall("add_to_cart", {"product_id": "latte", "quantity": 2, "options": options}),
            ToolCall("add_to_cart", {"product_id": "croissant", "quantity": 1}),
        ]
    )
    fake_openai.add_text("Two large oat lattes and a croissant, coming up.")
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(conversation(name="llm")))
    out = io.StringIO()
    assert run_eval("openai", tmp_path, out=out) == 0, out.getvalue()
    assert "PASS  llm" in out.getvalue()
    # "that's all" hands off without another model call, as in the chat runner.
    assert len(fake_openai.requests) == 2
