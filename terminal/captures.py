"""The capture store: what the terminal keeps of each confirmed tray for the data staff.

When a checkout is paid, the settled frame is kept with the *final, confirmed* dishes: the
boxes the model drew, the dish ids the tray was charged for, whether the cashier changed a
dish, and which model saw it. The data staff turn these into training data with
``trayscan captures export`` (:func:`export_yolo`).

Three parts, so that nothing here can slow down or break a checkout:

- :class:`CaptureRecorder` listens to the checkout session's events and, when a tray is paid,
  matches the recogniser's boxes to the paid lines (:func:`match_dishes`) and hands a
  :class:`CaptureJob` to the writer. It runs on the session's thread and does no I/O.
- :class:`CaptureWriter` is one background thread with a bounded queue; a full queue drops the
  capture and counts it.
- :class:`CaptureStore` writes one JPEG and one JSON record per capture, atomically (temporary
  name, fsync, rename), under a day folder, and deletes the oldest captures first when the size
  cap or the retention period is exceeded. A full or failing disk logs, drops the capture and
  counts it; it never raises into the caller.

Privacy: the frame is cropped to the calibrated tray area (its bounding rectangle; pixels
outside a non-rectangular area are blacked out) before anything is written, so nothing beside
the tray (people, hands at the till, the customer screen) is kept. Without a calibrated tray
area the whole frame is kept, which is only acceptable for the downward-looking tray camera.

The layout on disk (the folder is the index; nothing else needs to stay consistent)::

    var/captures/2024-05-01/20240501T013012345Z-0a1b2c3d4e5f.jpg
    var/captures/2024-05-01/20240501T013012345Z-0a1b2c3d4e5f.json

A record exists once its JSON exists; the JPEG is written first.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import json
import logging
import math
import numbers
import os
import queue
import re
import shutil
import threading
import time
from bisect import insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from terminal.core.pricing import PricedTray
from terminal.core.session import (
    CheckoutEvent,
    CheckoutSession,
    CheckoutVoided,
    Paid,
    PaymentRequested,
    TrayArrived,
    TrayHeld,
    TrayRecognised,
    TrayRemoved,
)
from vision.labels import write_dataset_yaml
from vision.types import Frame, TrayRecognition

logger = logging.getLogger(__name__)

RECORD_FORMAT = "trayscan-capture/1"
EXPORT_FORMAT = "trayscan-captures-export/1"
DEFAULT_JPEG_QUALITY = 90
SECONDS_PER_DAY = 86_400.0

Box = tuple[float, float, float, float]
Rect = tuple[int, int, int, int]
#: A tray area: an ``(x1, y1, x2, y2)`` rectangle (x2/y2 exclusive) or a polygon of points.
TrayArea = Rect | Sequence[tuple[float, float]]
Source = Literal["model", "cashier"]

_DAY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID_PATTERN = re.compile(r"^(\d{8}T\d{6})(\d{3})Z-[A-Za-z0-9_-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class CaptureDish(NamedTuple):
    """One confirmed dish of a capture.

    Attributes:
        box_xyxy: the model's box in frame pixels, or None for a dish the cashier added.
        dish_id: the menu id the tray was charged for.
        corrected: the cashier changed what the model said about this dish (another id for its
            box, a name for an unknown dish, or a dish the model missed).
        source: ``"model"`` when the box is the model's, ``"cashier"`` for an added dish.
        model_dish_id: what the model called the box (None: unknown, or no box).
    """

    box_xyxy: Box | None
    dish_id: str
    corrected: bool
    source: Source
    model_dish_id: str | None = None


class RemovedBox(NamedTuple):
    """A box the model drew that the paid tray does not have (the cashier removed the dish)."""

    box_xyxy: Box
    model_dish_id: str | None


# --- matching the model's boxes to the paid lines -----------------------------------------


@dataclass(frozen=True)
class DishMatch:
    """The paid lines with the model's boxes matched to them.

    Attributes:
        dishes: one per paid line, in line order.
        removed: the model's boxes no paid line kept.
        review_reasons: why a person should look before this capture trains a model (empty when
            the match is unambiguous).
    """

    dishes: tuple[CaptureDish, ...]
    removed: tuple[RemovedBox, ...]
    review_reasons: tuple[str, ...]


def match_dishes(recognition: TrayRecognition | None, final_ids: Sequence[str]) -> DishMatch:
    """Match the recogniser's boxes to the dishes the tray was finally charged for.

    The session prices the recognised dishes in the recogniser's order, and the cashier's desk
    keeps that order: a resolve with as many lines renames dishes in place, a removed line
    closes up, an added dish goes at the end. So:

    1. With as many paid lines as boxes, box *i* is line *i* (renamed where the ids differ),
       unless that reading would rename a box to an id another box was given, which means the
       lines were reordered (a resolve listing the dishes in another order).
    2. Otherwise boxes and lines with the same id are paired first, whatever their order; the
       boxes left over were removed, the lines left over were added. One box left over and one
       line left over are the same dish, renamed.

    The match is conservative: where the boxes could go with the lines in more than one way
    (two boxes of one dish and one line of it, or several boxes and lines left over), the
    capture is marked for review.

    Args:
        recognition: what the recogniser said, or None when recognition failed.
        final_ids: the menu ids of the paid lines, in line order.

    Returns:
        The matched dishes, the boxes dropped, and any reason to review.
    """
    model = list(recognition.dishes) if recognition is not None else []
    model_ids = [dish.dish_id for dish in model]
    final = list(final_ids)
    reasons: list[str] = []
    line_to_box: dict[int, int] = {}
    renamed_from = {m for m, f in zip(model_ids, final, strict=False) if m is not None and m != f}
    renamed_to = {f for m, f in zip(model_ids, final, strict=False) if m != f}
    if len(model) == len(final) and not renamed_from & renamed_to:
        line_to_box = {index: index for index in range(len(final))}
    else:
        boxes_left = list(range(len(model)))
        lines_left: list[int] = []
        for line, dish_id in enumerate(final):
            box = next((b for b in boxes_left if model_ids[b] == dish_id), None)
            if box is None:
                lines_left.append(line)
            else:
                boxes_left.remove(box)
                line_to_box[line] = box
        surplus = {model_ids[b] for b in boxes_left} & set(final)
        if surplus:
            reasons.append(
                f"more boxes than paid lines of {', '.join(sorted(map(str, surplus)))}: check "
                "which box was removed"
            )
        if boxes_left and lines_left and not len(boxes_left) == len(lines_left) == 1:
            reasons.append("the cashier changed several dishes: check which box is which dish")
        for box, line in zip(boxes_left, lines_left, strict=False):
            line_to_box[line] = box
    dishes = []
    for line, dish_id in enumerate(final):
        box_index = line_to_box.get(line)
        if box_index is None:
            dishes.append(CaptureDish(None, dish_id, True, "cashier"))
            continue
        seen = model[box_index]
        dishes.append(
            CaptureDish(seen.box_xyxy, dish_id, seen.dish_id != dish_id, "model", seen.dish_id)
        )
    kept = set(line_to_box.values())
    removed = tuple(
        RemovedBox(dish.box_xyxy, dish.dish_id)
        for index, dish in enumerate(model)
        if index not in kept
    )
    return DishMatch(tuple(dishes), removed, tuple(reasons))


# --- the tray area --------------------------------------------------------------------------


def scale_tray_area(
    area: Rect, calibrated_size: tuple[int, int], frame_size: tuple[int, int]
) -> Rect | None:
    """The calibrated tray area in the pixels of a frame of ``frame_size`` (width, height).

    The area was measured at ``calibrated_size``; a frame of the same shape at another
    resolution gets it scaled. A frame of another shape gives None: the camera was changed or
    re-aimed, and where the tray is (and who else is in view) is no longer known.
    """
    cal_w, cal_h = calibrated_size
    width, height = frame_size
    if (cal_w, cal_h) == (width, height):
        return area
    if cal_w <= 0 or cal_h <= 0 or abs(width / cal_w - height / cal_h) > 0.01 * width / cal_w:
        return None
    sx, sy = width / cal_w, height / cal_h
    x1, y1, x2, y2 = area
    return (
        math.floor(x1 * sx),
        math.floor(y1 * sy),
        math.ceil(x2 * sx),
        math.ceil(y2 * sy),
    )


def _as_rect(area: TrayArea) -> tuple[float, float, float, float] | None:
    """The four numbers of a rectangle area, or None when ``area`` is a polygon."""
    values: list[float] = []
    for value in area:
        if not isinstance(value, numbers.Real):
            return None
        values.append(float(value))
    if len(values) != 4:
        return None
    return values[0], values[1], values[2], values[3]


def _as_points(area: TrayArea) -> list[tuple[float, float]]:
    """The points of a polygon area.

    Raises:
        ValueError: ``area`` is neither four numbers nor a polygon of three or more points.
    """
    points: list[tuple[float, float]] = []
    for point in area:
        if not isinstance(point, Sequence) or len(point) != 2:
            raise ValueError(f"a tray area is (x1, y1, x2, y2) or a polygon, not {area!r}")
        points.append((float(point[0]), float(point[1])))
    if len(points) < 3:
        raise ValueError(f"a tray area polygon needs 3 or more points, not {len(points)}")
    return points


def crop_bounds(area: TrayArea | None, width: int, height: int) -> Rect:
    """The ``(x1, y1, x2, y2)`` rectangle a capture keeps of a ``width`` x ``height`` frame.

    Raises:
        ValueError: the area misses the frame, or is not a rectangle or a polygon.
    """
    if area is None:
        return 0, 0, width, height
    rect = _as_rect(area)
    if rect is None:
        points = _as_points(area)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        rect = min(xs), min(ys), max(xs), max(ys)
    rx1, ry1, rx2, ry2 = rect
    x1, y1 = max(0, math.floor(rx1)), max(0, math.floor(ry1))
    x2, y2 = min(width, math.ceil(rx2)), min(height, math.ceil(ry2))
    if x1 >= x2 or y1 >= y2:
        raise ValueError(f"the tray area {rect} lies outside the {width}x{height} frame")
    return x1, y1, x2, y2


def crop_to_tray(
    image: npt.NDArray[np.uint8], area: TrayArea | None
) -> tuple[npt.NDArray[np.uint8], Rect]:
    """The part of ``image`` a capture may keep, and the rectangle it was cut from.

    Raises:
        ValueError: see :func:`crop_bounds`.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    x1, y1, x2, y2 = crop_bounds(area, width, height)
    crop = np.ascontiguousarray(image[y1:y2, x1:x2])
    if area is not None and _as_rect(area) is None:
        polygon = np.array(
            [[round(px) - x1, round(py) - y1] for px, py in _as_points(area)], dtype=np.int32
        )
        mask = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillPoly(mask, [polygon], 255)
        crop = crop.copy()
        crop[mask == 0] = 0
    return crop, (x1, y1, x2, y2)


