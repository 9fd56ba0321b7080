"""Training the dish detector with ultralytics, offline, on the CPU or a GPU, and exporting ONNX.

We wrap ultralytics, we do not fork it: the model is a YAML in ``training/models``, our fixes to
the pretrained backbone go through its callbacks.

The two fixes an ImageNet backbone needs inside YOLO:

- YOLO feeds RGB scaled to 0..1 without ImageNet's mean/std normalisation; folding that
  normalisation into the backbone's first convolution (and its BatchNorm's running mean) makes the
  pretrained features come out as torchvision computes them.
- Ultralytics sets every BatchNorm's eps to 1e-3 when it builds a model; torchvision's weights were
  trained with 1e-5.
Both are applied once, when a fresh model is built, and marked so a resumed run does not
repeat them.
The first blocks of the backbone stay frozen (their BatchNorm statistics too): on a few hundred
photos they only lose what ImageNet taught them.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from training.offline import setup_offline, use_all_cores

logger = logging.getLogger(__name__)

MODELS = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS / "dish-mnv2-yolo11n.yaml"
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
FROZEN_BACKBONE_BLOCKS = 4


@dataclass(frozen=True)
class DetectorRun:
    """Where a finished training run left its results."""

    run_dir: Path
    best_pt: Path
    onnx: Path | None
    metrics: dict[str, float]


def _torchvision_backbone(model: Any) -> Any | None:
    """The TorchVision module of a YOLO model built from our YAML, or None."""
    from ultralytics.nn.modules.block import TorchVision

    layers = getattr(model, "model", None)
    if layers is None or not len(layers):
        return None
    first = layers[0]
    return first if isinstance(first, TorchVision) else None


def restore_batchnorm_eps(model: Any) -> None:
    """Give the torchvision backbone's BatchNorm layers back the eps its weights were trained
    with (ultralytics sets 1e-3 on every model it builds; eps is not part of a checkpoint)."""
    from torch import nn

    backbone = _torchvision_backbone(model)
    if backbone is None:
        return
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-5


def fold_imagenet_normalisation(model: Any) -> bool:
    """Fold ImageNet mean/std into the backbone's first conv (once per model object).

    Only for a backbone fresh from torchvision's ImageNet weights: weights loaded from one of our
    checkpoints are folded already. Returns True when applied.
    """
    import torch

    backbone = _torchvision_backbone(model)
    if backbone is None or getattr(backbone, "trayscan_normalisation_folded", False):
        return False
    stem = backbone.m[0]  # Conv2dNormActivation: Conv2d(3, 32, 3, stride 2, no bias), BN, ReLU6
    conv, bn = stem[0], stem[1]
    with torch.no_grad():
        like = {"dtype": conv.weight.dtype, "device": conv.weight.device}  # the GPU's, on one
        mean = torch.tensor(IMAGENET_MEAN_RGB, **like).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD_RGB, **like).view(1, 3, 1, 1)
        conv.weight.div_(std)
        shift = (conv.weight * mean).sum(dim=(1, 2, 3))
        bn.running_mean.add_(shift.to(bn.running_mean.dtype))
    backbone.trayscan_normalisation_folded = True
    return True


def weights_from_checkpoint(trainer: Any) -> bool:
    """True when the trainer's weights come from a checkpoint of ours (resume or fine-tune)."""
    model = str(getattr(trainer.args, "model", "") or "")
    return bool(trainer.args.resume) or (model.endswith(".pt") and bool(trainer.args.pretrained))


def _frozen_modules(model: Any) -> list[Any]:
    backbone = _torchvision_backbone(model)
    return list(backbone.m[:FROZEN_BACKBONE_BLOCKS]) if backbone is not None else []


def _freeze_early_blocks(model: Any) -> None:
    for block in _frozen_modules(model):
        for parameter in block.parameters():
            parameter.requires_grad = False


def _keep_frozen_statistics(model: Any) -> None:
    from torch import nn

    for block in _frozen_modules(model):
        for module in block.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


def _on_pretrain_routine_start(trainer: Any) -> None:
    threads = use_all_cores()
    logger.info("training on %s with %d CPU threads", trainer.device, threads)


