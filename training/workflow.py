"""From a training run to the terminals: ``trayscan export``, ``publish`` and ``rollback``.

- **export** builds a verified bundle from a detector run: the run's best weights (exported to
  ONNX when that was not done yet) replace the detector of a *base* bundle (by default the one the
  terminals run now), whose identifier, gallery, thresholds and menu mapping are kept. With an
  identifier run as well, its embedding replaces the base's, and the gallery is rebuilt from a
  labelled dataset with the new embedding (a gallery is only meaningful with the embedding that
  made it). The new bundle gets the next version and a model card saying what changed.
- **publish** installs a bundle on a terminal: into a terminal's bundle store folder (taken at
  its next start), or onto the canteen's backend (``http(s)://...``), from where every terminal
  takes it at its next heartbeat, verifies it and swaps it in while running.
- **rollback** makes a store's previous bundle current again.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from training.bundle import append_to_card, select_diverse
from vision.bundle import (
    BundleStore,
    ModelBundle,
    bump_version,
    pack_bundle,
    verify_bundle,
    write_manifest,
)
from vision.datasets import read_dataset
from vision.gallery import Gallery
from vision.identifier import Embedder
from vision.references import references_from_dataset

logger = logging.getLogger(__name__)


class WorkflowError(RuntimeError):
    """A step of the workflow cannot be done as asked; the message says why."""


def _run_imgsz(run: Path) -> int:
    import yaml

    args_file = run / "args.yaml"
    if not args_file.exists():
        raise WorkflowError(f"{run} is not an ultralytics training run (no args.yaml)")
    args = yaml.safe_load(args_file.read_text(encoding="utf-8")) or {}
    return int(args.get("imgsz", 384))


def detector_onnx_of(run: Path, *, home: Path) -> tuple[Path, int]:
    """The ONNX detector of a training run (exported now when missing) and its input size."""
    imgsz = _run_imgsz(run)
    onnx = run / "weights" / "detector.onnx"
    best = run / "weights" / "best.pt"
    if not onnx.exists() or (best.exists() and best.stat().st_mtime > onnx.stat().st_mtime):
        if not best.exists():
            raise WorkflowError(f"{run} has no weights/best.pt: did the training finish an epoch?")
        from training.detector import export_detector

        onnx = export_detector(best, imgsz=imgsz, home=home)
    return onnx, imgsz


def export_bundle(
    run: Path,
    out: Path,
    *,
    home: Path,
    base: Path,
    version: str | None = None,
    identifier_run: Path | None = None,
    references: Path | None = None,
    references_format: str | None = None,
    max_per_dish: int = 16,
) -> ModelBundle:
    """Build a verified bundle at ``out`` from a detector run on top of ``base``.

    Raises:
        WorkflowError: the run or the identifier run is incomplete, or an identifier run is given
            without the references its gallery must be rebuilt from.
    """
    base_bundle = verify_bundle(base)
    onnx, imgsz = detector_onnx_of(run, home=home)
    if identifier_run is not None and references is None:
        raise WorkflowError(
            "a new identifier needs --references: the gallery must be re-embedded with it"
        )
    with tempfile.TemporaryDirectory(prefix="trayscan-export-") as scratch:
        staging = Path(scratch) / "bundle"
        shutil.copytree(base_bundle.path, staging)
        shutil.copyfile(onnx, staging / base_bundle.manifest.detector.file)
        fields = base_bundle.manifest.to_dict()
        fields.pop("files", None)
        fields.pop("created", None)
        fields["detector"]["imgsz"] = imgsz
        changes: dict[str, Any] = {
            "base_bundle": base_bundle.version,
            "detector_run": str(run),
            "detector_imgsz": imgsz,
            "detector_metrics": _best_metrics(run),
        }
        if identifier_run is not None:
            assert references is not None
            identifier = identifier_run / "identifier.onnx"
            if not identifier.exists():
                raise WorkflowError(f"{identifier_run} has no identifier.onnx")
            shutil.copyfile(identifier, staging / base_bundle.manifest.identifier.file)
            spec = base_bundle.manifest.identifier
            embedder = Embedder(
                staging / spec.file, input_size=spec.input_size, mean=spec.mean, std=spec.std
            )
            fields["identifier"]["embedding_dim"] = embedder.dim
            dataset = read_dataset(references, references_format)
            class_to_dish = {
                str(d.get("dataset_class")): str(d["id"])
                for d in base_bundle.dishes
                if d.get("dataset_class")
            }
            refs = references_from_dataset(dataset, embedder, class_to_dish=class_to_dish)
            gallery = Gallery(embedder.dim)
            for dish, embeddings in refs.embeddings.items():
                stacked = np.stack(embeddings)
                keep = select_diverse(stacked, max_per_dish)
                gallery.add(
                    dish, stacked[keep], [refs.hashes[dish][i] for i in keep], origin="dataset"
                )
            gallery.save(staging / base_bundle.manifest.gallery.file)
            report = identifier_run / "identifier-report.json"
            changes["identifier_run"] = str(identifier_run)
            changes["gallery_references"] = str(references)
            if report.exists():
                changes["identifier_report"] = json.loads(report.read_text(encoding="utf-8"))
        fields["version"] = version or bump_version(base_bundle.version)
        write_manifest(staging, fields)
        append_to_card(staging, f"Exported as {fields['version']} (trayscan export)", changes)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staging, out)
    bundle = verify_bundle(out)
    logger.info("bundle %s written to %s", bundle.version, out)
    return bundle


def _best_metrics(run: Path) -> dict[str, float]:
    from training.detector import read_best_metrics

    return read_best_metrics(run)


def publish(bundle: Path, terminal: str, *, admin_token: str | None = None) -> dict[str, Any]:
    """Install ``bundle`` on a terminal's store folder, or publish it on a backend URL.

    Raises:
        WorkflowError: the backend refused it or cannot be reached, or no admin token was given.
        BundleError: the bundle is not good (nothing is installed).
    """
    verified = verify_bundle(bundle)
    if not terminal.startswith(("http://", "https://")):
        store = BundleStore(Path(terminal))
        installed = store.install(verified.path)
        previous = store.previous()
        return {
            "installed": installed.version,
            "store": str(store.root),
            "previous": previous.version if previous else None,
            "note": "the terminal uses it from its next start",
        }
    import requests

    if not admin_token:
        raise WorkflowError("publishing to a backend needs its admin token (--admin-token-file)")
    url = terminal.rstrip("/") + "/v1/admin/bundles"
    try:
        answer = requests.post(
            url,
            data=pack_bundle(verified.path)[1],
            headers={
                "Authorization": f"Bearer {admin_token}",
                "Content-Type": "application/gzip",
            },
            timeout=60,
        )
    except requests.RequestException as exc:
        raise WorkflowError(f"backend {terminal} cannot be reached: {exc}") from exc
    if answer.status_code >= 400:
        raise WorkflowError(f"backend refused bundle {verified.version}: {answer.text[:300]}")
    payload: dict[str, Any] = answer.json()
    payload["note"] = "terminals take it at their next heartbeat"
    return payload


def rollback(store: Path) -> dict[str, Any]:
    """Make the previous bundle of a terminal's store current again."""
    bundle = BundleStore(store).rollback()
    return {"current": bundle.version, "store": str(store)}
