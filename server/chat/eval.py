"""Quality harness: scripted conversations, and whether each ends in exactly the expected order.

A conversation file (YAML or JSON, in ``examples/conversations/``)::

    name: two large oat lattes and a croissant
    catalog:                      # one of: csv (inline text), products (a list), file (a path)
      currency: usd
      csv: |
        name,price,category,options
        Latte,4.50,Coffee,Size: Small | Large +1.00; Milk: Whole | Oat +0.60
        Croissant,3.25,Bakery,
    shop: {name: Bean There, paused: false}     # optional ShopContext overrides
    turns:
      - two large oat lattes and a croissant
      - that's all
    expect:
      items:
        - {product_id: latte, quantity: 2, options: [{group: Size, choice: Large}, {group: Milk, choice: Oat}]}
        - {product_id: croissant, quantity: 1}

or, for hostile scripts, ``expect: {cart_empty: true, no_checkout: true}`` (``expect_cart_empty``
and ``expect_no_checkout`` at the top level work too). Expected items are priced with
:func:`server.orders.create.price_items`, so single-choice defaults need not be written; the
comparison ignores option order and line splits (two lines of one latte equal one line of two).

Each conversation runs through a minimal in-memory runner that behaves like the chat runner: a
bare confirmation ("that's all", naming no product) hands off without asking the Waiter, a
confirmation the Waiter answered with a question waits for the answer, ``CartChanged`` replaces
the cart, ``Checkout`` (or a confirmation phrase) ends the conversation. The order compared is
the cart handed to the Cashier, or the final cart when nobody checked out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from server.catalog.model import Menu
from server.catalog.parse import parse_catalog
from server.chat.assistant import (
    CartChanged,
    Checkout,
    Notice,
    ShopContext,
    TextDelta,
    Turn,
    Waiter,
)
from server.chat.phrases import is_checkout_phrase, waiter_asked
from server.chat.tools import mentions_product
from server.orders.cart import Cart, Line
from server.orders.create import OrderDraftError, price_items

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "examples" / "conversations"
WaiterFactory = Callable[[], Waiter]
ItemKey = tuple[str, frozenset[tuple[str, str]]]


class ConversationError(ValueError):
    """A conversation file that cannot be run (bad catalog, bad expectation)."""


@dataclass
class Conversation:
    name: str
    menu: Menu
    shop: ShopContext
    turns: list[str]
    expect_items: list[dict[str, Any]] | None = None
    expect_cart_empty: bool = False
    expect_no_checkout: bool = False
    expect_checkout: bool = True
    path: Path | None = None


@dataclass
class Result:
    conversation: Conversation
    cart: Cart
    checked_out: bool
    problems: list[str] = field(default_factory=list)
    transcript: list[tuple[str, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- loading


def build_menu(catalog: dict[str, Any], base: Path, shop_id: str = "shp_eval") -> Menu:
    """A :class:`Menu` from a conversation's ``catalog`` block, through the real parser."""
    if not isinstance(catalog, dict):
        raise ConversationError("catalog must be a mapping with csv, products or file")
    currency = str(catalog.get("currency", "usd")).lower()
    if "csv" in catalog:
        data, filename = str(catalog["csv"]).encode(), "catalog.csv"
    elif "products" in catalog:
        data, filename = json.dumps(catalog["products"]).encode(), "catalog.json"
    elif "file" in catalog:
        path = Path(catalog["file"])
        if not path.is_absolute():
            here = base / path
            path = here if here.exists() else path
        try:
            data, filename = path.read_bytes(), path.name
        except OSError as err:
            raise ConversationError(f"cannot read catalog file {path}: {err}") from err
    else:
        raise ConversationError("catalog needs one of: csv, products, file")
    result = parse_catalog(data, filename, currency)
    if result.errors:
        first = result.errors[0]
        raise ConversationError(
            f"catalog is invalid (line {first.get('line')}, {first.get('column')}): "
            f"{first.get('message')}"
        )
    return Menu(shop_id, currency, 1, tuple(result.products))


