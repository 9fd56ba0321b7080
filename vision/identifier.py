"""Dish identification: name each detected region by matching its embedding against the gallery.

The second stage of the recogniser (DESIGN.md): a pretrained image backbone exported to ONNX
(:class:`Embedder`) turns each dish crop into an embedding; the :class:`~vision.gallery.Gallery`
ranks the menu items by cosine similarity; :func:`decide` turns the ranking into sure, unsure
(the cashier picks from the top candidates) or unknown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vision.gallery import Gallery, MatchMode
from vision.onnx import ModelLoadError, make_session
from vision.types import Candidate, DishRecognition, DishStatus, FloatArray

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The smallest crop handed to the embedder: a zero-sized crop would make cv2.resize fail, and a
# box from a detector can be a sliver on the image border.
MIN_CROP_SIDE_PX = 2


def _span(low: float, high: float, limit: int) -> tuple[int, int]:
    """Integer pixel range covering ``low..high`` inside ``0..limit``, at least 2 pixels long."""
    start = min(max(math.floor(low), 0), limit)
    stop = min(max(math.ceil(high), 0), limit)
    if stop - start < MIN_CROP_SIDE_PX:
        centre = min(max((low + high) / 2.0, 0.0), float(limit))
        start = min(max(round(centre - MIN_CROP_SIDE_PX / 2.0), 0), limit - MIN_CROP_SIDE_PX)
        stop = start + MIN_CROP_SIDE_PX
    return start, stop


def crop_box(
    image_bgr: npt.NDArray[np.uint8], box_xyxy: npt.ArrayLike, pad_fraction: float = 0.05
) -> npt.NDArray[np.uint8]:
    """The part of ``image_bgr`` inside ``box_xyxy``, grown by ``pad_fraction`` of its size.

    The small margin keeps the rim of the plate, which the backbone uses to tell a dish's bowl
    from another's. The crop is clipped to the image and never smaller than 2x2 pixels, so a box
    on the border or outside the image still gives something to embed.

    Args:
        image_bgr: ``(H, W, 3)`` image, at least 2x2.
        box_xyxy: x1 y1 x2 y2 in the image's pixels.
        pad_fraction: margin added on each side, as a fraction of the box's width and height.

    Returns:
        A view into ``image_bgr``.
    """
    height, width = int(image_bgr.shape[0]), int(image_bgr.shape[1])
    if height < MIN_CROP_SIDE_PX or width < MIN_CROP_SIDE_PX:
        raise ValueError(f"cannot crop from an image of shape {image_bgr.shape}")
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"expected a finite x1 y1 x2 y2 box, got {box_xyxy!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    pad_x, pad_y = (x2 - x1) * pad_fraction, (y2 - y1) * pad_fraction
    left, right = _span(x1 - pad_x, x2 + pad_x, width)
    top, bottom = _span(y1 - pad_y, y2 + pad_y, height)
    return image_bgr[top:bottom, left:right]


def _static_dim(dim: Any) -> int | None:
    """An ONNX dimension as an int, or None when it is symbolic (``"batch"``, ``None``, -1)."""
    return dim if isinstance(dim, int) and dim >= 0 else None


class Embedder:
    """An image backbone exported to ONNX that turns dish crops into unit-length embeddings.

    The model takes ``(N, 3, H, W)`` float32 RGB, normalised with ``mean`` and ``std`` (ImageNet's
    by default), and gives ``(N, D)`` or ``(N, D, 1, 1)``.

    Args:
        onnx_path: the exported backbone.
        input_size: side of the square input; read from the model when None. Required when the
            model's height and width are dynamic.
        mean: per-channel (RGB) mean of 0..1 pixels that the backbone was trained with.
        std: per-channel (RGB) standard deviation, likewise.
        threads: ONNX Runtime intra-op threads.
        batch_size: crops per run when the model's batch dimension is dynamic.
        session: an already made ONNX Runtime session for ``onnx_path`` (tests, sharing).

    Raises:
        ModelLoadError: the model is missing, corrupt, or its shapes are not the ones above;
            names the file.
    """

    def __init__(
        self,
        onnx_path: Path | str,
        *,
        input_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        threads: int = 2,
        batch_size: int = 8,
        session: Any = None,
    ) -> None:
        self.onnx_path = Path(onnx_path)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need three values, std positive: {mean}, {std}")
        # Folded into one scale and offset per channel: x * scale + offset == (x / 255 - m) / s.
        std_array = np.asarray(std, dtype=np.float32)
        self._scale = (1.0 / (255.0 * std_array)).reshape(1, 1, 3).astype(np.float32)
        self._offset = (-np.asarray(mean, dtype=np.float32) / std_array).reshape(1, 1, 3)
        self.session = session if session is not None else make_session(self.onnx_path, threads)
        self.input_size, self._batch_limit, self._fixed_batch = self._check_input(
            input_size, batch_size
        )
        self.input_name = str(self.session.get_inputs()[0].name)
        self.output_name = str(self.session.get_outputs()[0].name)
        self._dim = self._check_output()
        logger.info(
            "embedder %s: input %dx%d, %d-d embeddings, batches of %d",
            self.onnx_path,
            self.input_size,
            self.input_size,
            self._dim,
            self._batch_limit,
        )

    @property
    def dim(self) -> int:
        """Length of the embeddings."""
        return self._dim

    def _check_input(self, input_size: int | None, batch_size: int) -> tuple[int, int, bool]:
        """The input side, how many crops go into one run, and whether exactly that many must."""
        inputs = self.session.get_inputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        if len(shape) != 4 or _static_dim(shape[1]) != 3:
            raise ModelLoadError(
                f"embedder {self.onnx_path} takes inputs {[i.shape for i in inputs]}; "
                "expected one (N, 3, H, W) image input"
            )
        height, width = _static_dim(shape[2]), _static_dim(shape[3])
        if height is not None and height != width:
            raise ModelLoadError(
                f"embedder {self.onnx_path} takes {height}x{width} images; expected a square input"
            )
        if input_size is None:
            if height is None:
                raise ModelLoadError(
                    f"embedder {self.onnx_path} has a dynamic input size; pass input_size"
                )
            input_size = height
        elif height is not None and height != input_size:
            raise ModelLoadError(
                f"embedder {self.onnx_path} takes {height}x{width} images, not {input_size}"
            )
        if input_size <= 0 or batch_size <= 0:
            raise ValueError(
                f"input_size and batch_size must be positive: {input_size}, {batch_size}"
            )
        fixed_batch = _static_dim(shape[0])
        if fixed_batch:
            # A model exported with a fixed batch (often 1) must get exactly that many crops per
            # run; the last run is padded with zeros and their embeddings dropped.
            return input_size, fixed_batch, True
        return input_size, batch_size, False

    def _check_output(self) -> int:
        """The embedding length, from the declared output shape or, if symbolic, one run."""
        shape = list(self.session.get_outputs()[0].shape)
        spatial = [_static_dim(d) for d in shape[2:]]
        if len(shape) not in (2, 4) or any(d not in (None, 1) for d in spatial):
            raise ModelLoadError(
                f"embedder {self.onnx_path} gives output {shape}; expected (N, D) or (N, D, 1, 1)"
            )
        declared = _static_dim(shape[1])
        if declared and all(d == 1 for d in spatial):
            return declared
        probe = np.zeros((self.input_size, self.input_size, 3), dtype=np.uint8)
        try:
            return int(self._run([probe]).shape[1])
        except Exception as exc:  # ONNX Runtime's own errors derive from Exception only
            raise ModelLoadError(f"embedder {self.onnx_path}: {exc}") from exc

    def preprocess(self, crops: Sequence[npt.NDArray[np.uint8]]) -> FloatArray:
        """The ``(N, 3, S, S)`` model input for BGR ``crops``: resized, RGB, normalised."""
        side = self.input_size
        batch = np.empty((len(crops), 3, side, side), dtype=np.float32)
        for row, crop in enumerate(crops):
            if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] == 0 or crop.shape[1] == 0:
                raise ValueError(f"expected a non-empty BGR crop, got shape {crop.shape}")
            resized = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
            rgb = np.asarray(resized, dtype=np.float32)[:, :, ::-1]
            batch[row] = (rgb * self._scale + self._offset).transpose(2, 0, 1)
        return batch

    def _run(self, crops: Sequence[npt.NDArray[np.uint8]]) -> FloatArray:
        """Raw (not normalised) ``(N, D)`` embeddings, in runs the model accepts."""
        pieces: list[FloatArray] = []
        limit = self._batch_limit
        for start in range(0, len(crops), limit):
            batch = self.preprocess(crops[start : start + limit])
            count = len(batch)
            if self._fixed_batch and count < limit:
                padding = np.zeros((limit - count, *batch.shape[1:]), dtype=np.float32)
                batch = np.concatenate([batch, padding])
            (output,) = self.session.run([self.output_name], {self.input_name: batch})
            output = np.asarray(output, dtype=np.float32)
            if output.ndim not in (2, 4) or (output.ndim == 4 and output.shape[2:] != (1, 1)):
                raise ValueError(f"model output has shape {output.shape}; expected (N, D)")
            pieces.append(output.reshape(len(output), -1)[:count])
        return np.concatenate(pieces)

    def embed(self, crops: Sequence[npt.NDArray[np.uint8]]) -> FloatArray:
        """Unit-length ``(N, D)`` float32 embeddings of BGR ``crops`` (any sizes)."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        raw = self._run(crops)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.asarray(raw / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


