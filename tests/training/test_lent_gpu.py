"""Training on a lent GPU: the data laid out for the machine, the detector chosen there, and the
results brought back in parts the device tool accepts."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml

from training import lent_gpu
from training.lent_gpu import choose_detector, detector_data, pack_results, unpack

from .test_train import need_training


def detector_run(work: Path, size: int, map50: list[float], weights: bool = True) -> Path:
    run = work / "train" / f"gpu-{size}"
    (run / "weights").mkdir(parents=True)
    rows = "".join(
        f"{i + 1},{m},{m / 2}\n" for i, m in enumerate(map50)
    )  # mAP50-95 follows mAP50: the best epoch is the best at both
    (run / "results.csv").write_text(
        "epoch,metrics/mAP50(B),metrics/mAP50-95(B)\n" + rows, encoding="utf-8"
    )
    (run / "args.yaml").write_text(yaml.safe_dump({"imgsz": size}), encoding="utf-8")
    if weights:
        (run / "weights" / "best.pt").write_bytes(b"weights of " + str(size).encode())
    return run


def test_the_larger_detector_is_chosen_only_when_it_is_clearly_better(tmp_path: Path) -> None:
    detector_run(tmp_path / "a", 384, [0.50, 0.62])
    detector_run(tmp_path / "a", 512, [0.55, 0.625])  # better by 0.005: not worth its latency
    assert choose_detector(tmp_path / "a") == 384
    detector_run(tmp_path / "b", 384, [0.50, 0.62])
    detector_run(tmp_path / "b", 512, [0.55, 0.64])
    assert choose_detector(tmp_path / "b") == 512


def test_a_detector_run_that_left_no_weights_is_not_chosen(tmp_path: Path) -> None:
    detector_run(tmp_path, 384, [0.40])
    detector_run(tmp_path, 512, [0.70], weights=False)  # killed before its first best epoch
    assert choose_detector(tmp_path) == 384
    assert choose_detector(tmp_path / "nothing") is None


def test_detector_data_links_the_split_and_keeps_the_held_out_photos_out_of_selection(
    tmp_path: Path,
) -> None:
    stage = tmp_path / "stage"
    images = stage / "vn" / "train" / "images"
    images.mkdir(parents=True)
    split = {"train": ["a.jpg", "b.jpg"], "val": ["c.jpg"]}
    for part, names in split.items():
        labels = stage / "vn-dish" / part / "labels"
        labels.mkdir(parents=True)
        for name in names:
            (images / name).write_bytes(b"jpeg " + name.encode())
            (labels / name.replace(".jpg", ".txt")).write_text("0 0.5 0.5 0.2 0.2\n")
    (stage / "vn-dish" / "split.json").write_text(json.dumps(split), encoding="utf-8")

    selection, final = detector_data(stage, tmp_path / "work")

    chosen = yaml.safe_load(selection.read_text(encoding="utf-8"))
    everything = yaml.safe_load(final.read_text(encoding="utf-8"))
    root = Path(chosen["path"])
    assert sorted(p.name for p in (root / chosen["train"]).iterdir()) == ["a.jpg", "b.jpg"]
    assert sorted(p.name for p in (root / chosen["val"]).iterdir()) == ["c.jpg"]
    assert everything["train"] == ["train/images", "val/images"]
    assert (root / "val" / "images" / "c.jpg").read_bytes() == b"jpeg c.jpg"
    assert (root / "val" / "labels" / "c.txt").exists()
    assert chosen["names"] == ["dish"]


def test_results_come_back_in_parts_that_join_into_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    detector_run(work, 384, [0.6])
    final = work / "train" / "gpu-384-final"
    (final / "weights").mkdir(parents=True)
    (final / "weights" / "last.pt").write_bytes(bytes(range(256)) * 40)
    (final / "args.yaml").write_text("epochs: 3\n", encoding="utf-8")
    detector_run(work, 512, [0.5])
    identifier = work / "identifier-gpu-e32"
    identifier.mkdir()
    (identifier / "identifier.pt").write_bytes(b"\x00" * 5000)
    (identifier / "identifier-report.json").write_text("{}", encoding="utf-8")
    (work / "logs").mkdir()
    (work / "logs" / "gpu-384.log").write_text("epoch 1\n", encoding="utf-8")
    (work / "lent-gpu-report.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(lent_gpu, "PART_BYTES", 1000)

    parts = pack_results(work, tmp_path / "out", chosen=384)

    assert len(parts) > 1 and all(p.stat().st_size <= 1000 for p in parts)
    joined = tmp_path / "joined.tar.gz"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        names = set(tar.getnames())
    assert {
        "train/gpu-384/weights/best.pt",
        "train/gpu-384-final/weights/last.pt",
        "identifier-gpu-e32/identifier.pt",
        "lent-gpu/logs/gpu-384.log",
        "lent-gpu/lent-gpu-report.json",
    } <= names
    # The run not chosen comes back as its epoch table, without weights.
    assert "train/gpu-512/results.csv" in names
    assert "train/gpu-512/weights/best.pt" not in names


def test_unpacked_detector_runs_land_where_the_recipe_reuses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    detector_run(work, 384, [0.6])
    final = work / "train" / "gpu-384-final" / "weights"
    final.mkdir(parents=True)
    (final / "last.pt").write_bytes(b"final weights")
    (work / "lent-gpu-report.json").write_text('{"chosen_size": 384}', encoding="utf-8")
    monkeypatch.setattr(lent_gpu, "PART_BYTES", 300)
    pack_results(work, tmp_path / "parts", chosen=384)
    runs = tmp_path / "runs"

    # No identifier in these parts: nothing to export or measure, so no data set is needed.
    assert unpack(tmp_path / "parts", runs, tmp_path / "no-thali", tmp_path) == []

    assert (runs / "train" / "gpu-384" / "weights" / "best.pt").read_bytes() == b"weights of 384"
    assert (runs / "train" / "gpu-384-final" / "weights" / "last.pt").read_bytes() == (
        b"final weights"
    )
    report = json.loads((runs / "lent-gpu" / "lent-gpu-report.json").read_text())
    assert report["chosen_size"] == 384


def test_unpack_names_the_folder_without_parts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no results\.part"):
        unpack(tmp_path, tmp_path / "runs", tmp_path, tmp_path)


def test_the_trainer_reads_its_epoch_table_without_polars(tmp_path: Path) -> None:
    need_training()
    from training.detector import _dish_trainer

    trainer = object.__new__(_dish_trainer())
    trainer.csv = tmp_path / "results.csv"
    trainer.csv.write_text(
        "                  epoch,  time,metrics/mAP50(B)\n1,12.5,0.25\n2,25.0,0.5\n",
        encoding="utf-8",
    )
    assert trainer.read_results_csv() == {
        "epoch": [1, 2],
        "time": [12.5, 25.0],
        "metrics/mAP50(B)": [0.25, 0.5],
    }
    trainer.csv = tmp_path / "missing.csv"
    assert trainer.read_results_csv() == {}
