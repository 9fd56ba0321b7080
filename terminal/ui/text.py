"""What the screens say, in Chinese and English, and how they write money, grams and nutrients.

The diner screen starts in the terminal's configured language (Chinese by default) and has a
toggle; staff screens are bilingual in one line ("收银 Cashier") so any cashier can read them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from terminal.core.money import Fen

logger = logging.getLogger(__name__)

LANGUAGES = ("zh", "en")

_TEXT: dict[str, tuple[str, str]] = {
    "title": ("员工食堂 · 自助结算", "Staff canteen · self checkout"),
    "toggle_language": ("English", "中文"),
    "your_tray": ("您的餐盘", "Your tray"),
    "dish": ("菜品", "Dish"),
    "weight": ("重量", "Weight"),
    "price": ("金额", "Price"),
    "total": ("合计", "Total"),
    "nutrition": ("本餐营养", "This meal's nutrition"),
    "of_daily": ("占每日参考值", "of the daily reference"),
    "energy": ("能量", "Energy"),
    "protein": ("蛋白质", "Protein"),
    "fat": ("脂肪", "Fat"),
    "carbohydrate": ("碳水化合物", "Carbohydrate"),
    "idle": ("请将餐盘放在识别区", "Place your tray on the scanner"),
    "idle_hint": ("无需操作，放好即自动识别", "No button needed: it is recognised by itself"),
    "recognising": ("正在识别…", "Recognising…"),
    "hold_still": ("请勿移动餐盘", "Please keep the tray still"),
    "tap_card": ("请刷卡", "Tap your card"),
    "tap_card_hint": ("将饭卡放在读卡区", "Hold your meal card on the reader"),
    "paying": ("正在支付…", "Paying…"),
    "paying_hint": ("请稍候，勿取走餐盘", "Please wait, leave the tray in place"),
    "declined": ("支付未成功", "Payment not accepted"),
    "try_again": ("请重新刷卡", "Please tap your card again"),
    "paid": ("支付成功", "Paid"),
    "balance": ("余额", "Balance"),
    "offline": ("离线支付，联网后入账", "Offline: recorded, posted when the network is back"),
    "take_tray": ("请取走餐盘，祝您用餐愉快", "Please take your tray. Enjoy your meal"),
    "held": ("请稍候，已呼叫收银员", "Please wait: the cashier has been called"),
    "voided": ("本单已取消，未扣款", "This checkout was cancelled; nothing was charged"),
    "camera_stalled": ("摄像头无画面", "No picture from the camera"),
    "camera_waiting": ("等待摄像头…", "Waiting for the camera…"),
    "scanner_ready": ("识别区空闲 · 等待餐盘", "Scanner ready · waiting for a tray"),
    "unknown_dish": ("未识别", "Unknown"),
    "unsure_dish": ("待确认", "To confirm"),
    "per_portion": ("份", "portion"),
    "busy": ("系统处理中", "Working"),
    "tap_card_or_face": ("请刷卡或看摄像头", "Tap your card or look at the camera"),
    "face_is_this_you": ("{name}，是您吗？", "{name}, is this you?"),
    "face_confirm_hint": ("确认后从您的饭卡账户付款", "Tap to pay from your meal account"),
    "face_confirm": ("是我，支付", "That's me, pay"),
    "face_reject": ("不是我", "Not me"),
    "face_not_me": ("好的，请刷卡", "All right: please tap your card"),
    "face_not_live": ("未能确认您在看摄像头", "The camera could not see you live"),
    "face_poor_frame": ("人脸画面不够清楚", "The camera's picture of your face is not clear"),
    "face_no_match": ("未能认出您的面孔", "Your face was not recognised"),
    "face_too_close": ("有相似的账户，无法确定是谁", "Two accounts look alike"),
    "face_no_enrolments": ("本机还没有人脸账户", "No face accounts here yet"),
    "face_expired": ("确认已超时", "The confirmation timed out"),
}

#: The liveness check's prompts (``terminal.devices.face.liveness.PROMPT_TEXT``) in Chinese.
_FACE_PROMPTS_ZH = {
    "please turn your head slightly to the left and right": "请看摄像头，并稍微左右转动头部",
    "please blink": "请看摄像头并眨眨眼",
    "please blink or turn your head slightly": "请看摄像头，眨眨眼或稍微转动头部",
}


def tr(key: str, language: str = "zh") -> str:
    """The text ``key`` in ``language`` ("zh" or "en"); an unknown key is returned as it is."""
    pair = _TEXT.get(key)
    if pair is None:
        logger.warning("no screen text for %r", key)
        return key
    return pair[1] if language == "en" else pair[0]


def face_prompt(prompt: str, language: str = "zh") -> str:
    """The liveness check's prompt (English) in ``language``; as it is when not known."""
    if language == "en":
        if prompt.startswith("please "):
            return f"Look at the camera and {prompt.removeprefix('please ')}"
        return prompt
    return _FACE_PROMPTS_ZH.get(prompt, prompt)


def face_refusal(code: str, reason: str, language: str = "zh") -> str:
    """Why no face payment was proposed, for the diner: the face module's reason (English, the
    words the check chose), after a Chinese summary of its ``code`` on the Chinese screen."""
    if language == "en":
        return reason
    summary = tr(f"face_{code}", language) if f"face_{code}" in _TEXT else ""
    return f"{summary}，请刷卡 · {reason}" if summary else reason


def both(zh: str, en: str) -> str:
    """A staff label in both languages: ``"收银 Cashier"``."""
    return f"{zh} {en}"


def money(amount_fen: Fen) -> str:
    """Fen as the screen shows money: ``¥12.62``, ``-¥0.50``."""
    sign = "-" if amount_fen < 0 else ""
    value = abs(int(amount_fen))
    return f"{sign}¥{value // 100}.{value % 100:02d}"


def grams(value_g: int) -> str:
    """Grams as shown on a line: ``127 g``."""
    return f"{value_g} g"


@dataclass(frozen=True)
class DailyReference:
    """Daily reference intakes the nutrition bars are drawn against.

    The defaults are the nutrient reference values (NRV) of China's GB 28050 food label
    standard: 8400 kJ (about 2000 kcal), 60 g protein, 60 g fat, 300 g carbohydrate.
    """

    kcal: float = 2000.0
    protein_g: float = 60.0
    fat_g: float = 60.0
    carbohydrate_g: float = 300.0


def share_percent(amount: float, reference: float) -> int:
    """``amount`` as a whole percentage of ``reference`` (0 when there is no reference)."""
    if reference <= 0:
        return 0
    return round(100.0 * amount / reference)
