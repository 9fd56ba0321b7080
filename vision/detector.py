"""Dish detectors: find every dish region on a settled tray.

The first stage of the recogniser (see DESIGN.md). :class:`Detector` is the small interface other
backends plug into; :class:`OnnxYoloDetector` runs an ultralytics YOLO detect model exported to
ONNX with ONNX Runtime, so the kiosk needs neither torch nor ultralytics. The geometry helpers
(letterbox, NMS, containment suppression) are plain numpy/OpenCV and are tested on their own.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vision.onnx import ModelLoadError, make_session
from vision.types import Detections, FloatArray, IntArray

logger = logging.getLogger(__name__)

# Candidates kept (by score) before NMS: bounds the quadratic part of NMS when a badly calibrated
# model or a very low ``conf`` lets thousands of anchors through; a tray never holds that many.
MAX_NMS_CANDIDATES = 3000

# A box narrower or lower than this (original pixels) after clipping lies in the letterbox padding
# or on the image border: nothing a diner could have put on the tray.
MIN_BOX_SIDE_PX = 1.0


class Detector(abc.ABC):
    """Something that finds dish regions on a BGR image."""

    @abc.abstractmethod
    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """The dish regions on ``image_bgr``, in its pixels, best first."""


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image was letterboxed, to map boxes back to its pixels.

    Attributes:
        scale: resize factor from the original image to the letterboxed one.
        pad_x: columns of padding on the left of the letterboxed image.
        pad_y: rows of padding on the top of the letterboxed image.
        src_width: original image width in pixels.
        src_height: original image height in pixels.
        size: side of the square letterboxed image.
    """

    scale: float
    pad_x: int
    pad_y: int
    src_width: int
    src_height: int
    size: int


def letterbox(
    image_bgr: npt.NDArray[np.uint8], size: int, color: int = 114
) -> tuple[npt.NDArray[np.uint8], LetterboxInfo]:
    """Resize ``image_bgr`` keeping its aspect so the long side is ``size``, pad it to a square.

    The padding is split between both sides the way ultralytics splits it
    (``round(pad - 0.1)`` before, ``round(pad + 0.1)`` after), so a model sees at run time the same
    pixels it saw when ultralytics validated it.

    Args:
        image_bgr: ``(H, W, C)`` or ``(H, W)`` uint8 image.
        size: side of the square output.
        color: grey level of the padding (ultralytics uses 114).

    Returns:
        The ``(size, size, C)`` image and the :class:`LetterboxInfo` to undo it.
    """
    if size <= 0:
        raise ValueError(f"letterbox size must be positive, got {size}")
    height, width = int(image_bgr.shape[0]), int(image_bgr.shape[1])
    if height == 0 or width == 0:
        raise ValueError(f"cannot letterbox an empty image of shape {image_bgr.shape}")
    scale = min(size / height, size / width)
    new_width, new_height = round(width * scale), round(height * scale)
    if (new_width, new_height) != (width, height):
        resized = cv2.resize(image_bgr, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    else:
        resized = image_bgr
    half_pad_x = (size - new_width) / 2
    half_pad_y = (size - new_height) / 2
    top, bottom = round(half_pad_y - 0.1), round(half_pad_y + 0.1)
    left, right = round(half_pad_x - 0.1), round(half_pad_x + 0.1)
    channels = 1 if image_bgr.ndim == 2 else int(image_bgr.shape[2])
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(color,) * channels
    )
    info = LetterboxInfo(
        scale=scale, pad_x=left, pad_y=top, src_width=width, src_height=height, size=size
    )
    return np.asarray(padded, dtype=np.uint8), info