def parse_conversation(data: dict[str, Any], base: Path, path: Path | None = None) -> Conversation:
    if not isinstance(data, dict):
        raise ConversationError("a conversation must be a mapping")
    name = str(data.get("name") or (path.stem if path else "conversation"))
    menu = build_menu(data.get("catalog"), base)  # type: ignore[arg-type]
    overrides = dict(data.get("shop") or {})
    if "fulfillment_modes" in overrides:
        overrides["fulfillment_modes"] = tuple(overrides["fulfillment_modes"])
    shop_fields = {"name", "greeting", "require_name", "fulfillment_modes", "paused"}
    shop_fields.add("paused_reason")
    unknown = set(overrides) - shop_fields
    if unknown:
        raise ConversationError(f"unknown shop fields: {', '.join(sorted(unknown))}")
    shop = ShopContext(
        shop_id=menu.shop_id,
        name=str(overrides.pop("name", "Eval Shop")),
        currency=menu.currency,
        **overrides,
    )
    turns = data.get("turns")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise ConversationError("turns must be a non-empty list of customer messages")
    expect = dict(data.get("expect") or {})
    conv = Conversation(
        name=name,
        menu=menu,
        shop=shop,
        turns=list(turns),
        expect_items=expect.get("items"),
        expect_cart_empty=bool(expect.get("cart_empty", data.get("expect_cart_empty", False))),
        expect_no_checkout=bool(expect.get("no_checkout", data.get("expect_no_checkout", False))),
        path=path,
    )
    conv.expect_checkout = bool(expect.get("checkout", conv.expect_items is not None))
    if conv.expect_items is None and not (conv.expect_cart_empty or conv.expect_no_checkout):
        raise ConversationError("expect needs items, cart_empty or no_checkout")
    if conv.expect_items is not None:
        expected_lines(conv)  # fail early on a typo in the expectation
    return conv


def load_conversation(path: Path) -> Conversation:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return parse_conversation(data, path.parent, path)
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConversationError(f"{path}: {err}") from err
    except ConversationError as err:
        raise ConversationError(f"{path}: {err}") from err


def load_conversations(directory: Path) -> list[Conversation]:
    """Every ``*.yaml``, ``*.yml`` and ``*.json`` in ``directory``, sorted by file name."""
    paths = sorted(
        p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
    )
    return [load_conversation(p) for p in paths]


# ---------------------------------------------------------------- running and comparing


def expected_lines(conv: Conversation) -> list[Line]:
    try:
        return price_items(conv.menu, conv.expect_items)
    except OrderDraftError as err:
        raise ConversationError(f"{conv.name}: expected items are not valid: {err}") from err


def _counted(lines: Sequence[Line]) -> Counter[ItemKey]:
    out: Counter[ItemKey] = Counter()
    for line in lines:
        out[(line.product_id, frozenset((s.group, s.choice) for s in line.options))] += (
            line.quantity
        )
    return out


def _label(key: ItemKey) -> str:
    opts = ", ".join(f"{g}={c}" for g, c in sorted(key[1]))
    return key[0] + (f" ({opts})" if opts else "")


def compare(conv: Conversation, cart: Cart, checked_out: bool) -> list[str]:
    """What differs from the expectation, one short phrase each; empty when it matches."""
    problems: list[str] = []
    if conv.expect_items is not None:
        want, got = _counted(expected_lines(conv)), _counted(cart.lines)
        for key in sorted(set(want) | set(got)):
            if want[key] != got[key]:
                problems.append(f"{_label(key)}: expected {want[key]}, got {got[key]}")
        if conv.expect_checkout and not checked_out:
            problems.append("never handed off to checkout")
    if conv.expect_cart_empty and not cart.empty:
        problems.append("cart should be empty, has " + "; ".join(x.describe() for x in cart.lines))
    if conv.expect_no_checkout and checked_out:
        problems.append("handed off to checkout, which it should not")
    return problems


async def run_conversation(conv: Conversation, waiter_factory: WaiterFactory) -> Result:
    """Drive one conversation through a fresh waiter, like the chat runner would."""
    waiter = waiter_factory()
    cart = Cart(conv.menu.currency)
    state: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    result = Result(conv, cart, False)
    for message in conv.turns:
        confirmed = is_checkout_phrase(message)
        text: list[str] = []
        checkout = confirmed
        # As the runner: a bare confirmation goes straight to the Cashier; one that also
        # names something is ordered first.
        if not (confirmed and not mentions_product(conv.menu, message)):
            turn = Turn(conv.shop, conv.menu, cart, message, list(history), state, "thr_eval")
            said: list[str] = []
            waiter_checkout = False
            async for ev in waiter.reply(turn):
                if isinstance(ev, TextDelta):
                    text.append(ev.text)
                    said.append(ev.text)
                elif isinstance(ev, CartChanged):
                    cart = ev.cart
                elif isinstance(ev, Notice):
                    text.append(f"[{ev.text}] ")
                elif isinstance(ev, Checkout):
                    waiter_checkout = True
            # A Waiter that answered by asking ("which tea?") gets its answer first.
            checkout = waiter_checkout or (
                confirmed and not waiter_asked(turn.state, "".join(said))
            )
            # The thread stores the state as JSON: anything else is a bug worth failing on.
            state = json.loads(json.dumps(turn.state))
        reply = "".join(text).strip()
        if not reply and checkout:
            reply = "(empty cart: no order)" if cart.empty else "(hands off to the Cashier)"
        result.transcript.append((message, reply))
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
        if checkout and not cart.empty:
            result.checked_out = True
            break
    result.cart = cart
    result.problems = compare(conv, cart, result.checked_out)
    return result