def _shift_box(box: Box, rect: Rect) -> Box | None:
    """``box`` in the crop's pixels, clipped to it; None when nothing of it is left."""
    x1, y1, x2, y2 = rect
    bx1 = min(max(box[0] - x1, 0.0), x2 - x1)
    by1 = min(max(box[1] - y1, 0.0), y2 - y1)
    bx2 = min(max(box[2] - x1, 0.0), x2 - x1)
    by2 = min(max(box[3] - y1, 0.0), y2 - y1)
    if bx2 - bx1 < 1.0 or by2 - by1 < 1.0:
        return None
    return round(bx1, 2), round(by1, 2), round(bx2, 2), round(by2, 2)


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureRecord:
    """One stored capture, as its JSON record says.

    Attributes:
        capture_id: sortable by time: ``<UTC time>Z-<checkout id>``.
        json_path: the record file.
        image_path: the JPEG beside it (the cropped frame).
        data: the whole record (see ``README.md``, "Captures", for every key).
    """

    capture_id: str
    json_path: Path
    image_path: Path
    data: dict[str, Any]

    @property
    def time(self) -> float:
        """Seconds since the epoch."""
        return float(self.data["time"])

    @property
    def checkout_id(self) -> str:
        return str(self.data["checkout_id"])

    @property
    def complete(self) -> bool:
        """Every paid dish has a box."""
        return bool(self.data["complete"])

    @property
    def corrected(self) -> bool:
        """The cashier changed, added or removed a dish."""
        return bool(self.data["corrected"])

    @property
    def needs_review(self) -> bool:
        """A person should check the boxes before this trains a model."""
        return bool(self.data["needs_review"])

    @property
    def image_size(self) -> tuple[int, int]:
        width, height = self.data["image_size"]
        return int(width), int(height)

    @property
    def boxes(self) -> list[tuple[str, Box]]:
        """``(dish id, box in image pixels)`` of every dish with a box."""
        return [
            (str(d["dish_id"]), (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
            for d in self.data["dishes"]
            if (b := d.get("box_xyxy")) is not None
        ]

    @classmethod
    def read(cls, json_path: Path) -> CaptureRecord:
        """Read one record file.

        Raises:
            ValueError: the file is not a capture record (the message names it).
            OSError: it cannot be read.
        """
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{json_path}: not a capture record: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError(f"{json_path}: not a {RECORD_FORMAT} record")
        for key in ("time", "checkout_id", "dishes", "image", "image_size", "complete"):
            if key not in data:
                raise ValueError(f"{json_path}: record lacks {key!r}")
        return cls(json_path.stem, json_path, json_path.parent / str(data["image"]), data)


@dataclass(frozen=True)
class CaptureStats:
    """What the store holds and what it did since it was opened.

    Attributes:
        count: captures held.
        total_bytes: their JPEG and JSON bytes.
        max_bytes: the size cap.
        retention_days: how long a capture is kept.
        oldest: the oldest capture's time (epoch seconds), or None.
        newest: the newest capture's time, or None.
        added: captures written since the store was opened.
        pruned: captures deleted by the size cap or the retention rule since then.
        failed: captures lost to a write error (a full disk) since then.
        refused: captures not written on purpose (too little free disk, an unusable tray area).
    """

    count: int
    total_bytes: int
    max_bytes: int
    retention_days: float
    oldest: float | None
    newest: float | None
    added: int
    pruned: int
    failed: int
    refused: int

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON-ready values, times as ISO 8601 local time."""
        return {
            "count": self.count,
            "total_mb": round(self.total_bytes / 2**20, 2),
            "max_mb": round(self.max_bytes / 2**20, 2),
            "retention_days": self.retention_days,
            "oldest": iso_time(self.oldest) if self.oldest is not None else None,
            "newest": iso_time(self.newest) if self.newest is not None else None,
            "added": self.added,
            "pruned": self.pruned,
            "failed": self.failed,
            "refused": self.refused,
        }


def iso_time(epoch_s: float) -> str:
    """An epoch time as local ISO 8601 with its UTC offset, to the millisecond."""
    return dt.datetime.fromtimestamp(epoch_s).astimezone().isoformat(timespec="milliseconds")


def _capture_id(epoch_s: float, checkout_id: str) -> str:
    utc = dt.datetime.fromtimestamp(epoch_s, dt.UTC)
    safe = _UNSAFE.sub("", checkout_id)[:12] or "checkout"
    return f"{utc:%Y%m%dT%H%M%S}{utc.microsecond // 1000:03d}Z-{safe}"


def _id_time(capture_id: str) -> float | None:
    match = _ID_PATTERN.match(capture_id)
    if match is None:
        return None
    stamp = dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return stamp.timestamp() + int(match.group(2)) / 1000.0


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new, never half.

    Raises:
        OSError: the write failed (the temporary file is removed).
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@dataclass(order=True)
class _Entry:
    time: float
    capture_id: str
    day: str = field(compare=False)
    size: int = field(compare=False)


class CaptureRefusedError(Exception):
    """A capture that must not be written (too little free disk, an unusable tray area)."""


# --- the store ------------------------------------------------------------------------------


class CaptureStore:
    """Captures on disk, with a size cap and a retention period.

    Args:
        folder: where the day folders go; created when missing.
        max_bytes: the most the captures may take; the oldest are deleted first beyond it.
        retention_days: captures older than this are deleted.
        clock: seconds since the epoch (``time.time`` by default).
        jpeg_quality: 0..100.
        min_free_bytes: a capture is not written when the disk would have less free space than
            this left, so captures never fill the disk the ledger and the outbox live on.
        write_file: writes one file atomically (:func:`write_atomic`; tests give a failing one).

    Raises:
        OSError: the folder cannot be created or read.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        max_bytes: int,
        retention_days: float,
        clock: Callable[[], float] = time.time,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        min_free_bytes: int = 0,
        write_file: Callable[[Path, bytes], None] = write_atomic,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if retention_days <= 0:
            raise ValueError("retention_days must be positive")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.retention_days = retention_days
        self.jpeg_quality = jpeg_quality
        self.min_free_bytes = min_free_bytes
        self._clock = clock
        self._write_file = write_file
        self._lock = threading.RLock()
        self._entries: builtins.list[_Entry] = []
        self._total = 0
        self._added = self._pruned = self._failed = self._refused = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        self._scan()

    # --- reading ----------------------------------------------------------------------------

    def _day_folders(self) -> builtins.list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_dir() and _DAY_PATTERN.match(p.name))

    def _scan(self) -> None:
        """Build the in-memory index from the files (sizes and times only, no JSON parsed)."""
        entries = []
        for day in self._day_folders():
            for record in day.glob("*.json"):
                stamp = _id_time(record.stem)
                if stamp is None:
                    continue
                size = 0
                for path in (record, record.with_suffix(".jpg")):
                    with contextlib.suppress(OSError):
                        size += path.stat().st_size
                entries.append(_Entry(stamp, record.stem, day.name, size))
        entries.sort()
        with self._lock:
            self._entries = entries
            self._total = sum(entry.size for entry in entries)

    def recover(self) -> int:
        """Delete what a crash mid-write left: temporary files and JPEGs without a record.

        Call only while no other process writes to this folder (at the terminal's start).
        Returns how many files were deleted.
        """
        removed = 0
        for day in self._day_folders():
            for path in day.iterdir():
                orphan = path.suffix == ".jpg" and not path.with_suffix(".json").exists()
                if path.name.endswith(".tmp") or orphan:
                    with contextlib.suppress(OSError):
                        path.unlink()
                        removed += 1
        if removed:
            logger.info("captures: removed %d half-written files in %s", removed, self.folder)
        return removed

    def list(
        self, since: float | None = None, until: float | None = None
    ) -> builtins.list[CaptureRecord]:
        """The captures taken at ``since`` or later and before ``until``, oldest first.

        A record that cannot be read is logged and left out.
        """
        with self._lock:
            entries = [
                e
                for e in self._entries
                if (since is None or e.time >= since) and (until is None or e.time < until)
            ]
        records = []
        for entry in entries:
            path = self.folder / entry.day / f"{entry.capture_id}.json"
            try:
                records.append(CaptureRecord.read(path))
            except FileNotFoundError:
                continue  # pruned meanwhile
            except (OSError, ValueError) as exc:
                logger.warning("captures: skipping %s: %s", path, exc)
        return records

    def stats(self) -> CaptureStats:
        """What the store holds, and its counters since it was opened."""
        with self._lock:
            return CaptureStats(
                count=len(self._entries),
                total_bytes=self._total,
                max_bytes=self.max_bytes,
                retention_days=self.retention_days,
                oldest=self._entries[0].time if self._entries else None,
                newest=self._entries[-1].time if self._entries else None,
                added=self._added,
                pruned=self._pruned,
                failed=self._failed,
                refused=self._refused,
            )

    # --- writing ----------------------------------------------------------------------------

    def add(
        self,
        frame_image: npt.NDArray[np.uint8],
        dishes: Iterable[CaptureDish | tuple[Any, ...]],
        *,
        checkout_id: str,
        model_version: str,
        outcome: str,
        tray_area: TrayArea | None = None,
        removed: Iterable[RemovedBox] = (),
        review_reasons: Iterable[str] = (),
        terminal_id: str = "",
    ) -> CaptureRecord | None:
        """Keep one frame with its confirmed dishes; returns the record, or None if not kept.

        Never raises for a disk problem: a failed write is logged, cleaned up and counted.

        Args:
            frame_image: the settled frame, BGR uint8.
            dishes: the paid dishes: :class:`CaptureDish` or ``(box_xyxy or None, dish_id,
                corrected, source)`` tuples, boxes in frame pixels.
            checkout_id: the checkout the frame belongs to.
            model_version: the model that drew the boxes.
            outcome: how the checkout ended (``"paid"``, ``"voided"``).
            tray_area: the calibrated tray area in frame pixels (rectangle or polygon); only
                what lies inside it is kept. None keeps the whole frame.
            removed: the model's boxes the cashier removed (kept in the record for review).
            review_reasons: why a person should look at this capture first.
            terminal_id: the terminal that took it.
        """
        try:
            return self._add(
                frame_image,
                [CaptureDish(*dish) for dish in dishes],
                checkout_id=checkout_id,
                model_version=model_version,
                outcome=outcome,
                tray_area=tray_area,
                removed=list(removed),
                review_reasons=list(review_reasons),
                terminal_id=terminal_id,
            )
        except CaptureRefusedError as exc:
            with self._lock:
                self._refused += 1
            logger.warning("capture of checkout %s not kept: %s", checkout_id, exc)
        except OSError as exc:
            with self._lock:
                self._failed += 1
            logger.error(
                "capture of checkout %s lost (the checkout is not affected): %s", checkout_id, exc
            )
        return None

    def _add(
        self,
        frame_image: npt.NDArray[np.uint8],
        dishes: builtins.list[CaptureDish],
        *,
        checkout_id: str,
        model_version: str,
        outcome: str,
        tray_area: TrayArea | None,
        removed: builtins.list[RemovedBox],
        review_reasons: builtins.list[str],
        terminal_id: str,
    ) -> CaptureRecord:
        now = self._clock()
        try:
            crop, rect = crop_to_tray(frame_image, tray_area)
        except ValueError as exc:
            raise CaptureRefusedError(str(exc)) from None
        reasons = list(review_reasons)
        dish_records: builtins.list[dict[str, Any]] = []
        unboxed: builtins.list[str] = []
        for dish in dishes:
            box = _shift_box(dish.box_xyxy, rect) if dish.box_xyxy is not None else None
            if dish.box_xyxy is not None and box is None:
                reasons.append(f"the box of {dish.dish_id} lies outside the tray area")
            if box is None:
                unboxed.append(dish.dish_id)
            dish_records.append(
                {
                    "dish_id": dish.dish_id,
                    "box_xyxy": list(box) if box is not None else None,
                    "corrected": bool(dish.corrected),
                    "source": dish.source,
                    "model_dish_id": dish.model_dish_id,
                }
            )
        removed_records = [
            {"box_xyxy": list(shifted), "model_dish_id": box.model_dish_id}
            for box in removed
            if (shifted := _shift_box(box.box_xyxy, rect)) is not None
        ]
        ok, encoded = cv2.imencode(
            ".jpg", crop, [int(cv2.IMWRITE_JPEG_QUALITY), int(self.jpeg_quality)]
        )
        if not ok:
            raise CaptureRefusedError("the frame could not be encoded as JPEG")
        jpeg = encoded.tobytes()
        self._check_free_space(len(jpeg))

        capture_id = _capture_id(now, checkout_id)
        day = dt.datetime.fromtimestamp(now).strftime("%Y-%m-%d")
        day_folder = self.folder / day
        day_folder.mkdir(parents=True, exist_ok=True)
        suffix = 1
        base_id = capture_id
        while (day_folder / f"{capture_id}.json").exists():
            suffix += 1
            capture_id = f"{base_id}-{suffix}"
        image_path = day_folder / f"{capture_id}.jpg"
        json_path = day_folder / f"{capture_id}.json"
        data: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "capture_id": capture_id,
            "checkout_id": checkout_id,
            "terminal_id": terminal_id,
            "time": round(now, 3),
            "timestamp": iso_time(now),
            "outcome": outcome,
            "model_version": model_version,
            "image": image_path.name,
            "image_size": [int(crop.shape[1]), int(crop.shape[0])],
            "crop": {
                "x": rect[0],
                "y": rect[1],
                "frame_size": [int(frame_image.shape[1]), int(frame_image.shape[0])],
                "tray_area": _area_json(tray_area),
            },
            "dishes": dish_records,
            "unboxed": unboxed,
            "removed": removed_records,
            "complete": not unboxed,
            "corrected": any(d["corrected"] for d in dish_records) or bool(removed),
            "needs_review": bool(reasons),
            "review_reasons": reasons,
        }
        body = (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
        try:
            self._write_file(image_path, jpeg)
            self._write_file(json_path, body)
            _fsync_folder(day_folder)
        except BaseException:
            for path in (json_path, image_path):
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        with self._lock:
            insort(self._entries, _Entry(now, capture_id, day, len(jpeg) + len(body)))
            self._total += len(jpeg) + len(body)
            self._added += 1
        logger.debug("capture %s kept (%d bytes)", capture_id, len(jpeg) + len(body))
        self.prune()
        return CaptureRecord(capture_id, json_path, image_path, data)

    def _check_free_space(self, needed: int) -> None:
        if self.min_free_bytes <= 0:
            return
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            return
        if free - needed < self.min_free_bytes:
            raise CaptureRefusedError(
                f"only {free // 2**20} MB free on the disk of {self.folder}; captures stop "
                f"below {self.min_free_bytes // 2**20} MB so the ledger keeps room"
            )

    def prune(self) -> int:
        """Delete the oldest captures while the cap is exceeded or they are past retention.

        Returns how many were deleted.
        """
        cutoff = self._clock() - self.retention_days * SECONDS_PER_DAY
        deleted = 0
        with self._lock:
            while self._entries and (
                self._entries[0].time < cutoff or self._total > self.max_bytes
            ):
                entry = self._entries.pop(0)
                self._total -= entry.size
                self._delete(entry)
                deleted += 1
            self._pruned += deleted
        if deleted:
            logger.info("captures: pruned %d oldest captures", deleted)
        return deleted

    def _delete(self, entry: _Entry) -> None:
        day_folder = self.folder / entry.day
        # The record goes first: without it, the capture no longer exists.
        for suffix in (".json", ".jpg"):
            path = day_folder / f"{entry.capture_id}{suffix}"
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("captures: cannot delete %s: %s", path, exc)
        with contextlib.suppress(OSError):
            day_folder.rmdir()  # only succeeds once the day is empty


def _area_json(area: TrayArea | None) -> list[Any] | None:
    if area is None:
        return None
    rect = _as_rect(area)
    if rect is not None:
        return [int(v) if v.is_integer() else v for v in rect]
    return [[x, y] for x, y in _as_points(area)]


# --- the writer thread ----------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureJob:
    """One capture waiting to be written (see :meth:`CaptureStore.add` for the fields)."""

    image: npt.NDArray[np.uint8]
    dishes: tuple[CaptureDish, ...]
    checkout_id: str
    model_version: str
    outcome: str
    tray_area: TrayArea | None = None
    removed: tuple[RemovedBox, ...] = ()
    review_reasons: tuple[str, ...] = ()
    terminal_id: str = ""


class CaptureWriter:
    """Writes captures on one background thread, so the checkout never waits for the disk.

    The queue is bounded: a capture that finds it full is dropped and counted, as a stale
    camera frame is; a slow disk must not grow the kiosk's memory.

    Args:
        store: where the captures go.
        queue_size: how many captures may wait.
    """

    def __init__(self, store: CaptureStore, *, queue_size: int = 8) -> None:
        self.store = store
        self.dropped = 0
        self._queue: queue.Queue[CaptureJob | None] = queue.Queue(maxsize=max(1, queue_size))
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def submit(self, job: CaptureJob) -> bool:
        """Queue a capture; False (and counted as dropped) when the queue is full or closed."""
        if self._closed:
            self.dropped += 1
            return False
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self.dropped += 1
            logger.warning("capture of checkout %s dropped: the writer is behind", job.checkout_id)
            return False
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued capture is written; False if ``timeout_s`` ran out first."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (for up to ``timeout_s``), then stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            logger.warning("capture writer did not drain in %.0f s", timeout_s)
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self.store.add(
                    job.image,
                    job.dishes,
                    checkout_id=job.checkout_id,
                    model_version=job.model_version,
                    outcome=job.outcome,
                    tray_area=job.tray_area,
                    removed=job.removed,
                    review_reasons=job.review_reasons,
                    terminal_id=job.terminal_id,
                )
            except Exception:
                # The thread must outlive any one bad capture.
                logger.exception("capture of checkout %s failed", job.checkout_id)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


# --- the session subscriber -----------------------------------------------------------------


@dataclass
class _Tray:
    checkout_id: str
    frame: Frame | None = None
    recognition: TrayRecognition | None = None
    priced: PricedTray | None = None
    captured: bool = False


class CaptureRecorder:
    """Listens to a checkout session and captures each paid tray.

    The loops that run checkouts call :meth:`frame_settled` with the frame they recognise; the
    recorder keeps it until the checkout ends. A paid checkout is captured with the dishes of
    the paid lines, boxes matched by :func:`match_dishes`.

    A voided checkout is not captured unless ``keep_voided``: nobody paid for its dishes, so
    nobody confirmed them (a void is often a wrong tray, a test or a diner who walked away).
    When kept, it is marked for review.

    Args:
        session: the checkout session to listen to.
        writer: where the captures go (anything with ``submit(job) -> bool``).
        tray_area: the calibrated tray area ``(x1, y1, x2, y2)``, or None for the whole frame.
        calibrated_size: the frame size (width, height) the tray area was measured at.
        terminal_id: written into each record.
        keep_voided: capture voided checkouts too.
    """

    def __init__(
        self,
        session: CheckoutSession,
        writer: CaptureWriter,
        *,
        tray_area: Rect | None = None,
        calibrated_size: tuple[int, int] | None = None,
        terminal_id: str = "",
        keep_voided: bool = False,
    ) -> None:
        self.session = session
        self.writer = writer
        self.tray_area = tray_area
        self.calibrated_size = calibrated_size
        self.terminal_id = terminal_id
        self.keep_voided = keep_voided
        self.skipped = 0
        self._tray: _Tray | None = None
        self._unsubscribe = session.subscribe(self._on_event)

    @property
    def store(self) -> CaptureStore:
        """The store the writer writes to."""
        return self.writer.store

    def frame_settled(self, frame: Frame) -> None:
        """The frame the current checkout is recognised from (call at ``tray_settled``)."""
        checkout_id = self.session.checkout_id
        if checkout_id is None:
            return
        if self._tray is None or self._tray.checkout_id != checkout_id:
            self._tray = _Tray(checkout_id)
        self._tray.frame = frame

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop listening, write what is queued and stop the writer."""
        self._unsubscribe()
        self.writer.close(timeout_s)

    def _on_event(self, event: CheckoutEvent) -> None:
        if isinstance(event, TrayArrived):
            self._tray = _Tray(event.checkout_id)
            return
        tray = self._tray
        if isinstance(event, TrayRemoved):
            self._tray = None
            return
        if tray is None or tray.checkout_id != event.checkout_id:
            return
        if isinstance(event, TrayRecognised):
            tray.recognition = event.recognition
            tray.priced = event.priced
        elif isinstance(event, TrayHeld):
            tray.priced = event.priced or tray.priced
        elif isinstance(event, PaymentRequested):
            tray.priced = event.priced
        elif isinstance(event, Paid):
            tray.priced = event.priced
            self._capture(tray, "paid", ())
        elif isinstance(event, CheckoutVoided) and self.keep_voided:
            self._capture(tray, "voided", (f"voided, nobody paid for it: {event.reason}",))

    def _capture(self, tray: _Tray, outcome: str, reasons: tuple[str, ...]) -> None:
        if tray.captured:
            return
        tray.captured = True
        if tray.frame is None or tray.priced is None:
            self.skipped += 1
            logger.debug("checkout %s not captured: no settled frame", tray.checkout_id)
            return
        frame = tray.frame
        area: Rect | None = self.tray_area
        if area is not None and self.calibrated_size is not None:
            area = scale_tray_area(area, self.calibrated_size, (frame.width, frame.height))
            if area is None:
                # Privacy first: without a trusted tray area, nothing of the frame is kept.
                self.skipped += 1
                logger.warning(
                    "checkout %s not captured: the frame is %dx%d but the tray area was "
                    "calibrated at %dx%d; run trayscan calibrate camera",
                    tray.checkout_id,
                    frame.width,
                    frame.height,
                    *self.calibrated_size,
                )
                return
        match = match_dishes(tray.recognition, [line.item_id for line in tray.priced.lines])
        recognition = tray.recognition
        job = CaptureJob(
            image=frame.image,
            dishes=match.dishes,
            checkout_id=tray.checkout_id,
            model_version=recognition.model_version if recognition is not None else "none",
            outcome=outcome,
            tray_area=area,
            removed=match.removed,
            review_reasons=match.review_reasons + reasons,
            terminal_id=self.terminal_id,
        )
        self.writer.submit(job)


# --- export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_yolo` wrote."""

    folder: Path
    dataset_yaml: Path
    manifest: Path
    images: int
    boxes: int
    corrected: int
    needs_review: int
    skipped_incomplete: int
    skipped_missing: int
    class_names: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "dataset": str(self.dataset_yaml),
            "manifest": str(self.manifest),
            "images": self.images,
            "boxes": self.boxes,
            "corrected": self.corrected,
            "needs_review": self.needs_review,
            "skipped_incomplete": self.skipped_incomplete,
            "skipped_missing": self.skipped_missing,
            "classes": len(self.class_names),
        }


