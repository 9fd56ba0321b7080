"""The model bundle: one versioned folder holding everything a terminal needs to recognise dishes.

A bundle is a folder with a manifest (``bundle.json``), the detector and identifier ONNX files, the
gallery of reference embeddings, the class/menu mapping (``classes.json``) and a model card. The
manifest lists the SHA-256 of every other file, so a terminal can refuse a bundle that arrived
incomplete or corrupt *before* it swaps it in, and keep running on the one it has.

This module only checks files; loading the ONNX models and the gallery is the recogniser's job,
so verifying a bundle stays cheap and never needs onnxruntime.

On a terminal, :class:`BundleStore` keeps the installed bundles::

    root/versions/<version>/...   one folder per installed bundle
    root/current  -> versions/<v> the bundle the recogniser loads
    root/previous -> versions/<u> what ``rollback`` returns to
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = "trayscan-bundle/1"
"""The manifest format this terminal reads; a different one is refused as mismatched."""

MANIFEST_NAME = "bundle.json"

# Version strings become folder names under versions/, so they must be safe as one path component.
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_BUILD_COUNTER_RE = re.compile(r"^(?P<base>.+)-(?P<counter>\d+)$")
_CHUNK_BYTES = 1 << 20


class BundleError(Exception):
    """A model bundle that cannot be used; the message names the bundle folder and the file or key.

    The first word says what a technician should do: ``incomplete`` (copy the bundle again),
    ``corrupt`` (a file changed after publishing), ``mismatched`` (a bundle for another software
    version), or ``invalid`` (the manifest or class list is wrong and must be republished).
    """


@dataclass(frozen=True)
class DetectorSpec:
    """The dish detector: its ONNX file, input size and post-processing settings.

    Attributes:
        file: ONNX file name, relative to the bundle folder.
        imgsz: square input size in pixels the model was exported for.
        conf: minimum detector confidence of a kept box.
        iou: IoU above which non-maximum suppression drops the weaker box.
        containment: fraction of a box inside another above which the inner one is dropped.
        classes: the detector's class names (one, ``"dish"``, for a class-agnostic model).
    """

    file: str
    imgsz: int
    conf: float
    iou: float
    containment: float
    classes: tuple[str, ...]


@dataclass(frozen=True)
class IdentifierSpec:
    """The dish identifier: its ONNX file and the preprocessing its embeddings need.

    Attributes:
        file: ONNX file name, relative to the bundle folder.
        input_size: square crop size in pixels.
        mean: per-channel RGB mean subtracted after scaling to 0..1.
        std: per-channel RGB standard deviation divided by after the mean.
        embedding_dim: length of one embedding vector.
    """

    file: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embedding_dim: int


@dataclass(frozen=True)
class GallerySpec:
    """The gallery of reference embeddings and how it is matched (e.g. ``"prototype"``)."""

    file: str
    mode: str


@dataclass(frozen=True)
class Thresholds:
    """When a dish is called unknown (best score below) or unsure (top two closer than margin)."""

    unknown_below: float
    unsure_margin: float


@dataclass(frozen=True)
class BundleManifest:
    """The parsed, validated contents of ``bundle.json``.

    Attributes:
        format: manifest format, :data:`BUNDLE_FORMAT`.
        version: the bundle's version, also its folder name on a terminal.
        created: when the bundle was published, ISO 8601 as written in the manifest.
        detector: the detector model and its settings.
        identifier: the identifier model and its preprocessing.
        gallery: the reference embeddings file.
        thresholds: unknown and unsure decision thresholds.
        classes_file: the class/menu mapping file name.
        model_card: the model card file name.
        files: relative file name -> SHA-256 hex digest, for every file except ``bundle.json``.
    """

    format: str
    version: str
    created: str
    detector: DetectorSpec
    identifier: IdentifierSpec
    gallery: GallerySpec
    thresholds: Thresholds
    classes_file: str
    model_card: str
    files: Mapping[str, str]

    @classmethod
    def from_dict(cls, data: Any, where: str = MANIFEST_NAME) -> BundleManifest:
        """Parse and validate a manifest as loaded from JSON.

        Args:
            data: the decoded JSON document.
            where: how to name the manifest in error messages (its path).

        Raises:
            BundleError: unknown format (``mismatched``) or a missing or wrongly typed key
                (``invalid``), naming the key, e.g. ``detector.imgsz``.
        """
        root = _Fields(data, where, "")
        fmt = root.text("format")
        if fmt != BUNDLE_FORMAT:
            raise BundleError(
                f"mismatched: {where}: format {fmt!r} is not one this terminal reads "
                f"({BUNDLE_FORMAT!r}); install a bundle published for this software version"
            )
        version = root.text("version")
        if not _VERSION_RE.match(version):
            raise BundleError(
                f"invalid: {where}: key 'version' {version!r} must be 1-64 letters, digits, "
                "'.', '_', '+' or '-', starting with a letter or digit"
            )
        created = root.text("created")
        try:
            datetime.fromisoformat(created)
        except ValueError:
            raise BundleError(
                f"invalid: {where}: key 'created' {created!r} is not an ISO 8601 date and time"
            ) from None

        det = root.section("detector")
        detector = DetectorSpec(
            file=det.file_name("file"),
            imgsz=det.integer("imgsz", minimum=1),
            conf=det.number("conf", 0.0, 1.0),
            iou=det.number("iou", 0.0, 1.0),
            containment=det.number("containment", 0.0, 1.0),
            classes=det.text_list("classes"),
        )
        ide = root.section("identifier")
        identifier = IdentifierSpec(
            file=ide.file_name("file"),
            input_size=ide.integer("input_size", minimum=1),
            mean=ide.triple("mean"),
            std=ide.triple("std", positive=True),
            embedding_dim=ide.integer("embedding_dim", minimum=1),
        )
        gal = root.section("gallery")
        gallery = GallerySpec(file=gal.file_name("file"), mode=gal.text("mode"))
        thr = root.section("thresholds")
        thresholds = Thresholds(
            unknown_below=thr.number("unknown_below", 0.0, 1.0),
            unsure_margin=thr.number("unsure_margin", 0.0, 1.0),
        )
        return cls(
            format=fmt,
            version=version,
            created=created,
            detector=detector,
            identifier=identifier,
            gallery=gallery,
            thresholds=thresholds,
            classes_file=root.file_name("classes_file"),
            model_card=root.file_name("model_card"),
            files=root.digests("files"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict, in the layout of ``bundle.json``."""
        return {
            "format": self.format,
            "version": self.version,
            "created": self.created,
            "detector": {
                "file": self.detector.file,
                "imgsz": self.detector.imgsz,
                "conf": self.detector.conf,
                "iou": self.detector.iou,
                "containment": self.detector.containment,
                "classes": list(self.detector.classes),
            },
            "identifier": {
                "file": self.identifier.file,
                "input_size": self.identifier.input_size,
                "mean": list(self.identifier.mean),
                "std": list(self.identifier.std),
                "embedding_dim": self.identifier.embedding_dim,
            },
            "gallery": {"file": self.gallery.file, "mode": self.gallery.mode},
            "thresholds": {
                "unknown_below": self.thresholds.unknown_below,
                "unsure_margin": self.thresholds.unsure_margin,
            },
            "classes_file": self.classes_file,
            "model_card": self.model_card,
            "files": dict(sorted(self.files.items())),
        }

    def referenced_files(self) -> dict[str, str]:
        """Manifest key -> file name, for every file some part of the terminal opens."""
        return {
            "detector.file": self.detector.file,
            "identifier.file": self.identifier.file,
            "gallery.file": self.gallery.file,
            "classes_file": self.classes_file,
            "model_card": self.model_card,
        }


