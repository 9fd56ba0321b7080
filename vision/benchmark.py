"""``trayscan bench recognise``: latency of the detector, the identifier and a whole tray.

Measured on the shipped sample trays at 1 and 2 ONNX Runtime threads. The identifier is also timed
on exactly 8 crops per tray (boxes tiled over the image when the detector found fewer), the budget's
worst case. Peak resident memory is read from the kernel at the end.
"""

from __future__ import annotations

import logging
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from vision.recogniser import BundleRecogniser
from vision.sources import list_images, read_image

logger = logging.getLogger(__name__)


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(samples, 50)), 2),
        "p95": round(float(np.percentile(samples, 95)), 2),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def eight_boxes(width: int, height: int, found: np.ndarray) -> np.ndarray:
    """The detector's boxes, topped up to 8 with tiles of the image."""
    boxes = [tuple(b) for b in found[:8]]
    cols, rows = 4, 2
    for i in range(8 - len(boxes)):
        c, r = i % cols, i // cols
        boxes.append(
            (c * width / cols, r * height / rows, (c + 1) * width / cols, (r + 1) * height / rows)
        )
    return np.array(boxes, np.float32)


def bench_recognise(
    bundle: Path, images: Path, *, rounds: int = 5, warmup: int = 2
) -> dict[str, Any]:
    """Time recognition on every image of ``images``, ``rounds`` times, at 1 and 2 threads."""
    frames = [read_image(p) for p in list_images(images)]
    if not frames:
        raise ValueError(f"no images in {images}")
    result: dict[str, Any] = {
        "bundle": str(bundle),
        "images": len(frames),
        "rounds": rounds,
        "machine": {
            "cpu": _cpu_name(),
            "cores": __import__("os").cpu_count(),
            "onnxruntime": ort.__version__,
        },
    }
    for threads in (1, 2):
        recogniser = BundleRecogniser.from_path(bundle, threads=threads)
        for frame in frames[:warmup]:
            recogniser.recognise_image(frame)
        detector_ms, identifier_ms, tray_ms, eight_ms, dishes = [], [], [], [], []
        for _ in range(rounds):
            for frame in frames:
                started = time.perf_counter()
                recognition = recogniser.recognise_image(frame)
                tray_ms.append((time.perf_counter() - started) * 1000.0)
                detector_ms.append(recognition.detector_ms)
                identifier_ms.append(recognition.identifier_ms)
                dishes.append(len(recognition.tray.dishes))
                boxes = eight_boxes(
                    frame.shape[1], frame.shape[0], recognition.detections.boxes_xyxy
                )
                started = time.perf_counter()
                recogniser.identifier.identify(frame, boxes)
                eight_ms.append((time.perf_counter() - started) * 1000.0)
        result[f"threads_{threads}"] = {
            "detector_ms": _percentiles(detector_ms),
            "identifier_ms": _percentiles(identifier_ms),
            "tray_ms": _percentiles(tray_ms),
            "identifier_8_dishes_ms": _percentiles(eight_ms),
            "tray_8_dishes_ms_p95_estimate": round(
                float(np.percentile(detector_ms, 95) + np.percentile(eight_ms, 95)), 2
            ),
            "dishes_per_tray_mean": round(float(np.mean(dishes)), 2),
        }
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    result["torch_loaded"] = "torch" in __import__("sys").modules
    return result
