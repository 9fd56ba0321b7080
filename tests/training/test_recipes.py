"""The default-bundle recipe's final fit repeats the chosen detector run as it really ran."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.detector import repeat_run_settings
from training.recipes import keep_final_identifier


def finished_run(folder: Path, rows: int) -> Path:
    """An ultralytics run folder as a time-limited fine-tune leaves it: asked for 60 epochs in
    0.55 h, it ran ``rows``."""
    folder.mkdir(parents=True)
    args = {
        "task": "detect",
        "mode": "train",
        "model": "runs/train/dish-mnv2-384/weights/best.pt",
        "data": "/somewhere/dataset.yaml",
        "epochs": 60,
        "time": 0.55,
        "imgsz": 384,
        "batch": 16,
        "optimizer": "AdamW",
        "lr0": 0.0005,
        "lrf": 0.1,
        "close_mosaic": 8,
        "name": "dish-mnv2-384-ft",
        "project": "/somewhere/runs/train",
    }
    (folder / "args.yaml").write_text(yaml.safe_dump(args), encoding="utf-8")
    header = "epoch,metrics/mAP50(B),metrics/mAP50-95(B)\n"
    body = "".join(f"{i + 1},0.5,{0.3 + i / 100}\n" for i in range(rows))
    (folder / "results.csv").write_text(header + body, encoding="utf-8")
    return folder


def test_the_final_fit_trains_as_many_epochs_as_the_chosen_run_ran_with_its_settings(
    tmp_path: Path,
) -> None:
    start, epochs, settings = repeat_run_settings(finished_run(tmp_path / "ft", rows=24))
    assert start == Path("runs/train/dish-mnv2-384/weights/best.pt")
    assert epochs == 24  # not the 60 it asked for: the time limit cut it
    assert settings["optimizer"] == "AdamW"
    assert settings["lr0"] == 0.0005 and settings["close_mosaic"] == 8
    assert settings["imgsz"] == 384 and settings["batch"] == 16
    # Where it trained, on what, and for how long are the final fit's own.
    for own in ("data", "epochs", "time", "name", "project", "model"):
        assert own not in settings


def test_a_run_that_never_finished_an_epoch_is_refused_by_name(tmp_path: Path) -> None:
    run = finished_run(tmp_path / "ft", rows=0)
    with pytest.raises(ValueError, match=r"ft has no epochs"):
        repeat_run_settings(run)
    (run / "args.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"args\.yaml"):
        repeat_run_settings(run)


def test_a_retrained_identifier_that_learns_new_dishes_worse_is_not_shipped() -> None:
    chosen = {"fine_tuned": {"val_top1_all_train_refs": 0.85, "held_out_5shot_top1": 0.384}}
    worse = {"fine_tuned": {"held_out_5shot_top1": 0.282}}
    keep, why = keep_final_identifier(chosen, worse)
    assert not keep
    assert "0.282" in why and "0.384" in why
    assert keep_final_identifier(chosen, {"fine_tuned": {"held_out_5shot_top1": 0.37}})[0]
    assert keep_final_identifier(chosen, {"fine_tuned": {"held_out_5shot_top1": 0.40}})[0]
    # Without the other cuisine's figure there is nothing to show it is no worse.
    assert not keep_final_identifier(chosen, {"fine_tuned": {}})[0]
