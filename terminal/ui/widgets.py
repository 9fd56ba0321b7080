"""Widgets the three screens share: the camera view, nutrition bars, a PIN pad, dish tiles, and
the staff screens' sign-in page, header and messages.

Frames are drawn by Qt from the numpy image (never ``cv2.imshow``): :func:`qimage_from_bgr`
copies a BGR frame into a :class:`QImage` and :class:`CameraViewWidget` paints it scaled, with
each recognised dish outlined and named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from terminal.core.menu import Nutrition
from terminal.ui.text import DailyReference, both, share_percent, tr
from vision.types import DishStatus

logger = logging.getLogger(__name__)

#: Outline colours by how sure the recogniser is: high contrast on a bright photo.
STATUS_COLOURS = {
    DishStatus.SURE: QColor("#00c853"),
    DishStatus.UNSURE: QColor("#ffab00"),
    DishStatus.UNKNOWN: QColor("#ff1744"),
}


def qimage_from_bgr(image: npt.NDArray[np.uint8]) -> QImage:
    """A QImage holding its own copy of a BGR (or grey) uint8 frame."""
    array = np.ascontiguousarray(image)
    if array.ndim == 2:
        height, width = array.shape
        return QImage(
            array.data, width, height, array.strides[0], QImage.Format.Format_Grayscale8
        ).copy()
    height, width = array.shape[:2]
    return QImage(array.data, width, height, array.strides[0], QImage.Format.Format_BGR888).copy()


def pixmap_from_bgr(image: npt.NDArray[np.uint8], size: int | None = None) -> QPixmap:
    """A pixmap of a BGR frame, scaled to ``size`` pixels square when given."""
    pixmap = QPixmap.fromImage(qimage_from_bgr(image))
    if size is not None:
        pixmap = pixmap.scaled(
            size,
            size,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    return pixmap


def name_tile(text: str, size: int) -> QPixmap:
    """A plain tile with a dish's first characters, for a dish no photo shows."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor("#37474f"))
    painter = QPainter(pixmap)
    font = QFont()
    font.setPixelSize(size // 3)
    font.setBold(True)
    painter.setFont(font)
    painter.setPen(QColor("#ffffff"))
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, text[:2])
    painter.end()
    return pixmap


@dataclass(frozen=True)
class DishOutline:
    """One dish drawn on the camera view: its box in frame pixels, its label, its status."""

    box_xyxy: tuple[float, float, float, float]
    label: str
    status: DishStatus


