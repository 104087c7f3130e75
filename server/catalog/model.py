"""Catalog domain types: pure data, no I/O.

Money is always an ``int`` in minor units of the shop's currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Choice:
    """One choice of an option group, with what it adds to the unit price."""

    name: str
    price_delta: int = 0


@dataclass(frozen=True)
class OptionGroup:
    """A group of choices.

    Single-choice groups (``min_choices == max_choices == 1`` with ``has_default``) default to
    their first choice. ``Name[min-max]:`` groups are chosen explicitly; ``min_choices >= 1``
    makes a choice required.
    """

    name: str
    choices: tuple[Choice, ...]
    min_choices: int = 1
    max_choices: int = 1
    has_default: bool = True

    @property
    def multi(self) -> bool:
        return self.max_choices > 1

    @property
    def required(self) -> bool:
        """True when the customer must pick (no default fills the gap)."""
        return self.min_choices > 0 and not self.has_default

    @property
    def default(self) -> Choice | None:
        return self.choices[0] if self.has_default and self.choices else None

    def choice(self, name: str) -> Choice | None:
        wanted = name.strip().casefold()
        for c in self.choices:
            if c.name.casefold() == wanted:
                return c
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "min": self.min_choices,
            "max": self.max_choices,
            "default": self.default.name if self.default else None,
            "choices": [{"name": c.name, "price_delta": c.price_delta} for c in self.choices],
        }

    @classmethod
    def from_json(cls, data: dict) -> OptionGroup:
        return cls(
            name=data["name"],
            choices=tuple(Choice(c["name"], int(c["price_delta"])) for c in data["choices"]),
            min_choices=int(data["min"]),
            max_choices=int(data["max"]),
            has_default=data.get("default") is not None,
        )


@dataclass(frozen=True)
class Product:
    """One product of a catalog version."""

    id: str
    name: str
    price: int
    category: str = ""
    description: str = ""
    options: tuple[OptionGroup, ...] = ()
    tags: tuple[str, ...] = ()
    available: bool = True
    image_url: str | None = None

    def group(self, name: str) -> OptionGroup | None:
        wanted = name.strip().casefold()
        for g in self.options:
            if g.name.casefold() == wanted:
                return g
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "price": self.price,
            "category": self.category,
            "description": self.description,
            "options": [g.to_json() for g in self.options],
            "tags": list(self.tags),
            "available": self.available,
            "image_url": self.image_url,
        }

    @classmethod
    def from_json(cls, data: dict) -> Product:
        return cls(
            id=data["id"],
            name=data["name"],
            price=int(data["price"]),
            category=data.get("category") or "",
            description=data.get("description") or "",
            options=tuple(OptionGroup.from_json(g) for g in data.get("options") or ()),
            tags=tuple(data.get("tags") or ()),
            available=bool(data.get("available", True)),
            image_url=data.get("image_url"),
        )


@dataclass(frozen=True)
class Menu:
    """A catalog version as the assistant, pricing and the menu endpoint see it."""

    shop_id: str
    currency: str
    version: int
    products: tuple[Product, ...]
    _by_id: dict[str, Product] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id.update({p.id: p for p in self.products})

    def get(self, product_id: str) -> Product | None:
        return self._by_id.get(product_id)

    @property
    def categories(self) -> list[str]:
        seen: dict[str, None] = {}
        for p in self.products:
            seen.setdefault(p.category or "Other", None)
        return list(seen)