@dataclass(frozen=True)
class IdentifierThresholds:
    """When a match is trusted.

    Attributes:
        unknown_below: best cosine score under which a dish is unknown.
        unsure_margin: lead of the best score over the second under which the cashier confirms.
    """

    unknown_below: float
    unsure_margin: float


def decide(
    candidates: Sequence[Candidate], thresholds: IdentifierThresholds
) -> tuple[DishStatus, str | None, float]:
    """Sure, unsure or unknown, from a dish region's ranked candidates.

    With a single candidate the runner-up counts as scoring 0: nothing in the gallery competes.

    Returns:
        The status, the best dish id (None when unknown) and the best score (0.0 when there are
        no candidates).
    """
    if not candidates:
        return DishStatus.UNKNOWN, None, 0.0
    ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
    best = ranked[0]
    if best.score < thresholds.unknown_below:
        return DishStatus.UNKNOWN, None, best.score
    second = ranked[1].score if len(ranked) > 1 else 0.0
    if best.score - second < thresholds.unsure_margin:
        return DishStatus.UNSURE, best.dish_id, best.score
    return DishStatus.SURE, best.dish_id, best.score


class Identifier:
    """Names detected dish regions: crop, embed in one batch, match against the gallery, decide.

    Args:
        embedder: the backbone.
        gallery: the reference embeddings; its ``dim`` must be the embedder's.
        thresholds: see :func:`decide`.
        k: candidates kept per dish region (the cashier's top-k picker).
        mode: gallery match mode, see :meth:`Gallery.match`.
    """

    def __init__(
        self,
        embedder: Embedder,
        gallery: Gallery,
        thresholds: IdentifierThresholds,
        *,
        k: int = 5,
        mode: MatchMode = "prototype",
    ) -> None:
        if embedder.dim != gallery.dim:
            raise ValueError(
                f"the embedder gives {embedder.dim}-d embeddings but the gallery holds "
                f"{gallery.dim}-d ones; the gallery was built with another backbone"
            )
        self.embedder = embedder
        self.gallery = gallery
        self.thresholds = thresholds
        self.k = k
        self.mode: MatchMode = mode

    def embed_boxes(
        self, image_bgr: npt.NDArray[np.uint8], boxes_xyxy: npt.ArrayLike
    ) -> FloatArray:
        """Unit-length embeddings of the ``(N, 4)`` boxes of ``image_bgr`` (for the gallery)."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        return self.embedder.embed([crop_box(image_bgr, box) for box in boxes])

    def identify(
        self, image_bgr: npt.NDArray[np.uint8], boxes_xyxy: npt.ArrayLike
    ) -> list[DishRecognition]:
        """One :class:`DishRecognition` per ``(N, 4)`` box of ``image_bgr``, in box order."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        embeddings = self.embed_boxes(image_bgr, boxes)
        matches = self.gallery.match(embeddings, k=self.k, mode=self.mode)
        dishes = []
        for box, candidates in zip(boxes, matches, strict=True):
            status, dish_id, score = decide(candidates, self.thresholds)
            x1, y1, x2, y2 = (float(v) for v in box)
            dishes.append(
                DishRecognition((x1, y1, x2, y2), status, dish_id, score, tuple(candidates))
            )
        logger.debug(
            "identified %d dishes: %s", len(dishes), [(d.status.value, d.dish_id) for d in dishes]
        )
        return dishes
