"""What the offline assistant says about the menu and the cart. Pure: catalog data in, text out.

Every amount is formatted with :func:`server.catalog.money.format_amount` from catalog prices;
nothing here reads a price from the customer.
"""

from __future__ import annotations

from server.catalog.model import Menu, Product
from server.catalog.money import format_amount
from server.chat.nlu import COMMON, GLUE, name_tokens, yes_no
from server.orders.cart import Cart, Line

MENU_LIST_LIMIT = 30  # above this many products, list categories instead
MENU_LIST_MAX = 60  # products listed for one category at most


def describe(line: Line) -> str:
    """``2 x Mocha (Large, Oat, Whipped cream)``: yes/no choices read as their group's name."""
    return line.describe()


def or_list(items: list[str]) -> str:
    """``a, b or c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def some(names: list[str], limit: int = 4) -> str:
    """``a, b, c, d and 3 more``."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def cart_text(cart: Cart) -> str:
    if cart.empty:
        return "Your cart is empty — what would you like?"
    lines = "; ".join(
        f"{describe(line)} {format_amount(line.line_total, cart.currency)}" for line in cart.lines
    )
    return f"In your cart: {lines}. Subtotal: {format_amount(cart.subtotal, cart.currency)}."


def sold_out_text(menu: Menu, product: Product) -> str:
    """Sold out, with up to five available products of the same category instead."""
    others = [
        p
        for p in menu.products
        if p.available and p.category == product.category and p.id != product.id
    ][:5]
    text = f"Sorry, the {product.name} is sold out right now."
    if others:
        listed = ", ".join(f"{p.name} ({format_amount(p.price, menu.currency)})" for p in others)
        text += f" From {product.category or 'the menu'} we also have {listed}."
    else:
        text += " Ask for the menu to see what else we have."
    return text


def product_text(menu: Menu, product: Product) -> str:
    """Price, every option with what it adds, and the description."""
    if not product.available:
        return sold_out_text(menu, product)
    money = menu.currency
    text = f"{product.name} is {format_amount(product.price, money)}"
    extras = []
    for group in product.options:
        priced = [
            c.name + (f" +{format_amount(c.price_delta, money)}" if c.price_delta else "")
            for c in group.choices
        ]
        extras.append(f"{group.name}: {', '.join(priced)}")
    if extras:
        text += " (" + "; ".join(extras) + ")"
    text += "."
    if product.description:
        text += f" {product.description}"
    return text


def price_text(
    menu: Menu, product: Product, options: list[dict[str, str]], quantity: int | None
) -> str:
    """ "A Latte (Large, Oat) is $6.10. 2 would be $12.20." (or the product's price list)."""
    if options:
        unit = product.price
        named = []
        for o in options:
            group = product.group(o["group"])
            choice = group.choice(o["choice"]) if group else None
            if choice:
                unit += choice.price_delta
                named.append(choice.name)
        text = f"A {product.name} ({', '.join(named)}) is {format_amount(unit, menu.currency)}."
    else:
        text, unit = product_text(menu, product), product.price
    if quantity and quantity > 1 and product.available:
        text += f" {quantity} would be {format_amount(unit * quantity, menu.currency)}."
    return text


# A vegan product is also vegetarian and dairy-free, whatever else its tags say.
_IMPLIED = {"vegetarian": {"vegan"}, "dairy-free": {"vegan"}}


def _tagged(product: Product, tag: str) -> bool:
    tags = {t.replace(" ", "-") for t in product.tags}
    return tag in tags or bool(_IMPLIED.get(tag, set()) & tags)


def diet_text(menu: Menu, products: list[Product], wanted: list[str]) -> str:
    """Which products carry the dietary tags asked for (of ``products``, or of the menu)."""
    parts = []
    if products:
        for p in products:
            asked = [t for t in wanted if t.split("-")[0] not in p.name.lower()]
            yes = [t for t in asked if _tagged(p, t)]
            no = [t for t in asked if not _tagged(p, t)]
            if yes:
                parts.append(f"Yes, the {p.name} is marked {' and '.join(yes)}.")
            if no:
                parts.append(f"The {p.name} isn't marked {' or '.join(no)}.")
        return " ".join(parts)
    for tag in wanted:
        hits = [p for p in menu.products if _tagged(p, tag) and p.available]
        if hits:
            listed = ", ".join(
                f"{p.name} ({format_amount(p.price, menu.currency)})" for p in hits[:12]
            )
            parts.append(f"Marked {tag}: {listed}.")
        else:
            parts.append(
                f"Sorry, nothing on our menu is marked {tag}. Please ask the shop about "
                "ingredients if you have an allergy."
            )
    return " ".join(parts)


def options_text(menu: Menu, words: list[str]) -> str | None:
    """ "what milks do you have?", "do you have almond milk?": options across the menu."""
    present = set(words)
    money = menu.currency
    choices: dict[tuple[str, str], tuple[int, list[str]]] = {}
    groups: dict[str, tuple[dict[str, int], list[str]]] = {}
    for p in menu.products:
        for g in p.options:
            if yes_no(g):
                continue
            for c in g.choices:
                toks = set(name_tokens(c.name)) - GLUE
                if toks <= present and not toks <= COMMON:  # "everything" is not a bagel
                    choices.setdefault((g.name, c.name), (c.price_delta, []))[1].append(p.name)
            if set(name_tokens(g.name)) - GLUE & present:
                listed, names = groups.setdefault(g.name, ({}, []))
                for c in g.choices:
                    listed.setdefault(c.name, c.price_delta)
                names.append(p.name)
    if choices:
        parts = [
            f"{choice}"
            + (f" (+{format_amount(delta, money)})" if delta else "")
            + f" is a {group} choice for {some(names)}."
            for (group, choice), (delta, names) in list(choices.items())[:3]
        ]
    elif groups:
        parts = [
            f"{group}: "
            + ", ".join(
                n + (f" +{format_amount(d, money)}" if d else "") for n, d in listed.items()
            )
            + f" (for {some(names)})."
            for group, (listed, names) in list(groups.items())[:3]
        ]
    else:
        return None
    return " ".join(parts)


def menu_text(menu: Menu, categories: list[str]) -> str:
    """Products with prices (of ``categories``, or all); a big menu lists its categories."""
    products = [p for p in menu.products if not categories or (p.category or "Other") in categories]
    if not categories and len(products) > MENU_LIST_LIMIT:
        counts = dict.fromkeys(menu.categories, 0)
        for p in products:
            counts[p.category or "Other"] += 1
        listed = ", ".join(f"{c} ({n})" for c, n in counts.items())
        return f"We have {listed}. Which would you like to see?"
    groups: dict[str, list[str]] = {}
    for p in products[:MENU_LIST_MAX]:
        label = f"{p.name} {format_amount(p.price, menu.currency)}"
        groups.setdefault(p.category or "Other", []).append(
            label + ("" if p.available else " (sold out)")
        )
    body = " ".join(f"{cat}: {', '.join(names)}." for cat, names in groups.items())
    return f"{body} What would you like?"
