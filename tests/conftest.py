"""Shared builders for trayscan's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from terminal.core.menu import Menu, MenuItem, Nutrition, PricingMode, Tableware, TablewareKind

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "datasets" / "vn-canteen-trays-sample"
DEMO_MENU = REPO / "assets" / "menu" / "demo-menu.yaml"


def item(
    item_id: str,
    pricing: str = "per_portion",
    price_fen: int = 500,
    portion_g: int = 100,
    tableware: str | None = None,
    kcal: float = 100.0,
) -> MenuItem:
    """A menu item with round numbers, for tables of cases."""
    return MenuItem(
        id=item_id,
        name_zh=f"{item_id}菜",
        name_en=item_id.title(),
        pricing=PricingMode(pricing),
        price_fen=price_fen,
        portion_g=portion_g,
        nutrition_per_100g=Nutrition(kcal=kcal, protein_g=10.0, fat_g=5.0, carbohydrate_g=8.0),
        tableware=tableware,
        dataset_class=item_id.replace("_", " "),
    )


def small_menu() -> Menu:
    """Rice by the portion, pork and greens by weight, a soup in a bowl; a 400 g tray."""
    return Menu(
        items=(
            item("rice", "per_portion", 150, 200, kcal=130.0),
            item("pork", "per_100g", 400, 100, kcal=250.0),
            item("greens", "per_100g", 180, 100, kcal=30.0),
            item("soup", "per_portion", 200, 250, tableware="bowl", kcal=20.0),
        ),
        tableware=(
            Tableware("tray", TablewareKind.TRAY, "餐盘", "tray", 400),
            Tableware("bowl", TablewareKind.BOWL, "碗", "bowl", 180),
        ),
    )


@pytest.fixture
def menu() -> Menu:
    return small_menu()
