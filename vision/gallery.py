"""The gallery: reference embeddings of every menu item, matched by cosine similarity.

The gallery is what makes a new dish cheap (DESIGN.md, recogniser): a few confirmed photos of it
are embedded and added here, with no retraining, and every cashier correction can add one more.
Each reference keeps the SHA-256 of the image and box it came from, so the same photo is not added
twice and data staff can trace (and remove) a reference that turns out to be wrong.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from vision.types import Candidate, FloatArray, IntArray

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ORIGINS = ("dataset", "photos", "cashier")
MatchMode = Literal["prototype", "nearest"]

_REQUIRED_KEYS = ("format_version", "dim", "embeddings", "dish_ids", "source_hashes", "origins")


class GalleryError(RuntimeError):
    """A gallery file that cannot be used: missing, corrupt, truncated or of another version."""


def _normalised(vectors: npt.NDArray[np.floating]) -> FloatArray:
    """Rows scaled to unit length; zero rows stay zero rather than becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


class Gallery:
    """Reference embeddings with the menu item each one shows.

    Attributes:
        dim: embedding length.
        embeddings: ``(N, dim)`` float32, each row L2-normalised.
        dish_ids: the menu item id of each row.
        source_hashes: SHA-256 (hex) of the reference image and box of each row.
        origins: where each row came from: ``"dataset"``, ``"photos"`` or ``"cashier"``.

    Treat the attributes as read-only; change the gallery through its methods so the cached
    prototypes stay right.
    """

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError(f"gallery dimension must be positive, got {dim}")
        self.dim = dim
        self.embeddings: FloatArray = np.zeros((0, dim), dtype=np.float32)
        self.dish_ids: list[str] = []
        self.source_hashes: list[str] = []
        self.origins: list[str] = []
        self._cache: _MatchCache | None = None

    def __len__(self) -> int:
        return len(self.dish_ids)

    def __repr__(self) -> str:
        return f"Gallery(dim={self.dim}, references={len(self)}, dishes={len(self.dishes())})"

    def dishes(self) -> list[str]:
        """The menu item ids with at least one reference, sorted."""
        return sorted(set(self.dish_ids))

    def count(self, dish_id: str) -> int:
        """How many references ``dish_id`` has."""
        return self.dish_ids.count(dish_id)

    def add(
        self,
        dish_id: str,
        embeddings: npt.ArrayLike,
        source_hashes: Sequence[str],
        origin: str = "dataset",
    ) -> int:
        """Add references for ``dish_id``.

        A reference whose source hash this dish already has (or that repeats within the call) is
        skipped: the same photo twice would only pull the dish's prototype towards it.

        Args:
            dish_id: the menu item the references show.
            embeddings: ``(k, dim)`` embeddings; normalised here.
            source_hashes: ``k`` SHA-256 hex digests of the reference images and boxes.
            origin: ``"dataset"``, ``"photos"`` or ``"cashier"``.

        Returns:
            How many references were added.

        Raises:
            ValueError: wrong shapes, an unknown origin, or an embedding that is zero or not finite.
        """
        if not dish_id:
            raise ValueError("a gallery reference needs a dish id")
        if origin not in ORIGINS:
            raise ValueError(f"unknown gallery origin {origin!r}; expected one of {ORIGINS}")
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected (k, {self.dim}) embeddings, got shape {vectors.shape}")
        hashes = list(source_hashes)
        if len(hashes) != len(vectors):
            raise ValueError(f"{len(vectors)} embeddings but {len(hashes)} source hashes")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise ValueError(f"embeddings for {dish_id!r} include a zero or non-finite vector")

        known = {h for d, h in zip(self.dish_ids, self.source_hashes, strict=True) if d == dish_id}
        other_dishes = {
            h: d for d, h in zip(self.dish_ids, self.source_hashes, strict=True) if d != dish_id
        }
        rows: list[int] = []
        for row, source_hash in enumerate(hashes):
            if source_hash in known:
                continue
            if source_hash in other_dishes:
                # Not refused: a tray photo can hold two dishes, and only the box tells them apart,
                # but the same image+box named twice is a labelling mistake worth a look.
                logger.warning(
                    "source %s is already a reference of %r, now added to %r too",
                    source_hash[:12],
                    other_dishes[source_hash],
                    dish_id,
                )
            known.add(source_hash)
            rows.append(row)
        if rows:
            self.embeddings = np.concatenate([self.embeddings, _normalised(vectors[rows])])
            self.dish_ids.extend([dish_id] * len(rows))
            self.source_hashes.extend(hashes[row] for row in rows)
            self.origins.extend([origin] * len(rows))
            self._cache = None
        skipped = len(hashes) - len(rows)
        logger.info(
            "gallery: %d references added to %r (%d duplicates skipped)",
            len(rows),
            dish_id,
            skipped,
        )
        return len(rows)

    def _keep_rows(self, keep: npt.NDArray[np.bool_]) -> int:
        removed = int(len(keep) - keep.sum())
        if removed:
            self.embeddings = np.ascontiguousarray(self.embeddings[keep])
            self.dish_ids = [d for d, k in zip(self.dish_ids, keep, strict=True) if k]
            self.source_hashes = [h for h, k in zip(self.source_hashes, keep, strict=True) if k]
            self.origins = [o for o, k in zip(self.origins, keep, strict=True) if k]
            self._cache = None
        return removed

    def remove_dish(self, dish_id: str) -> int:
        """Remove every reference of ``dish_id``; returns how many were removed."""
        removed = self._keep_rows(np.array([d != dish_id for d in self.dish_ids], dtype=bool))
        logger.info("gallery: %d references of %r removed", removed, dish_id)
        return removed

    def remove_sources(self, hashes: Iterable[str]) -> int:
        """Remove every reference made from one of ``hashes``; returns how many were removed."""
        doomed = set(hashes)
        removed = self._keep_rows(
            np.array([h not in doomed for h in self.source_hashes], dtype=bool)
        )
        logger.info("gallery: %d references removed by source", removed)
        return removed

    def _match_cache(self) -> _MatchCache:
        if self._cache is None:
            self._cache = _MatchCache.build(self.embeddings, self.dish_ids)
        return self._cache

    def prototypes(self) -> tuple[list[str], FloatArray]:
        """Per dish (sorted) the mean of its references, re-normalised: ``(dishes, (D, dim))``.

        Cached until the gallery changes; the returned array is read-only.
        """
        cache = self._match_cache()
        return list(cache.dishes), cache.prototypes

    def match(
        self, queries: npt.ArrayLike, k: int = 5, mode: MatchMode = "prototype"
    ) -> list[list[Candidate]]:
        """The ``k`` best dishes for each query embedding, by cosine similarity.

        Args:
            queries: ``(M, dim)`` embeddings (normalised here).
            k: candidates per query, at most one per dish.
            mode: ``"prototype"`` scores each dish by its mean reference, which is steady when a
                dish has many references; ``"nearest"`` scores it by its closest reference, which
                recognises a dish that looks different from one day to the next.

        Returns:
            For each query its candidates, best first, scores clipped to 0..1 (a negative cosine
            just means "unlike"). Empty lists when the gallery is empty.
        """
        if mode not in ("prototype", "nearest"):
            raise ValueError(f"unknown match mode {mode!r}; expected 'prototype' or 'nearest'")
        query_array = np.asarray(queries, dtype=np.float32)
        if query_array.ndim != 2 or query_array.shape[1] != self.dim:
            raise ValueError(f"expected (M, {self.dim}) queries, got shape {query_array.shape}")
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(len(query_array))]
        cache = self._match_cache()
        unit_queries = _normalised(query_array)
        if mode == "prototype":
            scores = unit_queries @ cache.prototypes.T
        else:
            grouped = unit_queries @ self.embeddings[cache.grouped_rows].T
            scores = np.maximum.reduceat(grouped, cache.group_starts, axis=1)
        top = min(k, len(cache.dishes))
        results: list[list[Candidate]] = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:top]
            results.append(
                [Candidate(cache.dishes[i], float(np.clip(row[i], 0.0, 1.0))) for i in best]
            )
        return results

    def save(self, path: Path | str) -> None:
        """Write the gallery to ``path`` (.npz) atomically: a crash leaves the old file or the new.

        Embeddings are stored as float16: half the size, and well within what cosine matching
        can tell apart.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    format_version=np.int64(FORMAT_VERSION),
                    dim=np.int64(self.dim),
                    embeddings=self.embeddings.astype(np.float16),
                    dish_ids=np.array(self.dish_ids, dtype=np.str_),
                    source_hashes=np.array(self.source_hashes, dtype=np.str_),
                    origins=np.array(self.origins, dtype=np.str_),
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a bundle file is not
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        logger.info("gallery saved to %s: %r", path, self)

    @classmethod
    def load(cls, path: Path | str) -> Gallery:
        """Read a gallery written by :meth:`save`.

        Raises:
            GalleryError: the file is missing, corrupt, truncated, of another format version, or
                its arrays disagree; the message names the file.
        """
        path = Path(path)
        if not path.is_file():
            raise GalleryError(f"gallery file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [key for key in _REQUIRED_KEYS if key not in archive.files]
                if missing:
                    raise GalleryError(f"gallery file {path} lacks {', '.join(missing)}")
                version = int(archive["format_version"])
                if version != FORMAT_VERSION:
                    raise GalleryError(
                        f"gallery file {path} has format version {version}; this terminal reads "
                        f"version {FORMAT_VERSION}. Rebuild the gallery with matching tools."
                    )
                dim = int(archive["dim"])
                embeddings = np.asarray(archive["embeddings"], dtype=np.float32)
                dish_ids = [str(d) for d in archive["dish_ids"]]
                source_hashes = [str(h) for h in archive["source_hashes"]]
                origins = [str(o) for o in archive["origins"]]
        except GalleryError:
            raise
        except (
            OSError,
            EOFError,
            ValueError,
            TypeError,
            KeyError,
            zipfile.BadZipFile,
            zlib.error,
        ) as exc:
            # A truncated or overwritten file fails in many places inside numpy and zipfile.
            raise GalleryError(f"gallery file {path} is corrupt or truncated: {exc}") from exc

        if dim <= 0 or embeddings.ndim != 2 or embeddings.shape[1] != dim:
            raise GalleryError(
                f"gallery file {path} holds embeddings of shape {embeddings.shape} for dim {dim}"
            )
        lengths = {len(embeddings), len(dish_ids), len(source_hashes), len(origins)}
        if len(lengths) != 1:
            raise GalleryError(
                f"gallery file {path} disagrees with itself: {len(embeddings)} embeddings, "
                f"{len(dish_ids)} dish ids, {len(source_hashes)} hashes, {len(origins)} origins"
            )
        if not np.all(np.isfinite(embeddings)):
            raise GalleryError(f"gallery file {path} holds non-finite embeddings")
        unknown_origins = sorted(set(origins) - set(ORIGINS))
        if unknown_origins:
            raise GalleryError(f"gallery file {path} has unknown origins {unknown_origins}")

        gallery = cls(dim)
        gallery.embeddings = _normalised(embeddings)
        gallery.dish_ids = dish_ids
        gallery.source_hashes = source_hashes
        gallery.origins = origins
        logger.info("gallery loaded from %s: %r", path, gallery)
        return gallery


class _MatchCache:
    """What matching needs that only changes with the gallery: prototypes and rows by dish."""

    def __init__(
        self,
        dishes: list[str],
        prototypes: FloatArray,
        grouped_rows: IntArray,
        group_starts: IntArray,
    ) -> None:
        self.dishes = dishes
        self.prototypes = prototypes
        self.grouped_rows = grouped_rows
        self.group_starts = group_starts

    @classmethod
    def build(cls, embeddings: FloatArray, dish_ids: list[str]) -> _MatchCache:
        dishes = sorted(set(dish_ids))
        position = {dish: i for i, dish in enumerate(dishes)}
        dish_index = np.array([position[d] for d in dish_ids], dtype=np.int64)
        # Rows sorted by dish, so "nearest" takes a per-dish maximum with one reduceat.
        grouped_rows = np.argsort(dish_index, kind="stable").astype(np.int64)
        counts = np.bincount(dish_index, minlength=len(dishes))
        group_starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        if dishes:
            sums = np.add.reduceat(embeddings[grouped_rows], group_starts, axis=0)
        else:
            sums = np.zeros((0, embeddings.shape[1]), dtype=np.float32)
        prototypes = _normalised(sums)
        prototypes.setflags(write=False)
        return cls(dishes, prototypes, grouped_rows, group_starts)
