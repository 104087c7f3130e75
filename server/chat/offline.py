"""The built-in offline Waiter: deterministic, no model, good enough to take real orders.

It reads each message with :mod:`server.chat.nlu` (numbers, fuzzy product names, options),
changes the cart only through :mod:`server.orders.cart`, and asks rather than guesses when a
product name is ambiguous or a required choice is missing. What it is waiting for (the pending
question, the last line touched) lives in ``turn.state`` as plain JSON.

A message is read in this order, first match wins: hostile (injection, named prices, other
customers) -> the answer to our pending question -> a note -> clear the cart -> remove ->
change the last line ("make it 3", "no, a small one", "a cappuccino instead") -> confirmation
-> a question (price, dietary, category, options, menu) -> an order -> small talk -> "sorry".
What it says about the menu is built by :mod:`server.chat.offline_text`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from server.catalog.model import Menu, Product
from server.catalog.money import format_amount
from server.chat import offline_text as texts
from server.chat import phrases as ph
from server.chat.assistant import (
    AssistantEvent,
    CartChanged,
    Checkout,
    ShopContext,
    TextDelta,
    Turn,
)
from server.chat.nlu import (
    GLUE,
    ItemRequest,
    MenuIndex,
    extract_options,
    find_categories,
    find_mentions,
    find_numbers,
    index_for,
    name_tokens,
    parse_items,
    tokenize,
)
from server.chat.offline_text import describe, or_list
from server.orders.cart import (
    MAX_QUANTITY,
    Cart,
    CartError,
    Line,
    add_item,
    remove_item,
    resolve_options,
    update_item,
)

_DIET_TOKENS = frozenset(
    [
        "vegan",
        "vegetarian",
        "veggie",
        "gluten",
        "free",
        "dairy",
        "lactose",
        "nut",
        "nuts",
        "halal",
        "kosher",
        "keto",
        "sugar",
        "plant",
        "based",
        "gf",
        "spicy",
        "organic",
        "options",
        "option",
    ]
)
_NOTE = re.compile(r"\b(?:note|request)s?\s*[:=]\s*", re.IGNORECASE)
_NOT_A_THING = frozenset(
    str.split(
        "can could get have want like please give need i'd you me some any anything got sell "
        "serve does there"
    )
)
ASK_LIMIT = 6  # candidates named in a "which one?" question
PENDING_LIMIT = 40  # candidates remembered for the answer
CHUNK_WORDS = 6


def _chunks(text: str) -> list[str]:
    words = text.split(" ")
    return [
        " ".join(words[i : i + CHUNK_WORDS]) + (" " if i + CHUNK_WORDS < len(words) else "")
        for i in range(0, len(words), CHUNK_WORDS)
    ]


class OfflineWaiter:
    """A Waiter that needs no model: ``async for event in OfflineWaiter().reply(turn)``."""

    async def reply(self, turn: Turn) -> AsyncIterator[AssistantEvent]:
        conversation = _Conversation(turn)
        conversation.handle()
        started = False
        for out in conversation.outputs:
            if not isinstance(out, str):
                yield out
                continue
            if not out:
                continue
            for chunk in _chunks((" " if started else "") + out):
                yield TextDelta(chunk)
            started = True
        turn.state.clear()
        turn.state.update(conversation.state)


@dataclass
class _Conversation:
    turn: Turn
    outputs: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shop: ShopContext = self.turn.shop
        self.menu: Menu = self.turn.menu
        self.cart: Cart = self.turn.cart
        self.state: dict[str, Any] = dict(self.turn.state)
        self.idx: MenuIndex = index_for(self.menu)
        # "a latte, note: extra hot" -> the note goes on the item, not into understanding.
        text, note = self.turn.message, ""
        marker = _NOTE.search(text)
        if marker:
            text, note = text[: marker.start()], text[marker.end() :]
        self.note: str | None = " ".join(note.split())[:200] or None
        self.norm = ph.normalise(text)
        self.words = self.idx.canon_all(tokenize(text))
        self.pending: dict[str, Any] | None = self.state.pop("pending", None)
        self.asked_more = bool(self.state.pop("asked_more", False))
        self.topic: dict[str, Any] | None = self.state.pop("topic", None)
        self.items_added = False
        # "an espresso, that's all": add it and check out, without asking for anything else.
        self.confirming = ph.is_checkout_phrase(self.turn.message)

    # ------------------------------------------------------------ output helpers

    def say(self, text: str) -> None:
        self.outputs.append(text)

    def money(self, amount: int) -> str:
        return format_amount(amount, self.menu.currency)

    def changed(self, cart: Cart, line: Line | None = None) -> None:
        self.cart = cart
        if line is not None:
            self.state["last_line"] = line.line_id
        self.outputs.append(CartChanged(cart))

    def subtotal(self) -> str:
        if self.cart.empty:
            return "Your cart is empty."
        return f"Subtotal: {self.money(self.cart.subtotal)}."

    def hint(self) -> str:
        example = next((p for p in self.menu.products if p.available), None)
        sample = f'"2 x {example.name}"' if example else '"2 x something"'
        return (
            f"You can ask for the menu, ask about prices or dietary options, or just tell me "
            f"what you'd like, for example {sample}."
        )

    # ------------------------------------------------------------ dispatch

    def handle(self) -> None:
        if not self.words and not self.note:
            self.say("Sorry, I didn't catch that. " + self.hint())
            return
        if ph.is_hostile(self.norm):
            self.refuse()
            return
        if re.search(r"(?:^|[\s,(])-\s*\d", self.norm):
            self.say(f"Sorry, quantities go from 1 to {MAX_QUANTITY}. " + self.hint())
            if self.pending:
                self.state["pending"] = self.pending
            return
        if self.pending and re.match(
            r"^(?:no|nope|never ?mind|forget (?:it|that)|cancel (?:it|that)|skip (?:it|that)|"
            r"leave (?:it|that))\b[.! ]*$",
            self.norm,
        ):
            self.say("OK, I've left that out. " + self.subtotal())
            return
        if self.pending and self.resolve_pending(self.pending):
            return
        handled = self.dispatch()
        changed = any(isinstance(o, CartChanged | Checkout) for o in self.outputs)
        if self.pending and "pending" not in self.state and not changed:
            # A question in between ("what's in my cart?"): answer it, then ask ours again.
            self.state["pending"] = self.pending
            self.say(self.pending.get("question", ""))
            return
        if not handled:
            self.fallback()

    def refuse(self) -> None:
        if ph.is_privacy_probe(self.norm):
            self.say(
                "Sorry, I can't do that. I can only talk about this shop's menu and your own "
                "order. " + self.hint()
            )
        else:
            self.say(
                "Sorry, I can't do that. Prices come from the shop's menu, and I can only add "
                "items that are on it. " + self.hint()
            )
        if self.pending:
            self.state["pending"] = self.pending

    # ------------------------------------------------------------ adding items

    def add_items(self, items: list[ItemRequest]) -> None:
        """Add what can be added; ask about the first item that needs a choice."""
        if self.shop.paused:
            self.say(self.shop.not_taking_orders + " I'm happy to answer questions about the menu.")
            return
        # Add everything clear first, then ask about the first item that needs an answer.
        unclear = [item for item in items if self.question_for(item) is not None]
        for item in items:
            if not any(item is u for u in unclear):
                self.add_one(item)
        if unclear:
            first = unclear[0]
            missing = self.question_for(first)
            if missing == "product":
                self.ask_product(first, unclear[1:])
            else:
                self.ask_option(self.product(first.product_ids[0]), first, missing, unclear[1:])
            return
        if self.items_added and not self.confirming:
            self.say(self.subtotal() + " Anything else? Say \"that's all\" when you're ready.")
            self.state["asked_more"] = True

    def question_for(self, item: ItemRequest) -> Any:
        """ "product" when the name is ambiguous, the option group still to choose, or None."""
        if not 1 <= item.quantity <= MAX_QUANTITY:
            return None
        if len(item.product_ids) > 1:
            return "product"
        product = self.product(item.product_ids[0])
        if not product.available:
            return None
        options, _ = extract_options(self.idx, product, item.words, item.override)
        return self.missing_group(product, options)

    def add_one(self, item: ItemRequest) -> None:
        """Add one clear item, or say why not (sold out, too many, refused by the cart)."""
        if item.quantity <= 0:
            names = " or ".join(self.product(pid).name for pid in item.product_ids)
            self.say(f"OK, no {names}.")
            return
        if item.quantity > MAX_QUANTITY:
            names = " or ".join(self.product(pid).name for pid in item.product_ids)
            self.say(
                f"Sorry, I can take at most {MAX_QUANTITY} of one item in a chat order, so I "
                f"didn't add {item.quantity} x {names}. For a large order, please contact the "
                "shop directly."
            )
            return
        product = self.product(item.product_ids[0])
        if not product.available:
            self.say(texts.sold_out_text(self.menu, product))
            return
        options, other = extract_options(self.idx, product, item.words, item.override)
        try:
            note, self.note = self.note, None  # the first item named takes the note
            cart, line = add_item(self.menu, self.cart, product.id, item.quantity, options, note)
        except CartError as err:
            held = sum(ln.quantity for ln in self.cart.lines if ln.product_id == product.id)
            if held and held + item.quantity > MAX_QUANTITY:
                # The same item already in the cart would go past the limit: say so.
                self.say(self.too_many(product.name, held))
            else:
                self.say(f"Sorry, I couldn't add {product.name}: {err}")
            return
        self.changed(cart, line)
        self.items_added = True
        added = replace(line, quantity=item.quantity)  # the line may hold earlier ones too
        text = f"Added {describe(added)}: {self.money(added.line_total)}."
        if line.note:
            text = text[:-1] + f', noted "{line.note}".'
        if other:
            text += f" ({product.name} doesn't come with {', '.join(other)}.)"
        self.say(text)

    def over_limit(self, product: Product, chosen: list[dict[str, str]], asked: str) -> Any:
        """A group other than ``asked`` with more choices named than it allows, or None."""
        for group in product.options:
            named = {o["choice"] for o in chosen if o["group"] == group.name}
            if group.name != asked and len(named) > group.max_choices:
                return group
        return None

    def too_many(self, name: str, held: int = 0) -> str:
        already = f", and you already have {held} in your cart" if held else ""
        return (
            f"Sorry, I can take at most {MAX_QUANTITY} x {name} in a chat order{already}. "
            "For a large order, please contact the shop directly."
        )

    def missing_group(self, product: Product, options: list[dict[str, str]]) -> Any:
        named = {o["group"] for o in options}
        for group in product.options:
            if group.min_choices > 0 and not group.has_default and group.name not in named:
                return group
        return None

    def ask_product(self, item: ItemRequest, queue: list[ItemRequest]) -> None:
        names = []
        shown = item.product_ids[:ASK_LIMIT]
        for pid in shown:
            p = self.product(pid)
            names.append(f"{p.name} ({self.money(p.price)}{'' if p.available else ', sold out'})")
        if len(item.product_ids) > len(shown):
            question = (
                f"{len(item.product_ids)} items match. Which one would you like, for example "
                + or_list(names)
                + "?"
            )
        else:
            question = "Which one would you like: " + or_list(names) + "?"
        keep = replace(item, product_ids=item.product_ids[:PENDING_LIMIT])
        self.state["pending"] = {
            "kind": "product",
            "item": keep.to_state(),
            "queue": [q.to_state() for q in queue],
            "question": question,
        }
        self.say(question)
        self.after_question()

    def ask_option(
        self, product: Product, item: ItemRequest, group: Any, queue: list[ItemRequest]
    ) -> None:
        choices = [
            c.name + (f" (+{self.money(c.price_delta)})" if c.price_delta else "")
            for c in group.choices
        ]
        if group.multi:
            question = (
                f"Which {group.name} would you like on the {product.name}? Pick "
                f"{group.min_choices} to {group.max_choices}: {', '.join(choices)}."
            )
        else:
            question = (
                f"Which {group.name} would you like for the {product.name}: {or_list(choices)}?"
            )
        pending_item = ItemRequest((product.id,), item.quantity, item.words, item.override)
        self.state["pending"] = {
            "kind": "option",
            "item": pending_item.to_state(),
            "group": group.name,
            "queue": [q.to_state() for q in queue],
            "question": question,
        }
        self.say(question)
        self.after_question()

    def after_question(self) -> None:
        if self.items_added:
            self.say(self.subtotal())

    def product(self, pid: str) -> Product:
        # A cart line can outlive its product (a new catalog version): a bare stand-in keeps
        # the conversation going, and the cart operations refuse to change such a line.
        return self.menu.get(pid) or Product(pid, pid, 0, available=False)

    # ------------------------------------------------------------ answering a question we asked

    def resolve_pending(self, pending: dict[str, Any]) -> bool:
        kind = pending.get("kind")
        item = ItemRequest.from_state(pending["item"]) if "item" in pending else None
        queue = [ItemRequest.from_state(q) for q in pending.get("queue", [])]
        if kind == "product" and item is not None:
            chosen = self.pick_product(item.product_ids)
            if not chosen:
                return False
            new_items = [
                ItemRequest((pid,), item.quantity, item.words + self.words, item.override)
                for pid in chosen
            ]
            self.add_items(new_items + queue)
            return True
        if kind == "option" and item is not None:
            product = self.menu.get(item.product_ids[0])
            group = product.group(pending.get("group", "")) if product else None
            if product is None or group is None:
                return False
            words = [w for w in self.words if w not in GLUE]
            options, _ = extract_options(self.idx, product, words)
            if not any(o["group"] == group.name for o in options):
                return False
            item.override = item.override + words
            chosen, _ = extract_options(self.idx, product, item.words, item.override)
            try:
                if self.missing_group(product, chosen) is None:  # else: the next question
                    resolve_options(product, chosen)
            except CartError as err:  # "pick at most 5": say so and ask again
                sorry = f"Sorry, {str(err)[:1].lower()}{str(err)[1:]}"
                over = self.over_limit(product, chosen, group.name)
                if over is not None:
                    # Too many of another group ("with olives, basil and mushrooms", at
                    # most 2): this answer stands, that group is asked for again; asking
                    # ours again would loop.
                    self.say(sorry)
                    drop = {w for c in over.choices for w in self.idx.canon_all(tokenize(c.name))}
                    item.words = [w for w in item.words if w not in drop]
                    item.override = [w for w in item.override if w not in drop]
                    self.ask_option(product, item, over, queue)
                    return True
                self.state["pending"] = pending
                self.say(f"{sorry} {pending.get('question', '')}")
                return True
            self.add_items([item, *queue])
            return True
        if kind == "remove":
            return self.resolve_remove(pending)
        return False

    def pick_product(self, candidates: tuple[str, ...]) -> list[str]:
        """Which of ``candidates`` the answer names: "the green one", "black", "the second"."""
        if re.search(r"\b(?:both|all of them|one of each|each)\b", self.norm):
            return list(candidates)
        found = find_mentions(self.idx, self.words, only=set(candidates))
        if found and not found[0].ambiguous:
            return [found[0].product_ids[0]]
        shared = set.intersection(*(set(self.idx.names[c]) for c in candidates))
        hits = [
            c
            for c in candidates
            if any(w in set(self.idx.names[c]) - shared - GLUE for w in self.words)
        ]
        if len(hits) == 1:
            return hits
        ordinals = {"first": 0, "second": 1, "third": 2, "fourth": 3, "last": len(candidates) - 1}
        for word, pos in ordinals.items():
            if word in self.words and pos < len(candidates):
                return [candidates[pos]]
        return []

    # ------------------------------------------------------------ what kind of message

    def dispatch(self) -> bool:
        """Handle the message; False when nothing in it was understood."""
        norm = self.norm
        items = parse_items(self.idx, self.words)
        checkout = self.confirming
        if self.note and not items and self.cart.empty:
            self.say('Tell me the item with its note, for example "a latte, note: extra hot".')
            return True
        if self.note and not items and self.last_line() is not None:
            target = self.last_line()
            assert target is not None
            cart, line = update_item(self.menu, self.cart, target.line_id, note=self.note)
            self.changed(cart, line)
            self.say(f'Noted "{line.note}" on {describe(line)}.')
            return True
        if ph.asks_clear(norm):
            self.clear()
            return True
        if (ph.asks_remove(norm) or self.leading_no(items)) and self.remove(items):
            return True
        if (ph.asks_change(norm) or (ph.asks_more(norm) and not items)) and self.change(items):
            return True
        if checkout and not items:
            self.checkout()
            return True
        if self.asked_more and ph.is_plain_no(norm) and not self.cart.empty:
            self.checkout()
            return True
        if ph.is_question(norm) and not ph.has_order_cue(norm) and self.answer(items):
            return True
        if (
            items
            and all(item.by_choice for item in items)
            and not find_numbers(self.words)
            and not ph.has_order_cue(norm)
            and self.change([])
        ):
            return True  # a bare "sesame" after ordering a bagel: that bagel, sesame
        if not items and self.topic and self.menu.get(self.topic.get("product_id", "")):
            items = self.about_topic()
        if items:
            self.add_items(items)
            if checkout and "pending" not in self.state and not self.shop.paused:
                self.checkout()
            return True
        return self.small_talk()

    def about_topic(self) -> list[ItemRequest]:
        """ "I'll take two" right after "how much is a large latte?": two large lattes."""
        assert self.topic is not None
        numbers = [n for n in find_numbers(self.words) if not n.article]
        cue = ph.has_order_cue(self.norm) or re.search(
            r"\b(?:one|some|them|those|that|it)\b|^(?:yes|ok|okay|sure)\b", self.norm
        )
        if not numbers and not cue:
            return []
        quantity = numbers[-1].value if numbers else 1
        used = {i for n in numbers for i in range(n.start, n.end)}
        words = [w for i, w in enumerate(self.words) if i not in used]
        return [
            ItemRequest(
                (self.topic["product_id"],),
                quantity,
                list(self.topic.get("words", [])),
                words,
                stated=bool(numbers),
            )
        ]

    def small_talk(self) -> bool:
        norm = self.norm
        if ph.asks_cart(norm):
            self.say(texts.cart_text(self.cart))
        elif ph.diet_words(norm):
            self.say(texts.diet_text(self.menu, [], ph.diet_words(norm)))
        elif ph.asks_menu(norm) or find_categories(self.idx, self.words):
            self.say(texts.menu_text(self.menu, find_categories(self.idx, self.words)))
        elif ph.asks_price(norm):
            self.say(texts.menu_text(self.menu, []))
        elif ph.is_greeting(norm):
            greeting = self.shop.greeting or f"Hi, welcome to {self.shop.name}!"
            self.say(f"{greeting} {self.hint()}")
        elif ph.is_thanks(norm) or ph.is_yes(norm):
            if ph.is_yes(norm) and not ph.is_thanks(norm):
                self.say("Sure, what would you like?")
            elif self.cart.empty:
                self.say("You're welcome! What would you like?")
            else:
                self.say("You're welcome! Say \"that's all\" when you're ready to order.")
        elif re.search(r"\bhow are you\b|\bhow's it going\b", norm):
            self.say("I'm well, thanks! What can I get you?")
        elif ph.is_plain_no(norm):
            self.say("No problem. " + self.hint())
        else:
            return False
        return True

    def off_menu(self) -> None:
        """ "a burger please", "do you have sandwiches?": not on the menu, say what is."""
        wanted = [
            w
            for w in tokenize(self.turn.message)
            if w not in GLUE and len(w) > 2 and w.isalpha() and w not in _NOT_A_THING
        ]
        thing = " ".join(wanted[-2:]) or "that"
        cats = ", ".join(self.menu.categories[:6])
        self.say(
            f'Sorry, I couldn\'t find "{thing}" on our menu. We have {cats}. '
            "Ask for the menu to see everything."
        )

    def fallback(self) -> None:
        if ph.has_order_cue(self.norm) or find_numbers(self.words):
            self.off_menu()
        elif ph.is_question(self.norm):
            self.say(
                f"Sorry, I can only help with the menu and your order here; for anything else, "
                f"please ask {self.shop.name} directly. " + self.hint()
            )
        else:
            self.say("Sorry, I didn't understand that. " + self.hint())

    # ------------------------------------------------------------ checkout and the cart

    def checkout(self) -> None:
        if self.shop.paused:
            self.say(self.shop.not_taking_orders)
            return
        if self.cart.empty:
            self.say("Your cart is empty — what would you like?")
            return
        self.state.pop("pending", None)
        # The Cashier follows at once with the order and its total.
        self.say("Great, let's check out.")
        self.outputs.append(Checkout())

    def clear(self) -> None:
        if self.cart.empty:
            self.say("Your cart is already empty. What would you like?")
            return
        cart = self.cart
        for line in list(cart.lines):
            cart, _ = remove_item(cart, line.line_id)
        self.state.pop("last_line", None)
        self.changed(cart)
        self.say("Done, your cart is empty. What would you like?")

    def last_line(self) -> Line | None:
        wanted = self.state.get("last_line")
        for line in self.cart.lines:
            if line.line_id == wanted:
                return line
        return self.cart.lines[-1] if self.cart.lines else None

    # ------------------------------------------------------------ removing

    def leading_no(self, items: list[ItemRequest]) -> bool:
        """ "no croissant", "actually no croissant" (but not "no, a cappuccino")."""
        if not items:
            return False
        words = self.words
        for i, w in enumerate(words):
            if w == "no":
                j = i + 1
                while j < len(words) and words[j] in ("more", "the", "that", "those"):
                    j += 1
                mentions = find_mentions(self.idx, words[j:])
                return bool(mentions) and mentions[0].start == 0
            if w not in ("actually", "oh", "sorry", "wait", "hmm", "and", ","):
                return False
        return False

    def remove(self, items: list[ItemRequest]) -> bool:
        if self.cart.empty:
            self.say("Your cart is already empty. What would you like?")
            return True
        if not items:
            if not re.search(r"\b(?:it|that|this|last|them|those)\b", self.norm):
                return False
            target = self.last_line()
            assert target is not None
            self.drop_lines([target], None)
            return True
        for item in items:
            lines = [ln for ln in self.cart.lines if ln.product_id in item.product_ids]
            if not lines:
                names = " or ".join(self.product(pid).name for pid in item.product_ids)
                self.say(f"There's no {names} in your cart.")
                continue
            lines = self.narrow(lines, self.words)
            if len(lines) > 1 and not re.search(r"\b(?:all|both|every|them)\b", self.norm):
                self.ask_remove(lines)
                return True
            self.drop_lines(lines, item.quantity if item.stated else None)
        self.say(self.subtotal())
        return True

    def narrow(self, lines: list[Line], words: list[str]) -> list[Line]:
        """Lines whose options include every choice named in ``words`` ("the large one")."""
        product = self.product(lines[0].product_id)
        options, _ = extract_options(self.idx, product, words)
        if not options:
            return lines
        named = {(o["group"], o["choice"]) for o in options}
        hits = [ln for ln in lines if named <= {(s.group, s.choice) for s in ln.options}]
        return hits or lines

    def ask_remove(self, lines: list[Line]) -> None:
        question = (
            "Which one should I remove: "
            + or_list([describe(line) for line in lines])
            + '? Or say "both".'
        )
        self.state["pending"] = {
            "kind": "remove",
            "line_ids": [line.line_id for line in lines],
            "question": question,
        }
        self.say(question)

    def resolve_remove(self, pending: dict[str, Any]) -> bool:
        lines = [ln for ln in self.cart.lines if ln.line_id in pending.get("line_ids", [])]
        if not lines:
            return False
        if re.search(r"\b(?:all|both|every|them)\b", self.norm):
            chosen = lines
        else:
            chosen = self.narrow(lines, self.words)
            if len(chosen) == len(lines):
                ordinals = {"first": 0, "second": 1, "third": 2, "last": len(lines) - 1}
                picks = [lines[i] for w, i in ordinals.items() if w in self.words]
                if not picks:
                    return False
                chosen = picks[:1]
        self.drop_lines(chosen, None)
        self.say(self.subtotal())
        return True

    def drop_lines(self, lines: list[Line], quantity: int | None) -> None:
        for line in lines:
            if quantity is not None and quantity < line.quantity:
                cart, new = update_item(
                    self.menu, self.cart, line.line_id, quantity=line.quantity - quantity
                )
                self.changed(cart, new)
                self.say(f"Removed {quantity} {line.name}; {describe(new)} left.")
            else:
                cart, _ = remove_item(self.cart, line.line_id)
                self.changed(cart)
                self.say(f"Removed {describe(line)}.")

    # ------------------------------------------------------------ changing the last line

    def change(self, items: list[ItemRequest]) -> bool:
        """ "make it 3", "no, a small one", "change the milk to soy", "a cappuccino instead"."""
        target = self.last_line()
        if target is None:
            return False
        in_cart = [
            i for i in items if any(ln.product_id in i.product_ids for ln in self.cart.lines)
        ]
        strong = re.search(
            r"\binstead\b|\bmake (?:it|that|this)\b|\bchange\b|\bswitch\b|\bswap\b|"
            r"\breplace\b|\bexchange\b|\bi meant\b|^(?:no|nope)\b",
            self.norm,
        )
        if items and not in_cart:
            if not strong or len(items) > 1 or self.shop.paused:
                return False
            return self.replace_product(target, items[0])
        new = [i for i in items if not any(i is c for c in in_cart)]
        if strong and len(in_cart) == 1 and len(new) == 1 and not self.shop.paused:
            # "swap the lattes for cappuccinos": the named line becomes the new product.
            lines = [ln for ln in self.cart.lines if ln.product_id in in_cart[0].product_ids]
            return self.replace_product(lines[-1], new[0])
        if in_cart:
            item = in_cart[-1]
            lines = [ln for ln in self.cart.lines if ln.product_id in item.product_ids]
            target = next((ln for ln in lines if ln.line_id == target.line_id), lines[-1])
        split = re.search(r"\b(\w+) of (?:them|those|these|the)\b", self.norm)
        if split:
            numbers = find_numbers([split.group(1)])
            n = numbers[0].value if numbers else 0
            same = [ln for ln in self.cart.lines if ln.product_id == target.product_id]
            wide = [ln for ln in same if ln.quantity > n]
            if target not in wide and wide:
                target = max(wide, key=lambda ln: ln.quantity)
            if self.split_line(target, n):
                return True
        quantity = self.new_quantity(items, in_cart)
        if ph.asks_more(self.norm) and not items:
            more = re.search(r"\b(\w+) more\b", self.norm)
            numbers = find_numbers([more.group(1)]) if more else []
            quantity = target.quantity + (numbers[0].value if numbers else 1)
        product = self.product(target.product_id)
        options, _ = extract_options(self.idx, product, self.words)
        if not options and not in_cart:
            # "no, a small one" right after adding a croissant: the latte is meant.
            for line in reversed(self.cart.lines):
                opts, _ = extract_options(self.idx, self.product(line.product_id), self.words)
                if opts:
                    target, product, options = line, self.product(line.product_id), opts
                    break
        if quantity is None and not options:
            return False
        if self.shop.paused and quantity is not None and quantity > target.quantity:
            self.say(self.shop.not_taking_orders)
            return True
        if quantity == 0 and not options:  # "make it 0": take it off
            self.drop_lines([target], None)
            self.say(self.subtotal())
            return True
        if quantity is not None and quantity > MAX_QUANTITY:
            self.say(self.too_many(target.name))
            return True
        merged = [s.to_json() for s in target.options]
        groups = {o["group"] for o in options}
        merged = [{"group": o["group"], "choice": o["choice"]} for o in merged]
        merged = [o for o in merged if o["group"] not in groups] + options
        try:
            cart, line = update_item(
                self.menu, self.cart, target.line_id, quantity=quantity, options=merged
            )
        except CartError as err:
            self.say(f"Sorry, I couldn't change that: {err}")
            return True
        self.changed(cart, line)
        self.say(f"Updated: {describe(line)}: {self.money(line.line_total)}. {self.subtotal()}")
        return True

    def split_line(self, target: Line, n: int) -> bool:
        """ "make one of them oat": one latte changes, the others stay as they were."""
        options, _ = extract_options(self.idx, self.product(target.product_id), self.words)
        if not options or not 0 < n < target.quantity:
            return False
        groups = {o["group"] for o in options}
        kept = [s.to_json() for s in target.options if s.group not in groups]
        merged = [{"group": o["group"], "choice": o["choice"]} for o in kept] + options
        try:
            cart, rest = update_item(
                self.menu, self.cart, target.line_id, quantity=target.quantity - n
            )
            cart, line = add_item(self.menu, cart, target.product_id, n, merged, target.note)
        except CartError as err:
            self.say(f"Sorry, I couldn't change that: {err}")
            return True
        self.changed(cart, line)
        self.say(
            f"Changed {n} to {describe(replace(line, quantity=n))}; {describe(rest)} as before. "
            + self.subtotal()
        )
        return True

    def new_quantity(self, items: list[ItemRequest], in_cart: list[ItemRequest]) -> int | None:
        if in_cart and in_cart[-1].stated:
            return in_cart[-1].quantity
        if items:
            return None
        pronoun_before = {"the", "that", "this", "other", "different", "another", "a", "an"}
        found = None
        for n in find_numbers(self.words):
            if n.article:
                continue
            before = self.words[n.start - 1] if n.start else ""
            word = self.words[n.start]
            if word == "one" and (before in pronoun_before or before in self.idx.choice_words):
                continue  # "a small one", "the other one": which one, not how many
            if n.end < len(self.words) and self.words[n.end] == "more":
                continue
            found = n.value
        return found

    def replace_product(self, target: Line, item: ItemRequest) -> bool:
        if len(item.product_ids) > 1:
            return False
        product = self.product(item.product_ids[0])
        if not product.available:
            self.say(texts.sold_out_text(self.menu, product))
            return True
        carried = [w for s in target.options for w in name_tokens(s.choice)]
        quantity = item.quantity if item.stated else target.quantity
        cart, _ = remove_item(self.cart, target.line_id)
        self.changed(cart)
        self.say(f"Removed {describe(target)}.")
        self.add_items([ItemRequest(item.product_ids, quantity, carried, item.words)])
        return True

    # ------------------------------------------------------------ questions

    def answer(self, items: list[ItemRequest]) -> bool:
        norm = self.norm
        ids = list(dict.fromkeys(pid for item in items for pid in item.product_ids))
        products = [self.product(pid) for pid in ids]
        cats = find_categories(self.idx, self.words)
        options_text = None if products else texts.options_text(self.menu, self.words)
        if ph.asks_cart(norm) and not products:
            self.say(texts.cart_text(self.cart))
        elif ph.asks_price(norm) and products:
            self.say(" ".join(self.price(p, items) for p in products))
        elif ph.diet_words(norm):
            # "any vegan options?" names no product, even with a "Vegan Brownie" on the menu.
            plain = [w for w in self.words if w not in _DIET_TOKENS]
            ids = [pid for item in parse_items(self.idx, plain) for pid in item.product_ids]
            named = [self.product(pid) for pid in dict.fromkeys(ids)]
            self.say(texts.diet_text(self.menu, named, ph.diet_words(norm)))
        elif (
            cats
            and (not products or all(p.category in cats for p in products))
            and (len(products) != 1 or ph.asks_menu(norm))
        ):
            self.say(texts.menu_text(self.menu, cats))
        elif options_text:
            asked = re.search(r"\b(?:do|have) you (?:have|got|do)\b|\bis there\b|\bcan i\b", norm)
            self.say(("Yes! " if asked else "") + options_text)
        elif ph.asks_menu(norm) or (ph.asks_price(norm) and not products):
            self.say(texts.menu_text(self.menu, []))
        elif products:
            ask = " Would you like one?" if any(p.available for p in products) else ""
            self.say(" ".join(texts.product_text(self.menu, p) for p in products) + ask)
        elif re.search(r"\b(?:do|have) you (?:have|got|sell|do|make)\b|\bis there\b", norm):
            self.off_menu()
        else:
            return False
        if len(products) == 1 and len(items) == 1:
            self.state["topic"] = {"product_id": products[0].id, "words": items[0].words}
        return True

    def price(self, product: Product, items: list[ItemRequest]) -> str:
        item = next((i for i in items if product.id in i.product_ids), None)
        options, _ = extract_options(self.idx, product, item.words if item else [])
        quantity = item.quantity if item and item.stated else None
        return texts.price_text(self.menu, product, options, quantity)
