"""Pricing a tray: recognised dishes + a stable gross weight -> priced lines, total and nutrition.

Every rule is a pure function of its arguments:

- **Tare** (:func:`tare_g`): the tray's tare plus the tare of every bowl or plate a recognised
  dish is served in.
- **Net food weight** (:func:`net_weight_g`): gross minus tare. It may come out zero or negative
  (an empty tray, a mis-calibrated scale); the tray is then held, never priced from it.
- **Grams per dish** (:func:`estimate_dish_grams`): one scale sees the whole tray, so the grams of
  each dish are an estimate. Dishes sold per portion are assumed to hold their nominal portion;
  what is left of the net weight is shared between the weight-priced dishes in proportion to
  their nominal portions. With no weight-priced dish the whole net weight is shared in proportion
  to the nominal portions, which scales the nutrition to what is really on the tray. Shares are
  whole grams, split by the largest-remainder method so they add up to the weight shared.
- **Line price** (:func:`line_price_fen`): the menu price for a portion, or the weight price
  rounded by the rule in :mod:`terminal.core.money`.
- **Plausibility** (:class:`WeightRules`): a net weight far from the dishes' nominal portions
  holds the tray for the cashier instead of charging a surprising amount.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from terminal.core.holds import Hold, HoldReason
from terminal.core.menu import Menu, MenuItem, Nutrition, PricingMode, Tableware
from terminal.core.money import Fen, price_by_weight_fen

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightRules:
    """Thresholds that decide whether a net weight is believable for the dishes seen.

    Attributes:
        min_ratio: net weight below ``min_ratio`` x the sum of nominal portions is a conflict.
        max_ratio: net weight above ``max_ratio`` x the sum of nominal portions is a conflict.
        empty_tray_max_g: a net weight up to this counts as no food at all (crumbs, a wet tray).
    """

    min_ratio: float = 0.4
    max_ratio: float = 2.5
    empty_tray_max_g: int = 30

    def __post_init__(self) -> None:
        if not 0 < self.min_ratio < self.max_ratio:
            raise ValueError("weight rules need 0 < min_ratio < max_ratio")
        if self.empty_tray_max_g < 0:
            raise ValueError("empty_tray_max_g must not be negative")


@dataclass(frozen=True)
class PriceOverride:
    """A price set by the cashier, with the reason the audit log records."""

    price_fen: Fen
    reason: str
    cashier_id: str = ""


@dataclass(frozen=True)
class PricedLine:
    """One dish on the receipt."""

    item_id: str
    name_zh: str
    name_en: str
    pricing: PricingMode
    unit_price_fen: Fen
    grams: int
    price_fen: Fen
    nutrition: Nutrition
    override: PriceOverride | None = None

    def name(self, language: str = "zh") -> str:
        """The dish's name in ``language`` ("zh" or "en")."""
        return self.name_zh if language == "zh" else self.name_en


@dataclass(frozen=True)
class PricedTray:
    """A priced tray: what the diner sees and what a transaction records."""

    lines: tuple[PricedLine, ...]
    gross_g: int
    tare_g: int
    net_g: int
    subtotal_fen: Fen
    total_fen: Fen
    nutrition: Nutrition
    holds: tuple[Hold, ...] = field(default=())

    @property
    def is_clear(self) -> bool:
        """True when nothing about the price needs the cashier."""
        return not self.holds


def tare_g(menu: Menu, item_ids: Sequence[str], tray: Tableware | None) -> int:
    """Tare of the tray plus each extra bowl or plate the dishes are served in."""
    total = tray.tare_g if tray is not None else 0
    for item_id in item_ids:
        ware_id = menu.item(item_id).tableware
        if ware_id is not None:
            total += menu.tableware_type(ware_id).tare_g
    return total


def net_weight_g(gross_g: int, tare: int) -> int:
    """Net food weight; may be zero or negative, which pricing treats as a hold."""
    return gross_g - tare


