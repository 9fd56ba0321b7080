"""The catalogue: menu items with their prices and nutrition, and the tableware they are served in.

Plain frozen dataclasses that check their own invariants. Reading a menu file or a backend's
menu is somebody else's job (``terminal.menu_file``); the core only holds the result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from terminal.core.money import Fen, require_fen

logger = logging.getLogger(__name__)


class MenuError(ValueError):
    """A menu that cannot be used: a duplicate id, a bad price, an unknown tableware type."""


class UnknownDishError(KeyError):
    """A dish id that is not on today's menu."""

    def __init__(self, dish_id: str) -> None:
        super().__init__(dish_id)
        self.dish_id = dish_id

    def __str__(self) -> str:
        return f"dish {self.dish_id!r} is not on the menu"


class PricingMode(StrEnum):
    """How a menu item is priced."""

    PER_PORTION = "per_portion"
    PER_100G = "per_100g"


@dataclass(frozen=True)
class Nutrition:
    """Energy and macronutrients of some amount of food (per 100 g on a menu item)."""

    kcal: float = 0.0
    protein_g: float = 0.0
    fat_g: float = 0.0
    carbohydrate_g: float = 0.0

    def __post_init__(self) -> None:
        for name in ("kcal", "protein_g", "fat_g", "carbohydrate_g"):
            if getattr(self, name) < 0:
                raise MenuError(f"nutrition {name} must not be negative")

    def scaled(self, grams: int) -> Nutrition:
        """The nutrition of ``grams`` of a food whose per-100 g values are ``self``."""
        factor = max(grams, 0) / 100.0
        return Nutrition(
            kcal=self.kcal * factor,
            protein_g=self.protein_g * factor,
            fat_g=self.fat_g * factor,
            carbohydrate_g=self.carbohydrate_g * factor,
        )

    def __add__(self, other: Nutrition) -> Nutrition:
        return Nutrition(
            kcal=self.kcal + other.kcal,
            protein_g=self.protein_g + other.protein_g,
            fat_g=self.fat_g + other.fat_g,
            carbohydrate_g=self.carbohydrate_g + other.carbohydrate_g,
        )

    def rounded(self) -> Nutrition:
        """Rounded for display: kcal to whole numbers, grams to one decimal."""
        return Nutrition(
            kcal=float(round(self.kcal)),
            protein_g=round(self.protein_g, 1),
            fat_g=round(self.fat_g, 1),
            carbohydrate_g=round(self.carbohydrate_g, 1),
        )


class TablewareKind(StrEnum):
    """What a piece of tableware is; the tray is the one every checkout starts from."""

    TRAY = "tray"
    BOWL = "bowl"
    PLATE = "plate"
    CUP = "cup"


@dataclass(frozen=True)
class Tableware:
    """A tray, bowl, plate or cup type with its calibrated empty weight."""

    id: str
    kind: TablewareKind
    name_zh: str
    name_en: str
    tare_g: int

    def __post_init__(self) -> None:
        if not self.id:
            raise MenuError("tableware id must not be empty")
        if isinstance(self.tare_g, bool) or not isinstance(self.tare_g, int) or self.tare_g < 0:
            raise MenuError(f"tableware {self.id!r}: tare_g must be a whole number >= 0")


@dataclass(frozen=True)
class MenuItem:
    """One dish on the menu.

    ``price_fen`` is per portion or per 100 g, as ``pricing`` says. ``portion_g`` is the
    nominal weight of one portion: it splits a tray's net weight between its dishes and
    scales nutrition. ``tableware`` names the extra bowl or plate the dish comes in, or None
    when it sits in a compartment of the tray.
    """

    id: str
    name_zh: str
    name_en: str
    pricing: PricingMode
    price_fen: Fen
    portion_g: int
    nutrition_per_100g: Nutrition
    tableware: str | None = None
    dataset_class: str | None = None
    food_composition: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            raise MenuError("menu item id must not be empty")
        try:
            require_fen(self.price_fen, f"menu item {self.id!r} price_fen")
        except ValueError as exc:
            raise MenuError(str(exc)) from None
        if self.price_fen < 0:
            raise MenuError(f"menu item {self.id!r}: price_fen must not be negative")
        if isinstance(self.portion_g, bool) or not isinstance(self.portion_g, int):
            raise MenuError(f"menu item {self.id!r}: portion_g must be a whole number of grams")
        if self.portion_g <= 0:
            raise MenuError(f"menu item {self.id!r}: portion_g must be positive")

    def name(self, language: str = "zh") -> str:
        """The dish's name in ``language`` ("zh" or "en")."""
        return self.name_zh if language == "zh" else self.name_en


@dataclass(frozen=True)
class Menu:
    """Today's menu: the items on sale and the tableware types of this canteen."""

    items: tuple[MenuItem, ...]
    tableware: tuple[Tableware, ...]
    name_zh: str = ""
    name_en: str = ""
    _items_by_id: Mapping[str, MenuItem] = field(init=False, repr=False, compare=False)
    _tableware_by_id: Mapping[str, Tableware] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items_by_id: dict[str, MenuItem] = {}
        for item in self.items:
            if item.id in items_by_id:
                raise MenuError(f"menu item id {item.id!r} appears twice")
            items_by_id[item.id] = item
        tableware_by_id: dict[str, Tableware] = {}
        for ware in self.tableware:
            if ware.id in tableware_by_id:
                raise MenuError(f"tableware id {ware.id!r} appears twice")
            tableware_by_id[ware.id] = ware
        for item in self.items:
            if item.tableware is not None and item.tableware not in tableware_by_id:
                raise MenuError(
                    f"menu item {item.id!r}: tableware {item.tableware!r} is not a known "
                    f"tableware type (known: {', '.join(sorted(tableware_by_id)) or 'none'})"
                )
        object.__setattr__(self, "_items_by_id", items_by_id)
        object.__setattr__(self, "_tableware_by_id", tableware_by_id)

    def __iter__(self) -> Iterator[MenuItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, dish_id: object) -> bool:
        return dish_id in self._items_by_id

    def item(self, dish_id: str) -> MenuItem:
        """The item with ``dish_id``.

        Raises:
            UnknownDishError: no such dish on this menu.
        """
        try:
            return self._items_by_id[dish_id]
        except KeyError:
            raise UnknownDishError(dish_id) from None

    def tableware_type(self, tableware_id: str) -> Tableware:
        """The tableware with ``tableware_id``; raises MenuError when unknown."""
        try:
            return self._tableware_by_id[tableware_id]
        except KeyError:
            raise MenuError(f"unknown tableware {tableware_id!r}") from None

    def default_tray(self) -> Tableware | None:
        """The first tableware of kind tray, the one a checkout assumes unless told otherwise."""
        return next((w for w in self.tableware if w.kind is TablewareKind.TRAY), None)

    def by_dataset_class(self) -> dict[str, MenuItem]:
        """Items keyed by the dataset class name that a model predicts for them."""
        return {item.dataset_class: item for item in self.items if item.dataset_class}

    def search(self, text: str) -> list[MenuItem]:
        """Items whose id or Chinese or English name contains ``text`` (case-insensitive)."""
        needle = text.strip().casefold()
        return [
            item
            for item in self.items
            if needle in item.id.casefold()
            or needle in item.name_en.casefold()
            or needle in item.name_zh
        ]

    def with_items(self, items: Iterable[MenuItem]) -> Menu:
        """A copy of this menu with ``items`` instead of its own."""
        return Menu(tuple(items), self.tableware, self.name_zh, self.name_en)
