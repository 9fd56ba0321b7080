"""The demo menu: every dish of the data set, priced in whole fen, with believable nutrition."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal.core.menu import PricingMode, TablewareKind
from terminal.menu_file import load_menu
from terminal.yamlmodels import FileError
from vision.labels import read_class_names

from .conftest import DEMO_MENU, SAMPLE


def test_demo_menu_covers_every_dataset_class() -> None:
    menu = load_menu(DEMO_MENU)
    classes = read_class_names(SAMPLE / "dataset.yaml")
    assert len(classes) == 41
    assert sorted(menu.by_dataset_class()) == sorted(classes)


def test_demo_menu_prices_and_nutrition_are_sane() -> None:
    menu = load_menu(DEMO_MENU)
    assert {item.pricing for item in menu} == {PricingMode.PER_PORTION, PricingMode.PER_100G}
    for item in menu:
        assert isinstance(item.price_fen, int) and 0 <= item.price_fen <= 2000, item.id
        assert item.name_zh and item.name_en and item.food_composition, item.id
        n = item.nutrition_per_100g
        assert 0 <= n.kcal <= 900, item.id
        atwater = 4 * n.protein_g + 9 * n.fat_g + 4 * n.carbohydrate_g
        assert abs(atwater - n.kcal) <= 0.25 * max(n.kcal, 20), item.id
    assert menu.default_tray() is not None
    assert menu.default_tray().kind is TablewareKind.TRAY  # type: ignore[union-attr]
    assert menu.item("com").name_zh == "米饭"


def test_search_by_chinese_or_english(tmp_path: Path) -> None:
    menu = load_menu(DEMO_MENU)
    assert [i.id for i in menu.search("米饭")] == ["com"]
    assert "com" in [i.id for i in menu.search("rice")]


NUTRITION = "{kcal: 1, protein_g: 0, fat_g: 0, carbohydrate_g: 0}"


def item_yaml(item_id: str = "a", **fields: object) -> str:
    values: dict[str, object] = {
        "id": item_id,
        "name_zh": "甲",
        "name_en": "A",
        "pricing": "per_portion",
        "price_fen": 1,
        "portion_g": 1,
        "nutrition_per_100g": NUTRITION,
        **fields,
    }
    return "  - {" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}\n"


BROKEN = [
    ("duplicate id", item_yaml() + item_yaml(), "menu item id 'a' appears twice"),
    (
        "unknown tableware",
        item_yaml(tableware="vase"),
        "tableware 'vase' is not a known tableware type",
    ),
    (
        "negative price",
        item_yaml(price_fen=-1),
        ":4: items[0].price_fen: Input should be greater than or equal to 0",
    ),
    (
        "bad pricing mode",
        item_yaml(pricing="per_kg"),
        "items[0].pricing: Input should be 'per_portion' or 'per_100g'",
    ),
]


@pytest.mark.parametrize(("case", "items", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_menu_is_refused_with_a_clear_message(
    tmp_path: Path, case: str, items: str, message: str
) -> None:
    path = tmp_path / "menu.yaml"
    tableware = "tableware: [{id: tray, kind: tray, name_zh: 盘, name_en: tray, tare_g: 400}]"
    path.write_text(f"version: 1\n{tableware}\nitems:\n{items}", encoding="utf-8")
    with pytest.raises(FileError) as caught:
        load_menu(path)
    assert message in str(caught.value)