def allocate_proportionally(total: int, shares: Sequence[int]) -> list[int]:
    """Split ``total`` whole units in proportion to ``shares`` so the parts add up to ``total``.

    Largest-remainder method: each part gets the floor of its exact share, and the units left
    over go to the largest fractional remainders (ties to the earlier part). A non-positive
    ``total`` or all-zero ``shares`` gives all zeros.
    """
    if any(share < 0 for share in shares):
        raise ValueError("shares must not be negative")
    weight_sum = sum(shares)
    if total <= 0 or weight_sum == 0:
        return [0] * len(shares)
    floors = [total * share // weight_sum for share in shares]
    remainders = [total * share % weight_sum for share in shares]
    left = total - sum(floors)
    order = sorted(range(len(shares)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def estimate_dish_grams(items: Sequence[MenuItem], net_g: int) -> list[int]:
    """The grams each dish is estimated to hold, by the rule in the module docstring."""
    if not items:
        return []
    weighed = [i for i, item in enumerate(items) if item.pricing is PricingMode.PER_100G]
    if not weighed:
        return allocate_proportionally(net_g, [item.portion_g for item in items])
    grams = [0] * len(items)
    portion_total = 0
    for i, item in enumerate(items):
        if item.pricing is PricingMode.PER_PORTION:
            grams[i] = item.portion_g
            portion_total += item.portion_g
    shares = allocate_proportionally(net_g - portion_total, [items[i].portion_g for i in weighed])
    for i, share in zip(weighed, shares, strict=True):
        grams[i] = share
    return grams


def line_price_fen(item: MenuItem, grams: int) -> Fen:
    """The price of one dish: its portion price, or its weight price for ``grams``."""
    if item.pricing is PricingMode.PER_PORTION:
        return item.price_fen
    return price_by_weight_fen(item.price_fen, grams)


def weight_holds(items: Sequence[MenuItem], net_g: int, rules: WeightRules) -> list[Hold]:
    """The holds a net weight calls for, given the dishes seen."""
    if not items:
        if net_g > rules.empty_tray_max_g:
            return [Hold(HoldReason.NO_DISHES, f"{net_g} g on the tray but no dish recognised")]
        return [Hold(HoldReason.NO_DISHES, "the tray is empty")]
    if net_g <= rules.empty_tray_max_g:
        return [Hold(HoldReason.NO_WEIGHT, f"net weight {net_g} g for {len(items)} dish(es)")]
    nominal = sum(item.portion_g for item in items)
    holds = []
    if net_g < rules.min_ratio * nominal or net_g > rules.max_ratio * nominal:
        holds.append(
            Hold(
                HoldReason.WEIGHT_CONFLICT,
                f"net weight {net_g} g, the dishes seen usually weigh {nominal} g",
            )
        )
    portion_g = sum(item.portion_g for item in items if item.pricing is PricingMode.PER_PORTION)
    has_weighed = any(item.pricing is PricingMode.PER_100G for item in items)
    if has_weighed and net_g <= portion_g and not holds:
        holds.append(
            Hold(
                HoldReason.WEIGHT_CONFLICT,
                f"net weight {net_g} g leaves nothing for the weighed dishes "
                f"after {portion_g} g of portion dishes",
            )
        )
    return holds


def price_tray(
    menu: Menu,
    item_ids: Sequence[str],
    gross_g: int,
    *,
    tray: Tableware | None = None,
    rules: WeightRules | None = None,
    overrides: dict[int, PriceOverride] | None = None,
) -> PricedTray:
    """Price a tray of recognised dishes at a stable gross weight.

    Args:
        menu: today's menu.
        item_ids: the menu ids of the dishes on the tray, one per dish (repeats allowed).
        gross_g: the stable gross weight from the scale.
        tray: the tray under the dishes; defaults to the menu's default tray.
        rules: plausibility thresholds; defaults to :class:`WeightRules`.
        overrides: cashier price overrides by line index.

    Raises:
        UnknownDishError: an id is not on the menu (the caller holds the tray before this).
    """
    rules = rules or WeightRules()
    overrides = overrides or {}
    tray = tray if tray is not None else menu.default_tray()
    items = [menu.item(item_id) for item_id in item_ids]
    tare = tare_g(menu, item_ids, tray)
    net = net_weight_g(gross_g, tare)
    grams = estimate_dish_grams(items, net)
    lines = []
    for index, (item, dish_grams) in enumerate(zip(items, grams, strict=True)):
        override = overrides.get(index)
        price = override.price_fen if override else line_price_fen(item, dish_grams)
        lines.append(
            PricedLine(
                item_id=item.id,
                name_zh=item.name_zh,
                name_en=item.name_en,
                pricing=item.pricing,
                unit_price_fen=item.price_fen,
                grams=dish_grams,
                price_fen=price,
                nutrition=item.nutrition_per_100g.scaled(dish_grams),
                override=override,
            )
        )
    subtotal = sum(line.price_fen for line in lines)
    return PricedTray(
        lines=tuple(lines),
        gross_g=gross_g,
        tare_g=tare,
        net_g=net,
        subtotal_fen=subtotal,
        total_fen=subtotal,
        nutrition=tray_nutrition(lines),
        holds=tuple(weight_holds(items, net, rules)),
    )


def tray_nutrition(lines: Sequence[PricedLine]) -> Nutrition:
    """The meal's nutrition: the sum over its lines."""
    total = Nutrition()
    for line in lines:
        total = total + line.nutrition
    return total
