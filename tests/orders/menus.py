"""Small menus built from the domain types, shared by order and chat tests."""

from __future__ import annotations

from server.catalog.model import Choice, Menu, OptionGroup, Product

SIZE = OptionGroup("Size", (Choice("Small"), Choice("Medium", 50), Choice("Large", 100)))
MILK = OptionGroup("Milk", (Choice("Whole"), Choice("Oat", 60), Choice("Soy", 60)))
TOPPINGS = OptionGroup(
    "Toppings",
    (Choice("Olives", 100), Choice("Basil"), Choice("Mushrooms", 150)),
    min_choices=0,
    max_choices=2,
    has_default=False,
)
CRUST = OptionGroup(
    "Crust", (Choice("Thin"), Choice("Thick", 200)), min_choices=1, max_choices=1, has_default=False
)


def coffee_menu(version: int = 1, latte_price: int = 450, croissant_available: bool = True) -> Menu:
    return Menu(
        shop_id="shp_test",
        currency="usd",
        version=version,
        products=(
            Product(
                "latte", "Latte", latte_price, "Coffee", options=(SIZE, MILK), tags=("vegetarian",)
            ),
            Product("espresso", "Espresso", 300, "Coffee"),
            Product("croissant", "Croissant", 325, "Bakery", available=croissant_available),
            Product("pizza", "Pizza", 1000, "Pizza", options=(CRUST, TOPPINGS)),
        ),
    )
