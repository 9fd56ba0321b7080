"""The two-stage recogniser on a tiny bundle: detection, identification, gallery growth without
retraining, evaluation, and swapping bundles while running."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.bundle import BundleError, BundleStore, verify_bundle
from vision.eval_runner import evaluate_bundle
from vision.gallery import Gallery
from vision.recogniser import BundleRecogniser, SwappableRecogniser
from vision.types import DishStatus, Frame

from .bundle_builders import BLUE, GREEN, RED, make_bundle, two_dish_image, write_yolo_dataset


def test_a_tray_is_detected_and_every_dish_named(tmp_path: Path) -> None:
    recogniser = BundleRecogniser.from_path(make_bundle(tmp_path / "b"), threads=1)
    tray = recogniser.recognise(Frame(two_dish_image(RED, GREEN), 0.0, 0))
    assert [d.dish_id for d in tray.dishes] == ["tomato", "greens"]
    assert all(d.status is DishStatus.SURE for d in tray.dishes)
    assert tray.model_version == "2026.11.26-1"
    assert tray.dishes[0].box_xyxy[2] <= 32.5  # the left box stays on the left half


def test_a_dish_not_in_the_gallery_is_unknown(tmp_path: Path) -> None:
    recogniser = BundleRecogniser.from_path(make_bundle(tmp_path / "b"), threads=1)
    tray = recogniser.recognise(Frame(two_dish_image(BLUE, GREEN), 0.0, 0))
    assert tray.dishes[0].status is DishStatus.UNKNOWN and tray.dishes[0].dish_id is None
    assert tray.dishes[1].dish_id == "greens"


def test_a_new_dish_from_five_photos_is_recognised_without_training(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        image = np.zeros((64, 64, 3), np.uint8)
        image[:] = (200 + i * 10, 10, 10)  # shades of blue
        cv2.imwrite(str(photos / f"p{i}.png"), image)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "terminal.cli",
            "gallery",
            "add",
            "--bundle",
            str(bundle),
            "--dish",
            "blueberry",
            "--name-zh",
            "蓝莓",
            "--photos",
            str(photos),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == {"blueberry": 5} and report["new_dishes"] == ["blueberry"]
    assert report["version"] == "2026.11.26-2"
    verified = verify_bundle(bundle)
    assert "blueberry" in verified.dish_ids
    tray = BundleRecogniser(verified, threads=1).recognise(Frame(two_dish_image(BLUE, RED), 0.0, 0))
    assert [d.dish_id for d in tray.dishes] == ["blueberry", "tomato"]


def test_gallery_add_from_a_dataset_and_eval(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", dishes=("tomato",))
    names = ["tomato", "greens", "blueberry"]
    train = write_yolo_dataset(tmp_path / "train", [("t1", RED, GREEN), ("t2", BLUE, RED)], names)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "terminal.cli",
            "gallery",
            "add",
            "--bundle",
            str(bundle),
            "--dataset",
            str(train),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["new_dishes"]) == ["blueberry", "greens"]
    test = write_yolo_dataset(
        tmp_path / "test", [("a", GREEN, BLUE), ("b", RED, GREEN), ("c", BLUE, BLUE)], names
    )
    scores = evaluate_bundle(bundle, test, threads=1)
    assert scores["n_images"] == 3 and scores["n_dishes"] == 6
    assert scores["dish_top1"] == 1.0 and scores["tray_exact"] == 1.0
    assert scores["detector_map50"] == 1.0 and scores["detector_recall_ceiling"] == 1.0
    assert scores["tray_exact_by_dishes"]["2"] == {"trays": 3, "tray_exact": 1.0}


def test_few_shot_eval_uses_the_dataset_as_a_new_menu(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", dishes=("tomato",))
    names = ["tomato", "greens", "blueberry"]
    trays = [(f"t{i}", [RED, GREEN, BLUE][i % 3], [GREEN, BLUE, RED][i % 3]) for i in range(6)]
    data = write_yolo_dataset(tmp_path / "d", trays, names)
    scores = evaluate_bundle(bundle, data, few_shot=1, threads=1)
    assert scores["few_shot"] == 1
    assert scores["n_images"] + scores["reference_images"] == 6
    assert scores["dish_top1"] == 1.0
    assert verify_bundle(bundle).version == "2026.11.26-1", "the bundle itself is untouched"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("gallery_dim", "mismatched"),
        ("tampered", "corrupt"),
        ("missing", "incomplete"),
        ("missing_class", "gallery dishes missing from classes.json: greens"),
    ],
)
def test_a_bad_bundle_is_refused_and_the_running_one_stays(
    tmp_path: Path, fault: str, message: str
) -> None:
    store = BundleStore(tmp_path / "store")
    store.install(make_bundle(tmp_path / "v1"))
    running = SwappableRecogniser(store, threads=1)
    bad = make_bundle(tmp_path / "v2", version="2026.11.26-2")
    if fault == "gallery_dim":
        gallery = Gallery(4)
        gallery.add("tomato", np.ones((1, 4), np.float32), ["h"])
        gallery.save(bad / "gallery.npz")
        from vision.bundle import write_manifest

        fields = json.loads((bad / "bundle.json").read_text())
        fields.pop("files")
        write_manifest(bad, fields)
    elif fault == "tampered":
        with (bad / "identifier.onnx").open("ab") as handle:
            handle.write(b"\0")
    elif fault == "missing_class":
        from vision.bundle import write_manifest

        classes = json.loads((bad / "classes.json").read_text())
        classes["dishes"] = [d for d in classes["dishes"] if d["id"] != "greens"]
        (bad / "classes.json").write_text(json.dumps(classes))
        fields = json.loads((bad / "bundle.json").read_text())
        fields.pop("files")
        write_manifest(bad, fields)
    else:
        (bad / "detector.onnx").unlink()
    with pytest.raises(BundleError, match=message):
        running.install(bad)
    assert running.model_version == "2026.11.26-1"
    tray = running.recognise(Frame(two_dish_image(), 0.0, 0))
    assert [d.dish_id for d in tray.dishes] == ["tomato", "greens"]


def test_swap_and_rollback_while_running(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    store.install(make_bundle(tmp_path / "v1"))
    running = SwappableRecogniser(store, threads=1)
    v2 = make_bundle(
        tmp_path / "v2", version="2026.11.26-2", dishes=("tomato", "greens", "blueberry")
    )
    assert running.install(v2) == "2026.11.26-2"
    assert (
        running.recognise(Frame(two_dish_image(BLUE, RED), 0.0, 0)).dishes[0].dish_id == "blueberry"
    )
    assert running.rollback() == "2026.11.26-1"
    assert (
        running.recognise(Frame(two_dish_image(BLUE, RED), 0.0, 0)).dishes[0].status
        is DishStatus.UNKNOWN
    )
    shutil.rmtree(tmp_path / "v2")


def test_a_cashier_correction_teaches_the_running_terminal(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    store.install(make_bundle(tmp_path / "v1"))
    running = SwappableRecogniser(store, threads=1)
    image = two_dish_image(BLUE, GREEN)
    first = running.recognise(Frame(image, 0.0, 0))
    assert first.dishes[0].status is DishStatus.UNKNOWN
    version = running.add_correction(
        image, first.dishes[0].box_xyxy, "blueberry", names={"blueberry": ("蓝莓", "Blueberry")}
    )
    assert version == "2026.11.26-2" and running.model_version == version
    again = running.recognise(Frame(image, 1.0, 1))
    assert again.dishes[0].dish_id == "blueberry" and again.dishes[0].status is DishStatus.SURE
    gallery = running.active.gallery
    assert gallery.origins[gallery.dish_ids.index("blueberry")] == "cashier"
    # The correction is installed, so it survives a restart, and it can be rolled back.
    assert SwappableRecogniser(store, threads=1).model_version == version
    assert running.rollback() == "2026.11.26-1"