@dataclass(frozen=True)
class ModelBundle:
    """A verified bundle: where it is, its manifest, and its dishes from ``classes.json``.

    Attributes:
        path: the bundle folder.
        manifest: the parsed ``bundle.json``.
        dishes: the entries of ``classes.json``'s ``dishes`` list, each with at least an ``id``.
    """

    path: Path
    manifest: BundleManifest
    dishes: list[dict[str, Any]]

    @property
    def version(self) -> str:
        """The bundle's version string."""
        return self.manifest.version

    @property
    def dish_ids(self) -> list[str]:
        """The dish ids of the class/menu mapping, in file order."""
        return [str(dish["id"]) for dish in self.dishes]

    def path_of(self, name: str) -> Path:
        """The full path of a file of this bundle, e.g. ``path_of(manifest.detector.file)``.

        Raises:
            BundleError: ``name`` is not one of the files the manifest lists.
        """
        if name not in self.manifest.files:
            raise BundleError(
                f"bundle {self.path}: {name!r} is not listed in {MANIFEST_NAME} 'files'"
            )
        return self.path / name


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks so large models need little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path, manifest_fields: Mapping[str, Any]) -> BundleManifest:
    """Hash every file of a bundle folder and write its ``bundle.json`` atomically.

    ``files`` is computed here (any value in ``manifest_fields`` is replaced); ``format``
    defaults to :data:`BUNDLE_FORMAT` and ``created`` to now, in UTC.

    Args:
        folder: the bundle folder, holding every file the manifest refers to.
        manifest_fields: the other manifest keys (version, detector, identifier, ...).

    Returns:
        The manifest as written.

    Raises:
        BundleError: the fields are invalid, or a file they refer to is not in the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"incomplete: model bundle folder {folder} does not exist")
    fields = dict(manifest_fields)
    fields.setdefault("format", BUNDLE_FORMAT)
    fields.setdefault("created", datetime.now().astimezone().isoformat(timespec="seconds"))
    fields["files"] = {name: sha256_file(folder / name) for name in _bundle_files(folder)}
    where = str(folder / MANIFEST_NAME)
    manifest = BundleManifest.from_dict(fields, where)
    _check_references(manifest, where)

    text = json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n"
    # A half-written manifest would make a good bundle look corrupt; write aside, then rename.
    tmp = folder / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    try:
        with tmp.open("w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, folder / MANIFEST_NAME)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %s for bundle %s (%d files)", MANIFEST_NAME, folder, len(manifest.files))
    return manifest


def verify_bundle(folder: Path, expected_version: str | None = None) -> ModelBundle:
    """Check a bundle folder is complete and unchanged since it was published.

    Checks that ``bundle.json`` parses and has a known format, that every listed file exists
    with the listed SHA-256, that every file the manifest refers to is listed, and that
    ``classes.json`` is a valid dish list with unique ids. The ONNX models are not loaded.

    Args:
        folder: the bundle folder.
        expected_version: when given, the manifest's version must equal it (a store's folder
            name, say).

    Returns:
        The verified bundle.

    Raises:
        BundleError: naming the folder and the file or key; the message starts with
            ``incomplete``, ``corrupt``, ``mismatched`` or ``invalid``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"incomplete: model bundle folder {folder} does not exist")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"incomplete: bundle {folder} has no {MANIFEST_NAME}")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"corrupt: {manifest_path} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"corrupt: cannot read {manifest_path}: {exc}") from None
    manifest = BundleManifest.from_dict(data, str(manifest_path))
    if expected_version is not None and manifest.version != expected_version:
        raise BundleError(
            f"mismatched: {manifest_path} says version {manifest.version!r}, "
            f"expected {expected_version!r}"
        )
    _check_references(manifest, str(manifest_path))

    for name, expected in sorted(manifest.files.items()):
        path = folder / name
        if not path.is_file():
            raise BundleError(f"incomplete: bundle {folder} is missing {name}")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"corrupt: bundle {folder}: {name} sha256 {actual} expected {expected}"
            )
    unlisted = sorted(set(_bundle_files(folder)) - set(manifest.files))
    if unlisted:
        # Nothing reads unlisted files, so they are harmless, but worth a technician's look.
        logger.warning("bundle %s has files not in its manifest: %s", folder, ", ".join(unlisted))

    dishes = _read_classes(folder / manifest.classes_file)
    logger.debug("verified bundle %s version %s", folder, manifest.version)
    return ModelBundle(path=folder, manifest=manifest, dishes=dishes)


