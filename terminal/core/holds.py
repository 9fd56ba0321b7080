"""Why a tray is held for the cashier, in words a diner and a cashier understand."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HoldReason(StrEnum):
    """Every reason the terminal stops and calls the cashier instead of asking for payment."""

    UNSURE_DISH = "unsure_dish"
    UNKNOWN_DISH = "unknown_dish"
    NOT_ON_MENU = "not_on_menu"
    NO_DISHES = "no_dishes"
    NO_WEIGHT = "no_weight"
    WEIGHT_CONFLICT = "weight_conflict"
    RECOGNITION_FAILED = "recognition_failed"
    DEVICE_FAILED = "device_failed"
    PAYMENT_REFUSED = "payment_refused"


_DINER_TEXT: dict[HoldReason, tuple[str, str]] = {
    HoldReason.UNSURE_DISH: (
        "有菜品无法确定，已呼叫收银员",
        "A dish could not be told apart for sure",
    ),
    HoldReason.UNKNOWN_DISH: ("有菜品未能识别，已呼叫收银员", "A dish was not recognised"),
    HoldReason.NOT_ON_MENU: ("有菜品不在今日菜单上，已呼叫收银员", "A dish is not on today's menu"),
    HoldReason.NO_DISHES: ("未识别到菜品，已呼叫收银员", "No dish was found on the tray"),
    HoldReason.NO_WEIGHT: ("未称到重量，已呼叫收银员", "The tray could not be weighed"),
    HoldReason.WEIGHT_CONFLICT: (
        "重量与识别的菜品不符，已呼叫收银员",
        "The weight does not match the dishes seen",
    ),
    HoldReason.RECOGNITION_FAILED: ("识别出错，已呼叫收银员", "Recognition failed"),
    HoldReason.DEVICE_FAILED: ("设备故障，已呼叫收银员", "A device failed"),
    HoldReason.PAYMENT_REFUSED: ("支付未成功，已呼叫收银员", "The payment was refused"),
}


@dataclass(frozen=True)
class Hold:
    """One reason a tray is held, with the detail the cashier needs.

    ``dish_index`` points at the recognised dish concerned, when there is one.
    """

    reason: HoldReason
    detail: str = ""
    dish_index: int | None = None

    def diner_text(self, language: str = "zh") -> str:
        """What the diner reads: plain words, and that the cashier has been called."""
        zh, en = _DINER_TEXT[self.reason]
        return zh if language == "zh" else f"{en}; the cashier has been called"

    def __str__(self) -> str:
        where = f" (dish {self.dish_index})" if self.dish_index is not None else ""
        return f"{self.reason.value}{where}: {self.detail}" if self.detail else self.reason.value
