"""The recogniser: a verified model bundle's detector and identifier, run on ONNX Runtime.

Two stages, as DESIGN.md describes: the detector finds every dish region on the tray; the
identifier embeds each crop and matches it against the bundle's gallery of reference embeddings.
The result is a :class:`vision.types.TrayRecognition` whatever the backend.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vision.bundle import BundleError, BundleStore, ModelBundle, bump_version, verify_bundle
from vision.detector import OnnxYoloDetector
from vision.gallery import Gallery, GalleryError, MatchMode
from vision.identifier import Embedder, Identifier, IdentifierThresholds
from vision.onnx import ModelLoadError
from vision.references import References, add_references, reference_hash
from vision.types import Detections, Frame, TrayRecognition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recognition:
    """A tray's detections (for detector metrics) and its named dishes."""

    detections: Detections
    tray: TrayRecognition
    detector_ms: float
    identifier_ms: float


class BundleRecogniser:
    """Detector + gallery identifier of one model bundle.

    Args:
        bundle: a verified bundle.
        threads: ONNX Runtime intra-op threads for each of the two sessions.
    """

    def __init__(self, bundle: ModelBundle, *, threads: int = 2) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        try:
            self.detector = OnnxYoloDetector(
                bundle.path_of(manifest.detector.file),
                conf=manifest.detector.conf,
                iou=manifest.detector.iou,
                containment=manifest.detector.containment,
                threads=threads,
            )
            embedder = Embedder(
                bundle.path_of(manifest.identifier.file),
                input_size=manifest.identifier.input_size,
                mean=manifest.identifier.mean,
                std=manifest.identifier.std,
                threads=threads,
            )
            gallery = Gallery.load(bundle.path_of(manifest.gallery.file))
        except (ModelLoadError, GalleryError) as exc:
            raise BundleError(f"bundle {bundle.path}: {exc}") from exc
        if gallery.dim != embedder.dim:
            raise BundleError(
                f"bundle {bundle.path}: mismatched: the gallery holds {gallery.dim}-d embeddings, "
                f"the identifier makes {embedder.dim}-d"
            )
        unknown = sorted(set(gallery.dishes()) - set(bundle.dish_ids))
        if unknown:
            raise BundleError(
                f"bundle {bundle.path}: mismatched: gallery dishes missing from classes.json: "
                + ", ".join(unknown[:5])
            )
        thresholds = IdentifierThresholds(
            unknown_below=manifest.thresholds.unknown_below,
            unsure_margin=manifest.thresholds.unsure_margin,
        )
        mode: MatchMode = "nearest" if manifest.gallery.mode == "nearest" else "prototype"
        self.identifier = Identifier(embedder, gallery, thresholds, mode=mode)

    @classmethod
    def from_path(cls, path: Path, *, threads: int = 2) -> BundleRecogniser:
        """Verify the bundle folder at ``path`` and load it."""
        return cls(verify_bundle(path), threads=threads)

    @property
    def model_version(self) -> str:
        return self.bundle.version

    @property
    def gallery(self) -> Gallery:
        return self.identifier.gallery

    def recognise_image(self, image: npt.NDArray[np.uint8]) -> Recognition:
        """Detect and identify every dish on one BGR image."""
        started = time.perf_counter()
        detections = self.detector.detect(image)
        detected = time.perf_counter()
        dishes = self.identifier.identify(image, detections.boxes_xyxy)
        done = time.perf_counter()
        tray = TrayRecognition(
            dishes=tuple(dishes),
            model_version=self.model_version,
            elapsed_ms=(done - started) * 1000.0,
            image_size=(int(image.shape[1]), int(image.shape[0])),
        )
        return Recognition(
            detections, tray, (detected - started) * 1000.0, (done - detected) * 1000.0
        )

    def recognise(self, frame: Frame) -> TrayRecognition:
        return self.recognise_image(frame.image).tray


class SwappableRecogniser:
    """The terminal's recogniser: swaps in a new bundle while running, keeps the old on failure.

    A new bundle is verified and fully loaded before it replaces the running one; a corrupt,
    mismatched or incomplete bundle is refused with a clear message and recognition goes on with
    the bundle it had.
    """

    def __init__(self, store: BundleStore, *, threads: int = 2) -> None:
        self.store = store
        self.threads = threads
        self._lock = threading.Lock()
        current = store.current()
        if current is None:
            raise BundleError(f"no model bundle installed in {store.root}")
        self._active = BundleRecogniser(current, threads=threads)

    @property
    def active(self) -> BundleRecogniser:
        with self._lock:
            return self._active

    @property
    def model_version(self) -> str:
        return self.active.model_version

    def recognise(self, frame: Frame) -> TrayRecognition:
        return self.active.recognise(frame)

    def install(self, source: Path) -> str:
        """Install and switch to the bundle at ``source``; returns its version.

        Raises:
            BundleError: the bundle is refused; the running one stays.
        """
        # Loaded before it is installed, so a bundle whose models fail is never installed.
        candidate = BundleRecogniser.from_path(source, threads=self.threads)
        installed = self.store.install(source)
        # The store's copy has the same hashes; the models already in memory serve it.
        candidate.bundle = installed
        with self._lock:
            self._active = candidate
        logger.info("model bundle %s is now in use", installed.version)
        return installed.version

    def add_correction(
        self,
        image: npt.NDArray[np.uint8],
        box_xyxy: tuple[float, float, float, float],
        dish_id: str,
        *,
        names: dict[str, tuple[str, str]] | None = None,
    ) -> str:
        """Learn a cashier's confirmed correction: its crop becomes a reference of ``dish_id``.

        The running bundle is copied, the reference added, and the copy installed as a new
        version and swapped in, so the correction survives a restart and can be rolled back.
        Returns the new version.
        """
        active = self.active
        embedding = active.identifier.embed_boxes(image, np.array([box_xyxy], np.float32))[0]
        references = References()
        references.add(dish_id, embedding, reference_hash(image.tobytes(), box_xyxy))
        with tempfile.TemporaryDirectory(prefix=".correction-", dir=self.store.root) as tmp:
            copy = Path(tmp) / "bundle"
            shutil.copytree(active.bundle.path, copy)
            bundle = verify_bundle(copy)
            version = bump_version(bundle.version)
            while version in self.store.versions():
                version = bump_version(version)
            add_references(bundle, references, names=names, origin="cashier", version=version)
            return self.install(copy)

    def rollback(self) -> str:
        """Go back to the previous bundle; returns its version."""
        previous = self.store.rollback()
        loaded = BundleRecogniser(previous, threads=self.threads)
        with self._lock:
            self._active = loaded
        logger.info("rolled back to model bundle %s", previous.version)
        return previous.version