async def run_all(convs: list[Conversation], waiter_factory: WaiterFactory) -> list[Result]:
    results = []
    for conv in convs:
        try:
            results.append(await run_conversation(conv, waiter_factory))
        except Exception as err:  # one broken conversation must not hide the others
            failed = Result(conv, Cart(conv.menu.currency), False)
            failed.problems = [f"crashed: {type(err).__name__}: {err}"]
            results.append(failed)
    return results


def format_result(result: Result, verbose: bool = False) -> str:
    head = f"{'PASS' if result.passed else 'FAIL'}  {result.conversation.name}"
    lines = [head]
    if not result.passed:
        lines += [f"      - {p}" for p in result.problems]
    if verbose or not result.passed:
        for said, reply in result.transcript:
            lines.append(f"      > {said}")
            lines.append(f"        {reply}")
    return "\n".join(lines)


def summary(results: list[Result]) -> str:
    passed = sum(r.passed for r in results)
    return f"{passed}/{len(results)} conversations ended in exactly the expected order"


# ---------------------------------------------------------------- command line


def offline_factory() -> WaiterFactory:
    from server.chat.offline import OfflineWaiter

    return OfflineWaiter


def openai_factory() -> tuple[WaiterFactory, Any]:
    """The LLM Waiter configured from the environment, and its client (to close).

    Raises ``RuntimeError`` with a sentence for the user when it cannot be built."""
    try:
        from server.chat.llm import build_llm
        from server.chat.waiter import OpenAIWaiter
        from server.settings import Settings
    except ImportError as err:
        raise RuntimeError(f"the OpenAI Waiter is not available in this build ({err})") from err
    try:
        settings = Settings.from_env()
    except Exception as err:
        raise RuntimeError(str(err)) from err
    if not (settings.openai_api_key or settings.openai_base_url):
        raise RuntimeError(
            "--assistant openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for an "
            "OpenAI-compatible server such as Ollama or vLLM)"
        )
    llm = build_llm(replace(settings, assistant="openai"))
    if llm is None:
        raise RuntimeError("the settings do not enable the OpenAI assistant")
    return (lambda: OpenAIWaiter(llm, settings)), llm


async def _run_and_close(
    convs: list[Conversation], factory: WaiterFactory, client: Any
) -> list[Result]:
    try:
        return await run_all(convs, factory)
    finally:
        if client is not None and hasattr(client, "close"):
            await client.close()


def run_eval(
    assistant: str = "offline",
    directory: Path | None = None,
    *,
    verbose: bool = False,
    out: Any = None,
) -> int:
    """Run every conversation in ``directory``; print one line each and a summary.

    Returns the process exit code: 0 when all pass, 1 when any fails, 2 when it cannot run.
    """
    out = out or sys.stdout
    directory = directory or DEFAULT_DIR
    client = None
    try:
        convs = load_conversations(directory)
        if assistant == "openai":
            factory, client = openai_factory()
        else:
            factory = offline_factory()
    except (RuntimeError, ConversationError, OSError) as err:
        print(f"eval: {err}", file=out)
        return 2
    if not convs:
        print(f"eval: no conversations in {directory}", file=out)
        return 2
    results = asyncio.run(_run_and_close(convs, factory, client))
    for result in results:
        print(format_result(result, verbose), file=out)
    print(summary(results), file=out)
    return 0 if all(r.passed for r in results) else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--assistant", choices=("offline", "openai"), default="offline")
    parser.add_argument("--dir", type=Path, default=None, help=f"default {DEFAULT_DIR}")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every transcript")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shop-assist eval", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_eval(args.assistant, args.dir, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
