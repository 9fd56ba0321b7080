"""The gallery of reference embeddings: bookkeeping, matching, and its file on disk."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from vision.gallery import FORMAT_VERSION, Gallery, GalleryError


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def clusters(dim: int = 8, per_dish: int = 5, seed: int = 0) -> tuple[Gallery, np.ndarray]:
    """A gallery of three dishes, each a noisy cluster around a random centre, and the centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)).astype(np.float32)
    gallery = Gallery(dim)
    for index, dish in enumerate(["beef", "greens", "rice"]):
        refs = centres[index] + 0.2 * rng.normal(size=(per_dish, dim)).astype(np.float32)
        gallery.add(dish, refs, [sha(f"{dish}-{i}") for i in range(per_dish)])
    return gallery, centres


# ---------------------------------------------------------------- bookkeeping


def test_add_normalises_and_counts() -> None:
    gallery = Gallery(3)

    added = gallery.add("rice", [[3.0, 0.0, 4.0], [0.0, 2.0, 0.0]], [sha("a"), sha("b")])

    assert added == 2
    assert len(gallery) == 2
    assert gallery.count("rice") == 2
    assert gallery.count("soup") == 0
    np.testing.assert_allclose(gallery.embeddings, [[0.6, 0.0, 0.8], [0.0, 1.0, 0.0]], rtol=1e-6)
    assert gallery.origins == ["dataset", "dataset"]


@pytest.mark.parametrize(
    ("dish", "hashes", "added"),
    [
        pytest.param("rice", ["a"], 0, id="same-photo-same-dish-skipped"),
        pytest.param("rice", ["c", "c"], 1, id="repeated-within-call-skipped"),
        pytest.param("rice", ["a", "c"], 1, id="only-new-added"),
        pytest.param("soup", ["a"], 1, id="same-photo-other-dish-added"),
    ],
)
def test_duplicate_sources_are_skipped_per_dish(dish: str, hashes: list[str], added: int) -> None:
    gallery = Gallery(2)
    gallery.add("rice", [[1.0, 0.0], [0.0, 1.0]], [sha("a"), sha("b")])

    count = gallery.add(dish, np.ones((len(hashes), 2)), [sha(h) for h in hashes], origin="cashier")

    assert count == added
    assert len(gallery) == 2 + added
    assert gallery.origins.count("cashier") == added


@pytest.mark.parametrize(
    ("embeddings", "hashes", "origin"),
    [
        pytest.param(np.ones((2, 4)), ["a", "b"], "dataset", id="wrong-dim"),
        pytest.param(np.ones((2, 3)), ["a"], "dataset", id="hash-count"),
        pytest.param(np.zeros((1, 3)), ["a"], "dataset", id="zero-vector"),
        pytest.param(np.full((1, 3), np.nan), ["a"], "dataset", id="nan"),
        pytest.param(np.ones((1, 3)), ["a"], "internet", id="unknown-origin"),
    ],
)
def test_add_refuses_bad_references(embeddings: np.ndarray, hashes: list[str], origin: str) -> None:
    gallery = Gallery(3)

    with pytest.raises(ValueError):
        gallery.add("rice", embeddings, hashes, origin=origin)
    assert len(gallery) == 0


def test_remove_dish_and_sources() -> None:
    gallery, _ = clusters()

    assert gallery.dishes() == ["beef", "greens", "rice"]
    assert gallery.remove_dish("greens") == 5
    assert gallery.remove_dish("greens") == 0
    assert gallery.remove_sources([sha("rice-0"), sha("rice-1"), sha("unknown")]) == 2
    assert gallery.dishes() == ["beef", "rice"]
    assert (gallery.count("beef"), gallery.count("rice"), len(gallery)) == (5, 3, 8)
    assert len(gallery.embeddings) == len(gallery.source_hashes) == len(gallery.origins) == 8


def test_prototypes_follow_changes() -> None:
    gallery = Gallery(2)
    gallery.add("rice", [[1.0, 0.0], [0.0, 1.0]], [sha("a"), sha("b")])

    dishes, before = gallery.prototypes()
    gallery.add("rice", [[1.0, 0.0]], [sha("c")])
    _, after = gallery.prototypes()

    assert dishes == ["rice"]
    np.testing.assert_allclose(before, [[0.70710677, 0.70710677]], rtol=1e-6)
    np.testing.assert_allclose(after, [[2.0, 1.0]] / np.sqrt(5.0), rtol=1e-6)


# ---------------------------------------------------------------- matching


