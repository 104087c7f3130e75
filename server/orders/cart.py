"""The cart: pure operations checked against the catalog. No I/O, no prices from outside.

Every operation returns a new :class:`Cart` or raises :class:`CartError` with a sentence the
assistant can read back to the customer; a rejected operation changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from server.catalog.model import Menu, OptionGroup, Product
from server.catalog.money import format_amount

MAX_QUANTITY = 99
MAX_LINES = 50
MAX_NOTE = 200
# Stripe takes at most 99,999,999 minor units in one payment, and amounts are 32-bit integers
# in the database: a larger cart could never be paid (on PostgreSQL it could not even be stored).
MAX_TOTAL = 99_999_999


class CartError(ValueError):
    """A cart operation was refused; ``str(err)`` explains why in one sentence."""


@dataclass(frozen=True)
class Selection:
    group: str
    choice: str
    price_delta: int

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "choice": self.choice, "price_delta": self.price_delta}


@dataclass(frozen=True)
class Line:
    line_id: str
    product_id: str
    name: str
    quantity: int
    options: tuple[Selection, ...]
    note: str | None
    unit_price: int

    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity

    def to_json(self) -> dict[str, Any]:
        return {
            "line_id": self.line_id,
            "product_id": self.product_id,
            "name": self.name,
            "quantity": self.quantity,
            "options": [s.to_json() for s in self.options],
            "note": self.note,
            "unit_price": self.unit_price,
            "line_total": self.line_total,
        }

    def same_item(self, other: Line) -> bool:
        return (self.product_id, self.options, self.note) == (
            other.product_id,
            other.options,
            other.note,
        )

    def describe(self) -> str:
        """``2 x Mocha (Large, Oat, Whipped cream)``: for replies and Stripe product names. A
        yes/no choice reads as its group's name when yes and is left out when no."""
        opts = option_labels((sel.group, sel.choice) for sel in self.options)
        return f"{self.quantity} x {self.name}" + (f" ({', '.join(opts)})" if opts else "")


def option_labels(chosen: Iterable[tuple[str, str]]) -> list[str]:
    """How (group, choice) pairs read on a line: the choice, or for a yes/no group its name
    when yes and nothing when no (``Whipped cream``, not ``Yes``)."""
    labels = []
    for group, choice in chosen:
        folded = choice.casefold()
        if folded == "yes":
            labels.append(group)
        elif folded != "no":
            labels.append(choice)
    return labels


@dataclass(frozen=True)
class Cart:
    currency: str
    lines: tuple[Line, ...] = ()
    next_line: int = 1
    catalog_version: int | None = None

    @property
    def subtotal(self) -> int:
        return sum(line.line_total for line in self.lines)

    @property
    def empty(self) -> bool:
        return not self.lines

    def line(self, line_id: str) -> Line:
        for line in self.lines:
            if line.line_id == line_id:
                return line
        raise CartError(
            f"There is no cart line {line_id!r}; view the cart for the current line ids."
        )

    def to_json(self) -> dict[str, Any]:
        """The DESIGN.md cart JSON (what the ``cart`` event carries)."""
        return {
            "lines": [line.to_json() for line in self.lines],
            "subtotal": self.subtotal,
            "currency": self.currency,
        }

    def to_state(self) -> dict[str, Any]:
        """What the thread stores: the cart JSON plus bookkeeping."""
        return {
            **self.to_json(),
            "next_line": self.next_line,
            "catalog_version": self.catalog_version,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any] | None, currency: str) -> Cart:
        if not data or not data.get("lines"):
            return cls(currency=currency, next_line=int((data or {}).get("next_line", 1)))
        lines = tuple(
            Line(
                line_id=raw["line_id"],
                product_id=raw["product_id"],
                name=raw["name"],
                quantity=int(raw["quantity"]),
                options=tuple(
                    Selection(o["group"], o["choice"], int(o["price_delta"]))
                    for o in raw["options"]
                ),
                note=raw.get("note"),
                unit_price=int(raw["unit_price"]),
            )
            for raw in data["lines"]
        )
        return cls(
            currency=data.get("currency", currency),
            lines=lines,
            next_line=int(data.get("next_line", len(lines) + 1)),
            catalog_version=data.get("catalog_version"),
        )


def resolve_options(
    product: Product, options: list[dict[str, Any]] | None
) -> tuple[Selection, ...]:
    """Check ``[{group, choice}]`` against the product; fill single-choice defaults.

    Raises :class:`CartError` for an unknown group or choice, too many or too few choices, or
    a missing required choice.
    """
    requested: dict[str, list[str]] = {}
    for raw in options or []:
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("group"), str)
            or not isinstance(raw.get("choice"), str)
        ):
            raise CartError("Each option must be an object with a 'group' and a 'choice'.")
        group = product.group(raw["group"])
        if group is None:
            names = ", ".join(g.name for g in product.options) or "none"
            raise CartError(
                f"{product.name} has no option {raw['group']!r} (its options: {names})."
            )
        choice = group.choice(raw["choice"])
        if choice is None:
            raise CartError(
                f"{raw['choice']!r} is not a choice of {group.name} for {product.name} ({_choices(group)})."
            )
        picked = requested.setdefault(group.name, [])
        if choice.name not in picked:
            picked.append(choice.name)

    selections: list[Selection] = []
    for group in product.options:
        picked = requested.get(group.name, [])
        if not picked:
            if group.default is not None:
                picked = [group.default.name]
            elif group.min_choices > 0:
                raise CartError(
                    f"{product.name} needs a choice of {group.name} ({_choices(group)})."
                )
        if len(picked) > group.max_choices:
            if group.max_choices == 1:
                raise CartError(f"Pick only one {group.name} for {product.name}.")
            raise CartError(f"Pick at most {group.max_choices} {group.name} for {product.name}.")
        if len(picked) < group.min_choices:
            raise CartError(f"Pick at least {group.min_choices} {group.name} for {product.name}.")
        for name in picked:
            choice = group.choice(name)
            assert choice is not None
            selections.append(Selection(group.name, choice.name, choice.price_delta))
    return tuple(selections)