def bump_version(version: str) -> str:
    """The next version of a bundle whose gallery (or anything else) changed.

    A trailing build counter is incremented (``"2026.11.26-1"`` -> ``"2026.11.26-2"``); any other
    version gets one (``"2026.11.26"`` -> ``"2026.11.26-1"``). Write dates with dots: in
    ``"2026-11-26"`` the day would be taken for a counter.

    Raises:
        ValueError: an empty version.
    """
    if not version:
        raise ValueError("cannot bump an empty version")
    match = _BUILD_COUNTER_RE.match(version)
    if match is None:
        return f"{version}-1"
    return f"{match['base']}-{int(match['counter']) + 1}"


class BundleStore:
    """The bundles installed on a terminal, with an atomic switch and one step of rollback.

    Args:
        root: the store folder; created on the first install.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.current_link = self.root / "current"
        self.previous_link = self.root / "previous"

    def versions(self) -> list[str]:
        """The installed versions, oldest-looking first (numbers in versions compare as numbers)."""
        if not self.versions_dir.is_dir():
            return []
        names = [
            entry.name
            for entry in self.versions_dir.iterdir()
            if entry.is_dir() and not entry.name.startswith(".")
        ]
        return sorted(names, key=_natural_key)

    def current(self) -> ModelBundle | None:
        """The current bundle, verified, or None when nothing is installed.

        Raises:
            BundleError: the current bundle is missing or damaged (``rollback`` may help).
        """
        return self._linked(self.current_link)

    def previous(self) -> ModelBundle | None:
        """The bundle ``rollback`` would return to, verified, or None when there is none."""
        return self._linked(self.previous_link)

    def install(self, source: Path) -> ModelBundle:
        """Verify a bundle, copy it into the store and make it current.

        The source is verified before anything is touched, so a bad bundle is refused and the
        current one stays current. The copy is verified again before the switch. The old current
        bundle becomes the previous one.

        Args:
            source: a bundle folder, e.g. as unpacked from a download.

        Returns:
            The installed bundle, now current.

        Raises:
            BundleError: the source is not a good bundle, or the store already holds a different
                bundle under the same version.
        """
        bundle = verify_bundle(Path(source))
        version = bundle.version
        target = self.versions_dir / version
        if target.exists():
            self._check_same_bundle(target, bundle)
            logger.info("bundle %s is already installed at %s", version, target)
        else:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            # Copy beside the target and rename, so versions/<v> never holds half a bundle.
            staging = self.versions_dir / f".incoming-{version}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                shutil.copytree(bundle.path, staging)
                verify_bundle(staging, expected_version=version)
                os.rename(staging, target)
            except OSError as exc:
                raise BundleError(f"cannot copy bundle {bundle.path} to {target}: {exc}") from exc
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        installed = verify_bundle(target, expected_version=version)

        old = self._link_target(self.current_link)
        if old != version:
            self._point(self.current_link, version)
            if old is not None:
                self._point(self.previous_link, old)
            logger.info("bundle %s is now current (previous: %s)", version, old)
        return installed

    def rollback(self) -> ModelBundle:
        """Make the previous bundle current again; the current one becomes the previous.

        Raises:
            BundleError: there is no previous bundle, or it is damaged (nothing is switched).
        """
        previous = self._link_target(self.previous_link)
        if previous is None:
            raise BundleError(f"no previous bundle to roll back to in {self.root}")
        bundle = verify_bundle(self.versions_dir / previous, expected_version=previous)
        current = self._link_target(self.current_link)
        self._point(self.current_link, previous)
        if current is not None:
            self._point(self.previous_link, current)
        else:
            self.previous_link.unlink(missing_ok=True)
        logger.info("rolled back to bundle %s (was %s)", previous, current)
        return bundle

    def _linked(self, link: Path) -> ModelBundle | None:
        version = self._link_target(link)
        if version is None:
            return None
        return verify_bundle(self.versions_dir / version, expected_version=version)

    def _link_target(self, link: Path) -> str | None:
        """The version a store link points to, or None when the link does not exist."""
        if not link.is_symlink():
            if link.exists():
                raise BundleError(f"invalid: {link} should be a symlink into {self.versions_dir}")
            return None
        return PurePosixPath(os.readlink(link)).name

    def _point(self, link: Path, version: str) -> None:
        # A relative target keeps the store working if its root is moved; os.replace of a fresh
        # symlink switches in one step, so a reader sees the old bundle or the new, never neither.
        tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(f"{self.versions_dir.name}/{version}", tmp)
        os.replace(tmp, link)

    def _check_same_bundle(self, target: Path, bundle: ModelBundle) -> None:
        try:
            existing = verify_bundle(target, expected_version=bundle.version)
        except BundleError as exc:
            raise BundleError(
                f"{target} already exists and is not a good bundle ({exc}); "
                "remove it by hand before installing this version again"
            ) from exc
        if dict(existing.manifest.files) != dict(bundle.manifest.files):
            raise BundleError(
                f"mismatched: {target} already holds a different bundle with version "
                f"{bundle.version!r}; publish the new one under a new version"
            )


class _Fields:
    """Typed access to one JSON object of the manifest, with errors naming the dotted key."""

    def __init__(self, data: Any, where: str, prefix: str) -> None:
        if not isinstance(data, dict):
            what = f"key {prefix.rstrip('.')!r}" if prefix else "the document"
            raise BundleError(f"invalid: {where}: {what} must be a JSON object")
        self.data: dict[str, Any] = data
        self.where = where
        self.prefix = prefix

    def _fail(self, key: str, problem: str) -> BundleError:
        return BundleError(f"invalid: {self.where}: key '{self.prefix}{key}' {problem}")

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise self._fail(key, "is missing")
        return self.data[key]

    def section(self, key: str) -> _Fields:
        return _Fields(self._get(key), self.where, f"{self.prefix}{key}.")

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def file_name(self, key: str) -> str:
        value = self.text(key)
        if not _is_safe_relative(value):
            raise self._fail(key, f"must be a file name inside the bundle, got {value!r}")
        return value

    def integer(self, key: str, minimum: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._fail(key, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, key: str, low: float, high: float) -> float:
        value = self._get(key)
        if not _is_number(value) or not low <= value <= high:
            raise self._fail(key, f"must be a number from {low} to {high}, got {value!r}")
        return float(value)

    def triple(self, key: str, positive: bool = False) -> tuple[float, float, float]:
        value = self._get(key)
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(_is_number(v) and (v > 0 or not positive) for v in value)
        ):
            kind = "positive numbers" if positive else "numbers"
            raise self._fail(key, f"must be a list of 3 {kind}, got {value!r}")
        return (float(value[0]), float(value[1]), float(value[2]))

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self._fail(key, f"must be a non-empty list of strings, got {value!r}")
        return tuple(value)

    def digests(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self._fail(key, "must be an object of file name -> sha256")
        for name, digest in value.items():
            if not _is_safe_relative(name):
                raise self._fail(f"{key}.{name}", "is not a file name inside the bundle")
            if not isinstance(digest, str) or not _SHA256_RE.match(digest):
                raise self._fail(f"{key}.{name}", f"must be a sha256 hex digest, got {digest!r}")
        return dict(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_safe_relative(name: str) -> bool:
    """A relative path that stays inside the bundle folder (no absolute path, no ``..``)."""
    if not name or "\\" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name == path.as_posix()


def _bundle_files(folder: Path) -> list[str]:
    """Every file under a bundle folder as a relative POSIX name, except the manifest."""
    names = []
    for dirpath, _dirnames, filenames in os.walk(folder):
        for filename in filenames:
            rel = (Path(dirpath) / filename).relative_to(folder).as_posix()
            # Our own half-written manifests are not part of the bundle.
            if rel != MANIFEST_NAME and not rel.startswith(f".{MANIFEST_NAME}.tmp"):
                names.append(rel)
    return sorted(names)


def _check_references(manifest: BundleManifest, where: str) -> None:
    for key, name in manifest.referenced_files().items():
        if name not in manifest.files:
            raise BundleError(
                f"incomplete: {where}: {key} {name!r} is not listed in 'files' "
                "(the file is missing from the bundle)"
            )


def _read_classes(path: Path) -> list[dict[str, Any]]:
    """Read and check ``classes.json``: ``{"dishes": [{"id": ..., "name_zh": ..., ...}]}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"invalid: {path} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"invalid: cannot read {path}: {exc}") from None
    dishes = data.get("dishes") if isinstance(data, dict) else None
    if not isinstance(dishes, list) or not dishes:
        raise BundleError(f"invalid: {path}: key 'dishes' must be a non-empty list")
    seen: dict[str, int] = {}
    for index, dish in enumerate(dishes):
        if not isinstance(dish, dict):
            raise BundleError(f"invalid: {path}: dishes[{index}] must be an object")
        dish_id = dish.get("id")
        if not isinstance(dish_id, str) or not dish_id:
            raise BundleError(
                f"invalid: {path}: dishes[{index}].id must be a non-empty string, got {dish_id!r}"
            )
        for key in ("name_zh", "name_en"):
            if key in dish and not isinstance(dish[key], str):
                raise BundleError(f"invalid: {path}: dishes[{index}].{key} must be a string")
        if dish_id in seen:
            raise BundleError(
                f"invalid: {path}: dishes[{index}].id {dish_id!r} duplicates "
                f"dishes[{seen[dish_id]}].id"
            )
        seen[dish_id] = index
    return dishes


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key comparing digit runs as numbers, so ``-10`` comes after ``-9``."""
    return [
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part
    ]


def pack_bundle(folder: Path) -> tuple[str, bytes]:
    """Verify a bundle folder and pack it as a reproducible tar.gz, files at the top level.

    The same folder always gives the same bytes (no owners, no times), so the archive's SHA-256
    names the bundle. This is what a backend stores and a terminal downloads.

    Returns:
        The bundle's version and the archive's bytes.

    Raises:
        BundleError: the folder is not a valid bundle.
    """
    bundle = verify_bundle(folder)
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return bundle.version, buffer.getvalue()
