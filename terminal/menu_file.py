"""Reading a menu YAML file (``assets/menu/demo-menu.yaml`` is the example) into the core's Menu."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from terminal.core.menu import (
    Menu,
    MenuError,
    MenuItem,
    Nutrition,
    PricingMode,
    Tableware,
    TablewareKind,
)
from terminal.yamlmodels import FileError, StrictModel, load_yaml_model, locate

logger = logging.getLogger(__name__)


class NutritionModel(StrictModel):
    kcal: float = Field(ge=0)
    protein_g: float = Field(ge=0)
    fat_g: float = Field(ge=0)
    carbohydrate_g: float = Field(ge=0)


class TablewareModel(StrictModel):
    id: str = Field(min_length=1)
    kind: Literal["tray", "bowl", "plate", "cup"]
    name_zh: str
    name_en: str
    tare_g: int = Field(ge=0)


class MenuItemModel(StrictModel):
    id: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    dataset_class: str | None = None
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    pricing: Literal["per_portion", "per_100g"]
    price_fen: int = Field(ge=0)
    portion_g: int = Field(gt=0)
    tableware: str | None = None
    nutrition_per_100g: NutritionModel
    food_composition: str = ""


class MenuFileModel(StrictModel):
    version: Literal[1]
    currency: Literal["CNY"] = "CNY"
    name_zh: str = ""
    name_en: str = ""
    tableware: list[TablewareModel]
    items: list[MenuItemModel]


def load_menu(path: Path) -> Menu:
    """Read and check a menu file.

    Raises:
        FileError: the file is missing, not valid YAML, or a value is wrong; each line names
            the file, line and key.
    """
    model = load_yaml_model(MenuFileModel, path)
    tableware = tuple(
        Tableware(w.id, TablewareKind(w.kind), w.name_zh, w.name_en, w.tare_g)
        for w in model.tableware
    )
    items = []
    for index, item in enumerate(model.items):
        try:
            items.append(
                MenuItem(
                    id=item.id,
                    name_zh=item.name_zh,
                    name_en=item.name_en,
                    pricing=PricingMode(item.pricing),
                    price_fen=item.price_fen,
                    portion_g=item.portion_g,
                    nutrition_per_100g=Nutrition(**item.nutrition_per_100g.model_dump()),
                    tableware=item.tableware,
                    dataset_class=item.dataset_class,
                    food_composition=item.food_composition,
                )
            )
        except MenuError as exc:
            raise FileError([f"{locate(path, ('items', index))}: items[{index}]: {exc}"]) from None
    try:
        return Menu(tuple(items), tableware, model.name_zh, model.name_en)
    except MenuError as exc:
        raise FileError([f"{path}: {exc}"]) from None