def _on_pretrain_routine_end(trainer: Any) -> None:
    models = [trainer.model]
    if getattr(trainer, "ema", None) is not None:
        models.append(trainer.ema.ema)
    from_checkpoint = weights_from_checkpoint(trainer)
    for model in models:
        restore_batchnorm_eps(model)
        if from_checkpoint:
            _torchvision_backbone_mark_folded(model)
        elif fold_imagenet_normalisation(model):
            logger.info("folded ImageNet normalisation into the backbone's first conv")
        _freeze_early_blocks(model)


def _torchvision_backbone_mark_folded(model: Any) -> None:
    backbone = _torchvision_backbone(model)
    if backbone is not None:
        backbone.trayscan_normalisation_folded = True


def _on_fit_epoch_end(trainer: Any) -> None:
    """One line per epoch for the whole run: where it is, the validation mAP, and the ETA
    (ultralytics' own bars show one epoch at a time)."""
    import time

    done = int(trainer.epoch) + 1
    total = int(trainer.epochs)
    elapsed = time.time() - float(getattr(trainer, "train_time_start", time.time()))
    eta = elapsed / max(done, 1) * max(total - done, 0)
    metrics = getattr(trainer, "metrics", {}) or {}
    map50 = float(metrics.get("metrics/mAP50(B)", 0.0))
    logger.info(
        "detector epoch %d/%d: val mAP50 %.3f, %dm%02ds so far, ETA %dm%02ds",
        done,
        total,
        map50,
        int(elapsed) // 60,
        int(elapsed) % 60,
        int(eta) // 60,
        int(eta) % 60,
    )


def _on_train_epoch_start(trainer: Any) -> None:
    use_all_cores()
    _keep_frozen_statistics(trainer.model)


def _dish_trainer() -> Any:
    """Ultralytics' detection trainer, reading its own results.csv with the csv module.

    Ultralytics reads it with polars only to copy the epoch table into each checkpoint; polars
    is a 54 MB wheel that a lent GPU machine (torch preinstalled, nothing fetchable, 64 MiB to
    carry) does not have. This is a custom trainer class, the way ultralytics is meant to be
    extended (``model.train(trainer=...)``), and the table it stores is the same.
    """
    import csv

    from ultralytics.models.yolo.detect import DetectionTrainer

    class DishTrainer(DetectionTrainer):  # type: ignore[misc]
        def read_results_csv(self) -> dict[str, list[Any]]:
            try:
                with Path(self.csv).open(newline="") as handle:
                    rows = list(csv.DictReader(handle))
            except OSError:
                return {}
            columns = rows[0].keys() if rows else []
            return {key.strip(): [_number(row[key]) for row in rows] for key in columns}

    return DishTrainer


def _number(text: str | None) -> Any:
    try:
        value = float(text or "")
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in str(text) else value


