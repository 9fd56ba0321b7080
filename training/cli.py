"""The data staff's ``trayscan train ...`` subcommands; torch and ultralytics load only when run."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _home() -> Path:
    from terminal.config import trayscan_home

    return trayscan_home()


def cmd_train_default_bundle(args: argparse.Namespace) -> int:
    """Remake the shipped default bundle from the shared data sets."""
    from training.recipes import RecipePaths, make_default_bundle

    home = _home()
    paths = RecipePaths(home=home, shared=args.shared.resolve(), runs=args.runs.resolve())
    for needed in (paths.vn / "dataset.yaml", paths.thali / "dataset.original.yaml"):
        if not needed.exists():
            print(
                f"trayscan train default-bundle: {needed} is missing (see ../shared/README.md)",
                file=sys.stderr,
            )
            return 2
    version = args.version or dt.date.today().strftime("%Y.%m.%d") + "-1"
    result = make_default_bundle(
        paths,
        args.out.resolve(),
        version=version,
        detector_hours=args.detector_hours,
        detector_imgsz=args.imgsz,
        identifier_epochs=args.identifier_epochs,
        device=args.device,
        reuse=args.reuse,
        detector_run=args.detector_run,
        command="trayscan " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    print(json.dumps(result, ensure_ascii=False))
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    """Train a detector on a YOLO dataset and export it to ONNX."""
    import yaml

    from training.detector import DEFAULT_MODEL, train_detector

    overrides: dict[str, Any] = {}
    if args.overrides is not None:
        overrides = yaml.safe_load(args.overrides.read_text(encoding="utf-8")) or {}
        if not isinstance(overrides, dict):
            print(
                f"trayscan train detector: {args.overrides} must hold a mapping of settings",
                file=sys.stderr,
            )
            return 2
    run = train_detector(
        args.data.resolve(),
        args.runs.resolve(),
        home=_home(),
        model_yaml=args.model or DEFAULT_MODEL,
        imgsz=args.imgsz,
        epochs=args.epochs,
        hours=args.hours,
        batch=args.batch,
        name=args.name,
        device=args.device,
        resume=args.resume,
        overrides=overrides,
    )
    print(json.dumps({"run": str(run.run_dir), "onnx": str(run.onnx), "metrics": run.metrics}))
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``train`` and its actions to the ``trayscan`` parser."""
    home = _home()
    train = sub.add_parser("train", help="train models (needs the `train` extra)")
    actions = train.add_subparsers(dest="train_command", required=True, metavar="WHAT")

    bundle = actions.add_parser(
        "default-bundle", help="remake assets/models/default from ../shared/datasets"
    )
    bundle.add_argument("--shared", type=Path, default=home.parent / "shared")
    bundle.add_argument("--runs", type=Path, default=home / "runs")
    bundle.add_argument("--out", type=Path, default=home / "assets" / "models" / "default")
    bundle.add_argument("--version", help="bundle version (default: today's date -1)")
    bundle.add_argument("--detector-hours", type=float, default=1.1)
    bundle.add_argument("--imgsz", type=int, default=384)
    bundle.add_argument("--identifier-epochs", type=int, default=16)
    bundle.add_argument("--device", default="cpu", help="cpu, or a CUDA device index")
    bundle.add_argument("--reuse", action="store_true", help="reuse finished runs under --runs")
    bundle.add_argument(
        "--detector-run", help="the detector run under RUNS/train to use (default dish-mnv2-SIZE)"
    )
    bundle.set_defaults(func=cmd_train_default_bundle)

    detector = actions.add_parser("detector", help="train a dish detector on a YOLO dataset")
    detector.add_argument("--data", type=Path, required=True, help="dataset YAML")
    detector.add_argument("--runs", type=Path, default=home / "runs" / "train")
    detector.add_argument("--name", default="detector")
    detector.add_argument("--model", type=Path, help="model YAML or .pt to fine-tune")
    detector.add_argument("--imgsz", type=int, default=384)
    detector.add_argument("--epochs", type=int, default=60)
    detector.add_argument("--hours", type=float, help="wall-clock budget (overrides --epochs)")
    detector.add_argument("--batch", type=int, default=16)
    detector.add_argument("--device", default="cpu")
    detector.add_argument("--resume", action="store_true")
    detector.add_argument("--overrides", type=Path, help="YAML of ultralytics settings")
    detector.set_defaults(func=cmd_train_detector)