class ExportError(ValueError):
    """An export that cannot be written; the message says what to do."""


def class_names_for(records: Iterable[CaptureRecord], menu_ids: Iterable[str] = ()) -> list[str]:
    """The class names of an export: every menu id and every id a capture holds, sorted.

    Sorting by id keeps a dish's class index the same from one export to the next while the
    menu changes from day to day.
    """
    names = set(menu_ids)
    for record in records:
        names.update(str(dish["dish_id"]) for dish in record.data["dishes"])
    return sorted(names)


def export_yolo(
    records: Sequence[CaptureRecord],
    out: Path,
    *,
    class_names: Sequence[str] | None = None,
    include_incomplete: bool = False,
    since: str | None = None,
    until: str | None = None,
    clock: Callable[[], float] = time.time,
) -> ExportSummary:
    """Write captures as a YOLO dataset: ``images/``, ``labels/``, ``dataset.yaml``,
    ``manifest.json``.

    Every image is both ``train`` and ``val`` in the YAML; splitting is the dataset tools'
    job. An incomplete capture (a paid dish without a box) is left out unless
    ``include_incomplete``, because its labels would teach the detector that a dish is
    background; when included it is marked ``needs_review`` in the manifest.

    Args:
        records: the captures, e.g. from :meth:`CaptureStore.list`.
        out: a folder that does not exist yet, or is empty.
        class_names: the classes, in order; :func:`class_names_for` of the records by default.
        include_incomplete: export captures with unboxed dishes too.
        since: the first day exported, for the manifest.
        until: the last day exported, for the manifest.
        clock: seconds since the epoch, for the manifest's export time.

    Raises:
        ExportError: ``out`` is not empty, or a capture holds a dish outside ``class_names``.
        OSError: the files cannot be written.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder: export to a new folder")
    names = list(class_names) if class_names is not None else class_names_for(records)
    index = {name: i for i, name in enumerate(names)}
    images_dir, labels_dir = out / "images", out / "labels"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    boxes = corrected = review = incomplete = missing = 0
    per_class: dict[str, int] = {}
    for record in sorted(records, key=lambda r: (r.time, r.capture_id)):
        if not record.complete and not include_incomplete:
            incomplete += 1
            continue
        if not record.image_path.is_file():
            missing += 1
            logger.warning("capture %s has no image any more; skipped", record.capture_id)
            continue
        width, height = record.image_size
        lines = []
        for dish_id, (x1, y1, x2, y2) in record.boxes:
            if dish_id not in index:
                raise ExportError(
                    f"capture {record.capture_id}: dish {dish_id!r} is not among the classes"
                )
            per_class[dish_id] = per_class.get(dish_id, 0) + 1
            lines.append(
                f"{index[dish_id]} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
            )
        image_name = f"{record.capture_id}.jpg"
        shutil.copyfile(record.image_path, images_dir / image_name)
        label_text = "".join(line + "\n" for line in lines)
        (labels_dir / f"{record.capture_id}.txt").write_text(label_text, encoding="utf-8")
        needs_review = record.needs_review or not record.complete
        boxes += len(lines)
        corrected += record.corrected
        review += needs_review
        entries.append(
            {
                "file": f"images/{image_name}",
                "checkout_id": record.checkout_id,
                "corrected": record.corrected,
                "model_version": str(record.data.get("model_version", "")),
                "timestamp": str(record.data.get("timestamp", iso_time(record.time))),
                "needs_review": needs_review,
            }
        )
    dataset_yaml = write_dataset_yaml(
        out,
        names,
        train="images",
        val="images",
        header="# Captures exported by `trayscan captures export`; class names are menu ids.",
    )
    manifest = out / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": EXPORT_FORMAT,
                "exported_at": iso_time(clock()),
                "since": since,
                "until": until,
                "class_names": names,
                "counts": {
                    "images": len(entries),
                    "boxes": boxes,
                    "corrected": corrected,
                    "needs_review": review,
                    "skipped_incomplete": incomplete,
                    "skipped_missing": missing,
                    "per_class": dict(sorted(per_class.items())),
                },
                "images": entries,
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    logger.info("exported %d captures (%d boxes) to %s", len(entries), boxes, out)
    return ExportSummary(
        out,
        dataset_yaml,
        manifest,
        len(entries),
        boxes,
        corrected,
        review,
        incomplete,
        missing,
        tuple(names),
    )


__all__ = [
    "CaptureDish",
    "CaptureJob",
    "CaptureRecord",
    "CaptureRecorder",
    "CaptureStats",
    "CaptureStore",
    "CaptureWriter",
    "DishMatch",
    "ExportError",
    "ExportSummary",
    "RemovedBox",
    "class_names_for",
    "crop_bounds",
    "crop_to_tray",
    "export_yolo",
    "match_dishes",
    "scale_tray_area",
    "write_atomic",
]