class CameraViewWidget(QWidget):
    """The camera picture with each recognised dish outlined and named.

    Holds the last frame it was given and the outlines of the last recognition; shows
    ``message`` over the picture (or over a dark panel when there is no picture).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cameraView")
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image: QImage | None = None
        self._outlines: list[DishOutline] = []
        self.message = ""
        self.numbered = False

    def has_frame(self) -> bool:
        """Whether a picture is shown."""
        return self._image is not None

    def outlines(self) -> list[DishOutline]:
        """The outlines drawn now."""
        return list(self._outlines)

    def set_frame(self, image: npt.NDArray[np.uint8] | None) -> None:
        """Show ``image`` (BGR), or no picture."""
        self._image = qimage_from_bgr(image) if image is not None else None
        self.update()

    def set_outlines(self, outlines: Sequence[DishOutline]) -> None:
        """Outline these dishes on the picture."""
        self._outlines = list(outlines)
        self.update()

    def set_message(self, message: str) -> None:
        """Show ``message`` across the picture ("" for none)."""
        if message != self.message:
            self.message = message
            self.update()

    def _picture_rect(self) -> QRectF:
        assert self._image is not None
        width, height = self._image.width(), self._image.height()
        scale = min(self.width() / width, self.height() / height)
        shown_w, shown_h = width * scale, height * scale
        return QRectF((self.width() - shown_w) / 2, (self.height() - shown_h) / 2, shown_w, shown_h)

    def paintEvent(self, event: object) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.fillRect(self.rect(), QColor("#10171c"))
        if self._image is not None:
            target = self._picture_rect()
            painter.drawImage(target, self._image)
            scale = target.width() / self._image.width()
            self._paint_outlines(painter, target, scale)
        if self.message:
            self._paint_message(painter)
        painter.end()

    def _paint_outlines(self, painter: QPainter, target: QRectF, scale: float) -> None:
        font = QFont(self.font())
        font.setPixelSize(max(14, int(self.height() / 26)))
        font.setBold(True)
        painter.setFont(font)
        metrics = QFontMetrics(font)
        for number, outline in enumerate(self._outlines, start=1):
            colour = STATUS_COLOURS[outline.status]
            x1, y1, x2, y2 = outline.box_xyxy
            box = QRectF(
                target.x() + x1 * scale,
                target.y() + y1 * scale,
                (x2 - x1) * scale,
                (y2 - y1) * scale,
            )
            painter.setPen(QPen(colour, 4))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(box, 6, 6)
            label = f"{number} {outline.label}" if self.numbered else outline.label
            text_w = metrics.horizontalAdvance(label) + 14
            text_h = metrics.height() + 6
            tag_x = min(max(box.x(), target.x()), target.right() - text_w)
            tag_y = max(box.y() - text_h, target.y())
            tag = QRectF(tag_x, tag_y, text_w, text_h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(tag, 4, 4)
            painter.setPen(QColor("#000000"))
            painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, label)

    def _paint_message(self, painter: QPainter) -> None:
        font = QFont(self.font())
        font.setPixelSize(max(18, int(self.height() / 14)))
        font.setBold(True)
        painter.setFont(font)
        band_h = QFontMetrics(font).height() * 2
        band = QRectF(0, (self.height() - band_h) / 2, self.width(), band_h)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRect(band)
        painter.setPen(QColor("#ffffff"))
        painter.drawText(band, Qt.AlignmentFlag.AlignCenter, self.message)


class NutritionWidget(QWidget):
    """The meal's kcal, protein, fat and carbohydrate, each with a bar against a daily reference."""

    ROWS = (
        ("energy", "kcal", "kcal"),
        ("protein", "protein_g", "g"),
        ("fat", "fat_g", "g"),
        ("carbohydrate", "carbohydrate_g", "g"),
    )

    def __init__(self, reference: DailyReference | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("nutrition")
        self.reference = reference or DailyReference()
        self.language = "zh"
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(12)
        layout.setVerticalSpacing(6)
        self.title = QLabel()
        self.title.setObjectName("sectionTitle")
        layout.addWidget(self.title, 0, 0, 1, 3)
        self.names: list[QLabel] = []
        self.values: list[QLabel] = []
        self.bars: list[QProgressBar] = []
        for row, (_, attribute, _) in enumerate(self.ROWS, start=1):
            name, value, bar = QLabel(), QLabel(), QProgressBar()
            name.setObjectName("nutrientName")
            value.setObjectName("nutrientValue")
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            bar.setObjectName(f"bar_{attribute}")
            bar.setRange(0, 100)
            bar.setTextVisible(True)
            layout.addWidget(name, row, 0)
            layout.addWidget(value, row, 1)
            layout.addWidget(bar, row, 2)
            self.names.append(name)
            self.values.append(value)
            self.bars.append(bar)
        layout.setColumnStretch(2, 1)
        self.set_nutrition(None)

    def set_language(self, language: str) -> None:
        """Relabel in ``language``."""
        self.language = language
        self.title.setText(tr("nutrition", language))
        for label, (key, _, _) in zip(self.names, self.ROWS, strict=True):
            label.setText(tr(key, language))

    def set_nutrition(self, nutrition: Nutrition | None) -> None:
        """Show a meal's nutrition (None: empty bars)."""
        self.set_language(self.language)
        shown = nutrition.rounded() if nutrition is not None else None
        for index, (_, attribute, unit) in enumerate(self.ROWS):
            bar, value = self.bars[index], self.values[index]
            if shown is None:
                value.setText("—")
                bar.setValue(0)
                bar.setFormat("")
                continue
            amount = float(getattr(shown, attribute))
            reference = float(getattr(self.reference, attribute))
            percent = share_percent(amount, reference)
            value.setText(f"{amount:.0f} {unit}" if unit == "kcal" else f"{amount:.1f} {unit}")
            bar.setValue(min(percent, 100))
            bar.setFormat(f"{percent}% {tr('of_daily', self.language)}")


class PinPadWidget(QWidget):
    """Big digit keys for a touch screen, typing into a line edit (the PIN never leaves it)."""

    submitted = Signal()

    def __init__(self, target: QLineEdit, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pinPad")
        self.target = target
        grid = QGridLayout(self)
        grid.setSpacing(8)
        keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "⌫", "0", "OK"]
        for index, key in enumerate(keys):
            button = QPushButton(key)
            button.setObjectName("pinKey" if key.isdigit() else "pinKeyAction")
            button.setMinimumSize(QSize(84, 64))
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, k=key: self._press(k))
            grid.addWidget(button, index // 3, index % 3)

    def _press(self, key: str) -> None:
        if key == "⌫":
            self.target.backspace()
        elif key == "OK":
            self.submitted.emit()
        else:
            self.target.insert(key)


class DishTileButton(QToolButton):
    """A picker button: a dish's photo (or a name tile), its name, and a score when given."""

    def __init__(
        self,
        dish_id: str,
        caption: str,
        picture: QPixmap,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("dishTile")
        self.dish_id = dish_id
        self.setText(caption)
        self.setIcon(picture)
        self.setIconSize(QSize(80, 80))
        self.setCheckable(True)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        self.setMinimumSize(QSize(120, 134))


def restyle(*widgets: QWidget) -> None:
    """Apply the stylesheet to ``widgets`` again, after a property it selects on changed."""
    for widget in widgets:
        widget.style().unpolish(widget)
        widget.style().polish(widget)


def say(label: QLabel, text: str, *, error: bool = False) -> None:
    """Show a message in ``label``, in the error tone when ``error``."""
    label.setProperty("tone", "error" if error else "ok")
    restyle(label)
    label.setText(text)


def header_bar(title: str) -> tuple[QFrame, QHBoxLayout]:
    """A screen's header with its title on the left; returns it and the row to add to."""
    header = QFrame()
    header.setObjectName("header")
    header_row = QHBoxLayout(header)
    title_label = QLabel(title)
    title_label.setObjectName("title")
    header_row.addWidget(title_label)
    return header, header_row


class StaffHeader(QFrame):
    """A staff screen's header once someone signed in: the title, who it is (:attr:`staff_label`),
    whatever else the screen shows on the right, and Sign out.

    Args:
        title: the screen's name.
        on_sign_out: called when Sign out is pressed.
        extras: widgets shown between the name and Sign out, in this order.
    """

    def __init__(
        self,
        title: str,
        on_sign_out: Callable[[], None],
        extras: Sequence[QWidget] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("header")
        header_row = QHBoxLayout(self)
        title_label = QLabel(title)
        title_label.setObjectName("title")
        self.staff_label = QLabel()
        self.staff_label.setObjectName("staffName")
        sign_out = QPushButton(both("退出", "Sign out"))
        sign_out.setObjectName("headerButton")
        sign_out.clicked.connect(on_sign_out)
        header_row.addWidget(title_label)
        header_row.addSpacing(24)
        header_row.addWidget(self.staff_label)
        header_row.addStretch(1)
        for extra in extras:
            header_row.addWidget(extra)
            header_row.addSpacing(16)
        header_row.addWidget(sign_out)


class SignInPage(QWidget):
    """A staff screen's first page: its header, then a box in the middle asking for the staff id
    and the PIN (typed or on the pad), with a Sign in button and a line for the answer.

    Args:
        title: the screen's name, in the header.
        heading: what the box asks for ("收银员登录 Cashier sign-in").
        on_submit: called on Sign in, Enter in the PIN field, or the pad's OK.
    """

    def __init__(
        self,
        title: str,
        heading: str,
        on_submit: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        header, header_row = header_bar(title)
        header_row.addStretch(1)
        outer.addWidget(header)
        box = QFrame()
        box.setObjectName("loginBox")
        box.setMaximumWidth(520)
        form = QVBoxLayout(box)
        form.setContentsMargins(28, 24, 28, 24)
        heading_label = QLabel(heading)
        heading_label.setObjectName("sectionTitle")
        form.addWidget(heading_label)
        self.staff_id = QLineEdit()
        self.staff_id.setObjectName("staffId")
        self.staff_id.setPlaceholderText("工号 Staff id")
        self.pin = QLineEdit()
        self.pin.setObjectName("pin")
        self.pin.setPlaceholderText("PIN")
        self.pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin.setMaxLength(8)
        form.addWidget(self.staff_id)
        form.addWidget(self.pin)
        pad = PinPadWidget(self.pin)
        pad.submitted.connect(on_submit)
        form.addWidget(pad)
        self.button = QPushButton(both("登录", "Sign in"))
        self.button.setObjectName("primaryButton")
        self.button.clicked.connect(on_submit)
        self.pin.returnPressed.connect(on_submit)
        form.addWidget(self.button)
        self.message = QLabel()
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        form.addWidget(self.message)
        centre = QHBoxLayout()
        centre.addStretch(1)
        centre.addWidget(box)
        centre.addStretch(1)
        outer.addStretch(1)
        outer.addLayout(centre)
        outer.addStretch(2)

    def take_credentials(self) -> tuple[str, str]:
        """The staff id and PIN typed; the PIN field is cleared."""
        staff_id, pin = self.staff_id.text().strip(), self.pin.text()
        self.pin.clear()
        return staff_id, pin


class StaffScreen(QWidget):
    """A screen staff sign in to with their id and PIN: a stack of :attr:`pages`, the first a
    :class:`SignInPage` that calls :meth:`sign_in`; the screen adds its work page after it.

    Args:
        title: the screen's name, in the sign-in page's header.
        heading: what the sign-in box asks for.

    Attributes:
        login_id: the staff id field of the sign-in page.
        login_pin: its PIN field.
        login_button: its Sign in button.
        login_message: where the answer to a sign-in is shown.
    """

    #: True when someone signed in, False when they signed out.
    presence_changed = Signal(bool)

    def __init__(self, title: str, heading: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pages = QStackedWidget()
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.addWidget(self.pages)
        self.sign_in_page = SignInPage(title, heading, self.sign_in)
        self.login_id = self.sign_in_page.staff_id
        self.login_pin = self.sign_in_page.pin
        self.login_button = self.sign_in_page.button
        self.login_message = self.sign_in_page.message
        self.pages.addWidget(self.sign_in_page)

    def sign_in(self) -> None:
        """Check the id and PIN typed on the sign-in page (each screen its own way)."""
        raise NotImplementedError


def section(title: str, parent: QWidget | None = None) -> tuple[QWidget, QVBoxLayout]:
    """A titled panel; returns it and the layout to fill."""
    panel = QWidget(parent)
    panel.setObjectName("panel")
    layout = QVBoxLayout(panel)
    heading = QLabel(title)
    heading.setObjectName("sectionTitle")
    layout.addWidget(heading)
    return panel, layout


def row(*widgets: QWidget, stretch_last: bool = False) -> QHBoxLayout:
    """Widgets side by side."""
    layout = QHBoxLayout()
    for widget in widgets:
        layout.addWidget(widget)
    if stretch_last:
        layout.addStretch(1)
    return layout