def _choices(group: OptionGroup) -> str:
    return " | ".join(c.name for c in group.choices)


def check_quantity(quantity: Any) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise CartError("Quantity must be a whole number.")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise CartError(f"Quantity must be between 1 and {MAX_QUANTITY}.")
    return quantity


def check_note(note: Any) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise CartError("A note must be text.")
    note = " ".join(note.split())
    if len(note) > MAX_NOTE:
        raise CartError(f"A note can be at most {MAX_NOTE} characters.")
    return note or None


def make_line(
    menu: Menu, line_id: str, product_id: Any, quantity: Any, options: Any = None, note: Any = None
) -> Line:
    """Build a priced line from the catalog. The only place a unit price is computed."""
    if not isinstance(product_id, str):
        raise CartError("product_id must be a string.")
    product = menu.get(product_id)
    if product is None:
        raise CartError(
            f"There is no product {product_id!r} on the menu; search the menu for the right id."
        )
    if not product.available:
        raise CartError(f"{product.name} is sold out right now.")
    if options is not None and not isinstance(options, list):
        raise CartError("options must be a list of {group, choice}.")
    selections = resolve_options(product, options)
    unit = product.price + sum(s.price_delta for s in selections)
    return Line(
        line_id,
        product.id,
        product.name,
        check_quantity(quantity),
        selections,
        check_note(note),
        unit,
    )


def check_total(total: int) -> None:
    if total > MAX_TOTAL:
        raise CartError("That makes the order too large to pay in one payment; order less.")


def add_item(
    menu: Menu, cart: Cart, product_id: Any, quantity: Any, options: Any = None, note: Any = None
) -> tuple[Cart, Line]:
    """Add an item; the same product with the same options and note merges into one line."""
    line = make_line(menu, f"l{cart.next_line}", product_id, quantity, options, note)
    check_total(cart.subtotal + line.line_total)
    for i, existing in enumerate(cart.lines):
        if existing.same_item(line):
            merged = replace(existing, quantity=check_quantity(existing.quantity + line.quantity))
            lines = (*cart.lines[:i], merged, *cart.lines[i + 1 :])
            return replace(cart, lines=lines, catalog_version=menu.version), merged
    if len(cart.lines) >= MAX_LINES:
        raise CartError(f"A cart can hold at most {MAX_LINES} different items.")
    return replace(
        cart, lines=(*cart.lines, line), next_line=cart.next_line + 1, catalog_version=menu.version
    ), line


def update_item(
    menu: Menu,
    cart: Cart,
    line_id: Any,
    *,
    quantity: Any = None,
    options: Any = None,
    note: Any = ...,
) -> tuple[Cart, Line]:
    """Change a line's quantity, options or note (omitted fields stay as they are)."""
    if not isinstance(line_id, str):
        raise CartError("line_id must be a string.")
    old = cart.line(line_id)
    new_options = options if options is not None else [s.to_json() for s in old.options]
    new_note = old.note if note is ... else note
    new_qty = old.quantity if quantity is None else quantity
    line = make_line(menu, old.line_id, old.product_id, new_qty, new_options, new_note)
    check_total(cart.subtotal - old.line_total + line.line_total)
    lines = tuple(line if x.line_id == line_id else x for x in cart.lines)
    return replace(cart, lines=lines, catalog_version=menu.version), line


def remove_item(cart: Cart, line_id: Any) -> tuple[Cart, Line]:
    if not isinstance(line_id, str):
        raise CartError("line_id must be a string.")
    old = cart.line(line_id)
    return replace(cart, lines=tuple(x for x in cart.lines if x.line_id != line_id)), old


def reprice(menu: Menu, cart: Cart) -> tuple[Cart, list[str]]:
    """Re-price every line against ``menu`` (a newer catalog version); drop what no longer
    exists or is sold out. Returns the new cart and sentences for the customer describing
    what changed, with amounts in the cart's currency ("Latte now costs $5.00 (was $4.50).")."""
    changes: list[str] = []
    lines: list[Line] = []
    for old in cart.lines:
        product = menu.get(old.product_id)
        try:
            line = make_line(
                menu,
                old.line_id,
                old.product_id,
                old.quantity,
                [s.to_json() for s in old.options],
                old.note,
            )
        except CartError:
            changes.append(_removed_sentence(old, product))
            continue
        if line.unit_price != old.unit_price:
            now = format_amount(line.unit_price, cart.currency)
            was = format_amount(old.unit_price, cart.currency)
            each = " each" if line.quantity > 1 else ""
            changes.append(f"{_label(old)} now costs {now}{each} (was {was}).")
        lines.append(line)
    return replace(cart, lines=tuple(lines), catalog_version=menu.version), changes


def _label(line: Line) -> str:
    """``Latte (Large, Oat)``: a line as the customer named it, without the quantity."""
    opts = ", ".join(s.choice for s in line.options)
    return line.name + (f" ({opts})" if opts else "")


def _removed_sentence(old: Line, product: Product | None) -> str:
    """Why a line left the cart, said to the customer (not the model's error text)."""
    if product is None:
        why = f"{old.name} is no longer on the menu"
    elif not product.available:
        why = f"{old.name} is sold out right now"
    else:  # its options changed (a choice withdrawn, a new required choice)
        why = f"{_label(old)} is no longer offered with those options"
    return f"{why}, so I removed {old.describe()} from your cart."