def unletterbox(boxes_xyxy: npt.ArrayLike, info: LetterboxInfo) -> FloatArray:
    """Map ``(N, 4)`` x1 y1 x2 y2 boxes from letterboxed pixels back to the original image's.

    Boxes are clipped to the original image, so a box reaching into the padding ends at the border.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - info.pad_x) / info.scale
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - info.pad_y) / info.scale
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, info.src_width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, info.src_height)
    return boxes


def _areas(boxes: FloatArray) -> FloatArray:
    widths = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None)
    heights = np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    return np.asarray(widths * heights, dtype=np.float32)


def _intersections(box: FloatArray, others: FloatArray) -> FloatArray:
    """Intersection areas of one ``(4,)`` box with ``(K, 4)`` boxes."""
    widths = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    heights = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    return np.asarray(np.clip(widths, 0.0, None) * np.clip(heights, 0.0, None), dtype=np.float32)


def _score_order(scores: FloatArray) -> IntArray:
    # Stable, so equal scores keep the model's order and results are reproducible.
    return np.argsort(-scores, kind="stable").astype(np.int64)


def _as_boxes_and_scores(
    boxes_xyxy: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    score_array = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(boxes) != len(score_array):
        raise ValueError(f"{len(boxes)} boxes but {len(score_array)} scores")
    return boxes, score_array


def nms(boxes_xyxy: npt.ArrayLike, scores: npt.ArrayLike, iou_threshold: float) -> IntArray:
    """Greedy non-maximum suppression.

    Takes boxes from the highest score down and drops every later box whose IoU with a kept one is
    above ``iou_threshold``.

    Args:
        boxes_xyxy: ``(N, 4)`` x1 y1 x2 y2 boxes.
        scores: ``(N,)`` scores.
        iou_threshold: IoU above which the lower-scoring box is dropped.

    Returns:
        int64 indices of the kept boxes, highest score first.
    """
    boxes, score_array = _as_boxes_and_scores(boxes_xyxy, scores)
    areas = _areas(boxes)
    order = _score_order(score_array)
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        inter = _intersections(boxes[best], boxes[rest])
        union = areas[best] + areas[rest] - inter
        iou = inter / np.maximum(union, np.finfo(np.float32).tiny)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def suppress_contained(
    boxes_xyxy: npt.ArrayLike, scores: npt.ArrayLike, containment: float = 0.85
) -> IntArray:
    """Drop boxes that lie mostly inside a kept higher-scoring box.

    A detector sometimes finds a whole plate and, separately, a piece of the food on it (a chicken
    leg on the rice). The fragment's IoU with the plate is small, because it is small, so NMS keeps
    both and the diner would be charged twice. Measuring how much of the *smaller* box lies inside
    the bigger one catches it. Two different dishes on a tray do not sit inside each other.

    Args:
        boxes_xyxy: ``(N, 4)`` x1 y1 x2 y2 boxes.
        scores: ``(N,)`` scores.
        containment: fraction of a box's own area inside a higher-scoring kept box from which it
            is dropped.

    Returns:
        int64 indices of the kept boxes, highest score first.
    """
    boxes, score_array = _as_boxes_and_scores(boxes_xyxy, scores)
    areas = _areas(boxes)
    keep: list[int] = []
    for index in _score_order(score_array):
        candidate = int(index)
        if keep and areas[candidate] > 0:
            inside = _intersections(boxes[candidate], boxes[keep]) / areas[candidate]
            if float(inside.max()) >= containment:
                continue
        keep.append(candidate)
    return np.asarray(keep, dtype=np.int64)


def _static_dim(dim: Any) -> int | None:
    """An ONNX dimension as an int, or None when it is symbolic (``"batch"``, ``None``, -1)."""
    return dim if isinstance(dim, int) and dim >= 0 else None


class OnnxYoloDetector(Detector):
    """An ultralytics YOLO detect model exported to ONNX, run with ONNX Runtime.

    The model takes ``images``: ``(1, 3, S, S)`` float32 RGB in 0..1, letterboxed, and gives
    ``(1, 4 + nc, A)``: per anchor the box centre, width and height in letterboxed pixels followed
    by ``nc`` class scores that are already sigmoid-ed. Export it with ``nms=False`` and a fixed
    ``imgsz``.

    NMS is class-agnostic: two classes on the same spot are one dish seen twice, not two dishes.

    Args:
        onnx_path: the exported model.
        conf: scores at or below this are not dishes.
        iou: IoU above which NMS drops the lower-scoring box.
        max_det: most dishes reported per image.
        containment: see :func:`suppress_contained`; None turns it off.
        threads: ONNX Runtime intra-op threads.
        session: an already made ONNX Runtime session for ``onnx_path`` (tests, sharing).

    Raises:
        ModelLoadError: the model is missing, corrupt, or its input/output shapes are not the
            ones above; names the file.
    """

    def __init__(
        self,
        onnx_path: Path | str,
        *,
        conf: float = 0.25,
        iou: float = 0.5,
        max_det: int = 16,
        containment: float | None = 0.85,
        threads: int = 2,
        session: Any = None,
    ) -> None:
        self.onnx_path = Path(onnx_path)
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.containment = containment
        self.session = session if session is not None else make_session(self.onnx_path, threads)
        self.imgsz, self.input_name, self.output_name, self.num_classes = self._check_model()
        logger.info(
            "detector %s: input %s %dx%d, %s classes",
            self.onnx_path,
            self.input_name,
            self.imgsz,
            self.imgsz,
            "?" if self.num_classes is None else self.num_classes,
        )

    def _check_model(self) -> tuple[int, str, str, int | None]:
        """Image size, input name, output name and class count (None if symbolic)."""
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(
                f"detector {self.onnx_path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "expected one image input and a prediction output"
            )
        in_shape = list(inputs[0].shape)
        batch = _static_dim(in_shape[0]) if in_shape else None
        if (
            len(in_shape) != 4
            or batch not in (None, 1)
            or _static_dim(in_shape[1]) != 3
            or _static_dim(in_shape[2]) is None
            or in_shape[2] != in_shape[3]
        ):
            raise ModelLoadError(
                f"detector {self.onnx_path} takes input {in_shape}; expected (1, 3, S, S) with a "
                "fixed square size S (export with a fixed imgsz, dynamic=False)"
            )
        out_shape = list(outputs[0].shape)
        rows = _static_dim(out_shape[1]) if len(out_shape) == 3 else None
        anchors = _static_dim(out_shape[2]) if len(out_shape) == 3 else None
        if rows is not None and anchors == 6 and rows > anchors:
            raise ModelLoadError(
                f"detector {self.onnx_path} gives output {out_shape}, which looks like an "
                "end-to-end (NMS-included) export; export with nms=False and end2end=False"
            )
        if len(out_shape) != 3 or (rows is not None and rows < 5):
            raise ModelLoadError(
                f"detector {self.onnx_path} gives output {out_shape}; expected (1, 4 + classes, "
                "anchors) from an ultralytics detect export"
            )
        num_classes = None if rows is None else rows - 4
        return int(in_shape[2]), str(inputs[0].name), str(outputs[0].name), num_classes

    def preprocess(self, image_bgr: npt.NDArray[np.uint8]) -> tuple[FloatArray, LetterboxInfo]:
        """The model input for ``image_bgr``: letterboxed, RGB, 0..1, ``(1, 3, S, S)`` float32."""
        if image_bgr.ndim == 2:
            image_bgr = np.asarray(cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
        elif image_bgr.ndim == 3 and image_bgr.shape[2] == 4:
            image_bgr = np.asarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
        elif image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR image, got shape {image_bgr.shape}")
        boxed, info = letterbox(image_bgr, self.imgsz)
        rgb = boxed[:, :, ::-1].transpose(2, 0, 1)
        tensor = np.ascontiguousarray(rgb[np.newaxis], dtype=np.float32)
        tensor *= np.float32(1.0 / 255.0)
        return tensor, info

    def postprocess(self, output: npt.ArrayLike, info: LetterboxInfo) -> Detections:
        """Turn the raw ``(1, 4 + nc, A)`` model output into :class:`Detections`.

        Keeps anchors scoring above ``conf``, runs class-agnostic NMS and, when enabled,
        containment suppression, maps boxes back to the original image and keeps ``max_det``.
        """
        prediction = np.asarray(output, dtype=np.float32)
        if prediction.ndim != 3 or prediction.shape[0] != 1 or prediction.shape[1] < 5:
            raise ValueError(
                f"detector output has shape {prediction.shape}; expected (1, 4 + classes, anchors)"
            )
        rows = prediction[0].T  # (A, 4 + nc): one anchor per row
        class_scores = rows[:, 4:]
        class_ids = class_scores.argmax(axis=1).astype(np.int64)
        scores = class_scores[np.arange(len(rows)), class_ids]
        passing = np.flatnonzero(scores > self.conf)
        if passing.size > MAX_NMS_CANDIDATES:
            passing = passing[_score_order(scores[passing])[:MAX_NMS_CANDIDATES]]
        if passing.size == 0:
            return Detections.empty()
        centre_boxes = rows[passing, :4]
        scores, class_ids = scores[passing], class_ids[passing]
        half_sizes = centre_boxes[:, 2:4] / 2.0
        boxes = np.concatenate(
            [centre_boxes[:, :2] - half_sizes, centre_boxes[:, :2] + half_sizes], axis=1
        )

        keep = nms(boxes, scores, self.iou)
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        if self.containment is not None:
            keep = suppress_contained(boxes, scores, self.containment)
            boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]

        boxes = unletterbox(boxes, info)
        visible = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE_PX) & (
            (boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE_PX
        )
        boxes, scores, class_ids = boxes[visible], scores[visible], class_ids[visible]
        return Detections(
            boxes_xyxy=np.ascontiguousarray(boxes[: self.max_det], dtype=np.float32),
            scores=np.ascontiguousarray(scores[: self.max_det], dtype=np.float32),
            class_ids=np.ascontiguousarray(class_ids[: self.max_det], dtype=np.int64),
        )

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        """The dishes on ``image_bgr``, in its pixels, highest score first."""
        tensor, info = self.preprocess(image_bgr)
        (output,) = self.session.run([self.output_name], {self.input_name: tensor})
        detections = self.postprocess(output, info)
        logger.debug("detector found %d dishes", len(detections))
        return detections
