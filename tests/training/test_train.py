"""The data staff's slow path, run for real at toy size: train, export, compare, publish.

These need the ``train`` extra (torch, torchvision, ultralytics). Without it they are skipped,
except under CI (``$CI`` set), where they fail: CI must really train.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from terminal.cli import main
from vision.bundle import BundleStore, verify_bundle
from vision.recogniser import BundleRecogniser
from vision.sources import list_images, read_image

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "datasets" / "vn-canteen-trays-sample"
DEFAULT_BUNDLE = REPO / "assets" / "models" / "default"


def need_training() -> None:
    try:
        import torch  # noqa: F401
        import ultralytics  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the train extra is missing: {exc}")
        pytest.skip(f"the train extra is not installed ({exc})")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data import prepare_detector_dataset

    return prepare_detector_dataset(
        SAMPLE / "dataset.yaml", tmp_path_factory.mktemp("data"), val_fraction=0.3
    )


def test_two_epochs_at_tiny_size_give_a_bundle_that_loads_and_predicts(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_training()
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("cache: false\nworkers: 0\nmosaic: 0.0\n", encoding="utf-8")
    trained = run_cli(
        capsys,
        "train", "detector", "--data", str(tiny_dataset), "--runs", str(tmp_path / "runs"),
        "--name", "tiny", "--imgsz", "64", "--epochs", "2", "--batch", "4",
        "--overrides", str(overrides),
    )  # fmt: skip
    run = Path(str(trained["run"]))
    assert (run / "weights" / "best.pt").exists() and Path(str(trained["onnx"])).exists()

    exported = run_cli(
        capsys, "export", "--run", str(run), "--to", str(tmp_path / "bundle"),
        "--base", str(DEFAULT_BUNDLE), "--version", "2026.11.26-tiny",
    )  # fmt: skip
    bundle = verify_bundle(Path(str(exported["bundle"])))
    assert bundle.version == "2026.11.26-tiny"
    assert bundle.manifest.detector.imgsz == 64
    card = (bundle.path / bundle.manifest.model_card).read_text(encoding="utf-8")
    assert "Exported as 2026.11.26-tiny" in card and str(run) in card
    recogniser = BundleRecogniser(bundle)
    recognition = recogniser.recognise_image(read_image(list_images(SAMPLE / "images")[0]))
    assert recognition.tray.model_version == "2026.11.26-tiny"
    # Two epochs at 64 px find little, but what is found is named from the base gallery.
    assert all(d.dish_id is None or d.dish_id in bundle.dish_ids for d in recognition.tray.dishes)

    compared = run_cli(
        capsys, "compare", "--bundle", str(DEFAULT_BUNDLE), "--bundle", str(bundle.path),
        "--dataset", str(SAMPLE / "dataset.yaml"), "--limit", "4",
        "--plots", str(tmp_path / "plots"),
    )  # fmt: skip
    side = compared["side_by_side"]
    assert isinstance(side, dict) and len(side["tray_exact"]) == 2
    assert (tmp_path / "plots" / "pr_curve.png").stat().st_size > 1000

    store = tmp_path / "terminal-models"
    BundleStore(store).install(DEFAULT_BUNDLE)
    published = run_cli(capsys, "publish", str(bundle.path), "--terminal", str(store))
    assert published["installed"] == "2026.11.26-tiny"
    assert (
        run_cli(capsys, "rollback", "--store", str(store))["current"]
        == verify_bundle(DEFAULT_BUNDLE).version
    )


def test_identifier_training_resumes_and_reports_both_backbones(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    need_training()
    from training.identifier import train_identifier, yolo_crops
    from vision.labels import read_class_names

    names = read_class_names(SAMPLE / "dataset.yaml")
    crops = yolo_crops(list_images(SAMPLE / "images"), names)
    train, held_out = crops[::2], crops[1::2]
    first = train_identifier(
        train[:24], train[24:32], tmp_path / "id", home=REPO, epochs=2, batch=8, held_out=held_out
    )
    assert set(first.report) >= {"imagenet", "fine_tuned"}
    assert (tmp_path / "id" / "checkpoint.pt").exists()
    again = train_identifier(
        train[:24],
        train[24:32],
        tmp_path / "id",
        home=REPO,
        epochs=2,
        batch=8,
        held_out=held_out,
        resume=True,
    )
    # Nothing left to train: the resumed run goes straight to the end, with the same ImageNet
    # figures it measured the first time.
    assert again.report["imagenet"] == first.report["imagenet"]
    assert again.onnx.exists()


@pytest.mark.slow
def test_the_detector_learns(tiny_dataset: Path, tmp_path: Path) -> None:
    """Does it learn: the loss falls and mAP rises over a short schedule on the sample."""
    need_training()
    import csv

    from training.detector import train_detector

    run = train_detector(
        tiny_dataset, tmp_path / "runs", home=REPO, imgsz=256, epochs=40, batch=4,
        name="learns", export=False, overrides={"cache": False, "workers": 0},
    )  # fmt: skip
    with (run.run_dir / "results.csv").open(newline="") as handle:
        rows = [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    assert rows[-1]["train/box_loss"] < rows[0]["train/box_loss"]
    assert max(r["metrics/mAP50(B)"] for r in rows[-3:]) > rows[0]["metrics/mAP50(B)"]