def train_detector(
    data: Path,
    out: Path,
    *,
    home: Path,
    model_yaml: Path = DEFAULT_MODEL,
    imgsz: int = 384,
    epochs: int = 60,
    hours: float | None = None,
    batch: int = 16,
    name: str = "detector",
    device: str = "cpu",
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    export: bool = True,
) -> DetectorRun:
    """Train a detector on a YOLO dataset and export its best weights to ONNX.

    Args:
        data: the dataset YAML.
        out: the folder runs are written under.
        home: the project home, for the offline caches.
        model_yaml: the model description (or a ``.pt`` to fine-tune).
        imgsz: training and export image size.
        epochs: epochs to train (``hours`` overrides it).
        hours: wall-clock budget; ultralytics fits the schedule into it.
        batch: batch size.
        name: the run's folder name under ``out``.
        device: "cpu", or a CUDA device index.
        resume: continue the run's last checkpoint.
        overrides: more ultralytics training settings (from a YAML file of the data staff).
        export: export the best weights to ONNX at the end.
    """
    setup_offline(home)
    from ultralytics import YOLO  # type: ignore[attr-defined]

    run_dir = out / name
    if resume:
        model = YOLO(str(run_dir / "weights" / "last.pt"))
    else:
        model = YOLO(str(model_yaml), task="detect")
    model.add_callback("on_pretrain_routine_start", _on_pretrain_routine_start)
    model.add_callback("on_pretrain_routine_end", _on_pretrain_routine_end)
    model.add_callback("on_train_epoch_start", _on_train_epoch_start)
    model.add_callback("on_fit_epoch_end", _on_fit_epoch_end)
    settings: dict[str, Any] = {
        "data": str(data),
        "imgsz": imgsz,
        "epochs": epochs,
        "batch": batch,
        "device": device,
        "workers": 2,
        "project": str(out.resolve()),
        "name": name,
        "exist_ok": True,
        "pretrained": False,
        "plots": False,
        "patience": 1000,
        "close_mosaic": 5,
        "cache": "ram",
        "seed": 0,
        "deterministic": False,
        "amp": device != "cpu",
        "verbose": True,
    }
    if hours is not None:
        settings["time"] = hours
    settings.update(overrides or {})
    if resume:
        model.train(resume=True, trainer=_dish_trainer())
    else:
        model.train(trainer=_dish_trainer(), **settings)
    best = run_dir / "weights" / "best.pt"
    metrics = read_best_metrics(run_dir)
    onnx = export_detector(best, imgsz=imgsz, home=home) if export else None
    return DetectorRun(run_dir, best, onnx, metrics)


def read_best_metrics(run_dir: Path) -> dict[str, float]:
    """The metrics row of the best epoch (by mAP50-95) of an ultralytics run, plus its length."""
    import csv

    results = run_dir / "results.csv"
    if not results.exists():
        return {}
    with results.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    best = max(rows, key=lambda r: float(r.get("metrics/mAP50-95(B)", 0) or 0))
    metrics = {k.strip(): float(v) for k, v in best.items() if v not in ("", None)}
    metrics["epochs_run"] = float(len(rows))
    return metrics


FINAL_FIT_SETTINGS = (
    "imgsz", "batch", "optimizer", "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs",
    "warmup_momentum", "warmup_bias_lr", "cos_lr", "close_mosaic", "pretrained", "box", "cls",
    "dfl", "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective",
    "flipud", "fliplr", "mosaic", "mixup", "copy_paste", "freeze", "cache", "seed",
)  # fmt: skip


def repeat_run_settings(run_dir: Path) -> tuple[Path, int, dict[str, Any]]:
    """How to train a finished ultralytics run again on other data: the weights (or model
    YAML) it started from, the number of epochs it ran (a run cut by ``time`` ran fewer than it
    was asked for), and its training settings."""
    args_file = run_dir / "args.yaml"
    if not args_file.exists():
        raise FileNotFoundError(f"{args_file} is missing: {run_dir} is not a finished run")
    args = yaml.safe_load(args_file.read_text(encoding="utf-8")) or {}
    epochs = int(read_best_metrics(run_dir).get("epochs_run", 0))
    if epochs < 1 or not args.get("model"):
        raise ValueError(f"{run_dir} has no epochs in results.csv or no model in args.yaml")
    return (
        Path(str(args["model"])),
        epochs,
        {k: args[k] for k in FINAL_FIT_SETTINGS if k in args},
    )


def final_fit_yaml(data_yaml: Path) -> Path:
    """``final.yaml`` beside a dataset YAML: the same data set with its validation photos
    added to training, for a final fit on every photo."""
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    everything = dict(data, train=[data["train"], data["val"]])
    final = data_yaml.with_name("final.yaml")
    final.write_text(yaml.safe_dump(everything, allow_unicode=True), encoding="utf-8")
    return final


def export_detector(weights: Path, *, imgsz: int, home: Path) -> Path:
    """Export detector weights to ONNX (static 1x3xSxS input, no NMS: we do NMS in numpy)."""
    setup_offline(home)
    from ultralytics import YOLO  # type: ignore[attr-defined]

    model = YOLO(str(weights))
    exported = model.export(
        format="onnx", imgsz=imgsz, opset=17, simplify=True, dynamic=False, nms=False
    )
    target = weights.with_name("detector.onnx")
    shutil.move(str(exported), target)
    return target
