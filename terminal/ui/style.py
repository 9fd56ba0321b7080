"""The kiosk's look: the one stylesheet (``assets/ui/kiosk.qss``) and a font that has Chinese.

CJK text needs a font with the glyphs. The set-up installs WenQuanYi Micro Hei (Debian's
``fonts-wqy-microhei``); it is chosen by family name, with other common CJK families as
fallbacks. Without any of them the kiosk still starts, logs a warning, and Qt draws what it can.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import QApplication

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets" / "ui"
STYLESHEET = ASSETS / "kiosk.qss"

#: Font families with Chinese glyphs, best first.
CJK_FAMILIES = (
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)


def cjk_family(available: list[str] | None = None) -> str | None:
    """The first of :data:`CJK_FAMILIES` installed here, or None."""
    families = set(available if available is not None else QFontDatabase.families())
    return next((family for family in CJK_FAMILIES if family in families), None)


def apply_kiosk_style(app: QApplication) -> str | None:
    """Set the kiosk's stylesheet and CJK font on ``app``; returns the font family chosen."""
    try:
        app.setStyleSheet(STYLESHEET.read_text(encoding="utf-8"))
    except OSError as exc:
        logger.warning("kiosk stylesheet %s unreadable: %s", STYLESHEET, exc)
    family = cjk_family()
    if family is None:
        logger.warning(
            "no Chinese font found (install fonts-wqy-microhei): dish names may not render"
        )
        return None
    font = QFont(family)
    font.setPixelSize(20)
    app.setFont(font)
    return family