@pytest.mark.parametrize("mode", ["prototype", "nearest"])
def test_match_finds_each_cluster(mode: str) -> None:
    gallery, centres = clusters()

    matches = gallery.match(centres, k=5, mode=mode)  # type: ignore[arg-type]

    assert [m[0].dish_id for m in matches] == ["beef", "greens", "rice"]
    for candidates in matches:
        assert sorted(c.dish_id for c in candidates) == ["beef", "greens", "rice"]  # one per dish
        scores = [c.score for c in candidates]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize(("mode", "best"), [("prototype", "pork"), ("nearest", "noodles")])
def test_match_modes_differ_on_a_spread_out_dish(mode: str, best: str) -> None:
    # Noodles look different day to day: one reference matches the query exactly, but their mean
    # points elsewhere. Pork's references agree with each other and sit close to the query.
    gallery = Gallery(2)
    gallery.add("noodles", [[1.0, 0.0], [0.0, 1.0]], [sha("n1"), sha("n2")])
    gallery.add("pork", [[0.8, 0.6], [0.8, 0.6001]], [sha("p1"), sha("p2")])

    (candidates,) = gallery.match(np.array([[1.0, 0.05]]), mode=mode)  # type: ignore[arg-type]

    assert candidates[0].dish_id == best


def test_match_limits_candidates_to_k() -> None:
    gallery, centres = clusters()

    matches = gallery.match(centres[:1], k=2, mode="nearest")

    assert len(matches[0]) == 2


def test_empty_gallery_matches_nothing() -> None:
    assert Gallery(4).match(np.ones((2, 4))) == [[], []]


def test_match_refuses_queries_of_another_dimension() -> None:
    gallery, _ = clusters(dim=8)

    with pytest.raises(ValueError, match="8"):
        gallery.match(np.ones((1, 4)))


# ---------------------------------------------------------------- file


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    gallery, centres = clusters()
    gallery.add("soup", np.ones((1, 8)), [sha("soup-photo")], origin="photos")
    path = tmp_path / "bundle" / "gallery.npz"

    gallery.save(path)
    loaded = Gallery.load(path)

    assert loaded.dim == 8
    assert loaded.dish_ids == gallery.dish_ids
    assert loaded.source_hashes == gallery.source_hashes
    assert loaded.origins == gallery.origins
    np.testing.assert_allclose(loaded.embeddings, gallery.embeddings, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(loaded.embeddings, axis=1), 1.0, rtol=1e-5)
    assert [m[0].dish_id for m in loaded.match(centres)] == ["beef", "greens", "rice"]
    assert [p.name for p in path.parent.iterdir()] == ["gallery.npz"]  # no temporary left over


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "gallery.npz"
    clusters()[0].save(path)
    smaller = Gallery(8)
    smaller.add("rice", np.ones((1, 8)), [sha("x")])

    smaller.save(path)

    assert Gallery.load(path).dishes() == ["rice"]


def test_empty_gallery_round_trips(tmp_path: Path) -> None:
    Gallery(16).save(tmp_path / "empty.npz")

    loaded = Gallery.load(tmp_path / "empty.npz")

    assert (loaded.dim, len(loaded)) == (16, 0)


def write_npz(path: Path, **overrides: object) -> Path:
    arrays: dict[str, object] = {
        "format_version": np.int64(FORMAT_VERSION),
        "dim": np.int64(2),
        "embeddings": np.ones((2, 2), np.float16),
        "dish_ids": np.array(["rice", "soup"]),
        "source_hashes": np.array([sha("a"), sha("b")]),
        "origins": np.array(["dataset", "dataset"]),
    }
    arrays.update(overrides)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"format_version": np.int64(99)}, "version 99", id="wrong-version"),
        pytest.param({"dish_ids": np.array(["rice"])}, "1 dish ids", id="length-mismatch"),
        pytest.param({"dim": np.int64(3)}, "dim 3", id="dim-mismatch"),
        pytest.param({"origins": np.array(["dataset", "web"])}, "web", id="unknown-origin"),
        pytest.param({"dish_ids": np.array([{"a": 1}, 2], dtype=object)}, "corrupt", id="pickle"),
    ],
)
def test_load_refuses_an_inconsistent_file(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    path = write_npz(tmp_path / "gallery.npz", **overrides)

    with pytest.raises(GalleryError, match=message):
        Gallery.load(path)


def test_load_accepts_the_hand_written_reference_file(tmp_path: Path) -> None:
    # Guards the test above: its base file must be valid, or every refusal would be for nothing.
    assert Gallery.load(write_npz(tmp_path / "gallery.npz")).dishes() == ["rice", "soup"]


@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "empty", "missing"])
def test_load_refuses_a_damaged_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "gallery.npz"
    clusters()[0].save(path)
    data = path.read_bytes()
    if damage == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(len(data)))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()

    with pytest.raises(GalleryError, match=re.escape(str(path))):
        Gallery.load(path)
