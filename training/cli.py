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
        identifier_run=args.identifier_run,
        final_fit=args.final_fit,
        command="trayscan " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    print(json.dumps(result, ensure_ascii=False))
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    """Train a detector on a YOLO dataset and export it to ONNX."""
    from training.detector import DEFAULT_MODEL, train_detector

    _chatty()
    overrides = _read_overrides(args.overrides, "train detector")
    if overrides is None:
        return 2
    if not args.per_dish:
        # The baseline detector finds dishes, whatever they are: the gallery names them.
        overrides.setdefault("single_cls", True)
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


def _chatty() -> None:
    """Training prints its progress (epochs, ETA) without ``-v``."""
    logging.getLogger("training").setLevel(logging.INFO)


def _read_overrides(path: Path | None, what: str) -> dict[str, Any] | None:
    import yaml

    if path is None:
        return {}
    try:
        overrides = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        print(f"trayscan {what}: cannot read {path}: {exc}", file=sys.stderr)
        return None
    if not isinstance(overrides, dict):
        print(f"trayscan {what}: {path} must hold a mapping of settings", file=sys.stderr)
        return None
    return overrides


IDENTIFIER_SETTINGS = ("epochs", "batch", "lr", "val_fraction", "threads")


def cmd_train_identifier(args: argparse.Namespace) -> int:
    """Fine-tune the identifier's backbone on the dish crops of a YOLO dataset."""
    from training.data import split_by_source
    from training.identifier import train_identifier, yolo_crops
    from vision.datasets import DatasetError, read_dataset
    from vision.labels import read_class_names

    _chatty()
    overrides = _read_overrides(args.overrides, "train identifier")
    if overrides is None:
        return 2
    unknown = sorted(set(overrides) - set(IDENTIFIER_SETTINGS))
    if unknown:
        print(
            f"trayscan train identifier: {args.overrides}: unknown settings {unknown}; "
            f"known: {list(IDENTIFIER_SETTINGS)}",
            file=sys.stderr,
        )
        return 2
    settings = {
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "val_fraction": args.val_fraction,
        "threads": None,
        **overrides,
    }
    try:
        dataset = read_dataset(args.data.resolve(), "yolo", args.split)
        names = read_class_names(args.data.resolve())
    except DatasetError as exc:
        print(f"trayscan train identifier: {exc}", file=sys.stderr)
        return 2
    images = [image.path for image in dataset.images]
    split = split_by_source(images, float(settings["val_fraction"]))
    train = yolo_crops(split.train, names)
    val = yolo_crops(split.val, names)
    held_out = []
    if args.held_out is not None:
        held_dataset = read_dataset(args.held_out.resolve(), None)
        held_out = yolo_crops([i.path for i in held_dataset.images], held_dataset.class_names)
    run = train_identifier(
        train,
        val,
        args.out.resolve(),
        home=_home(),
        epochs=int(settings["epochs"]),
        batch=int(settings["batch"]),
        lr=float(settings["lr"]),
        threads=settings["threads"],
        held_out=held_out,
        resume=args.resume,
        bar=not args.no_bar,
        device=args.device,
    )
    print(json.dumps({"run": str(run.out), "onnx": str(run.onnx), "report": run.report}))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Build a verified bundle from a training run."""
    from training.workflow import WorkflowError, export_bundle
    from vision.bundle import BundleError

    _chatty()
    try:
        bundle = export_bundle(
            args.run.resolve(),
            args.to.resolve(),
            home=_home(),
            base=args.base.resolve(),
            version=args.version,
            identifier_run=args.identifier_run.resolve() if args.identifier_run else None,
            references=args.references.resolve() if args.references else None,
        )
    except (WorkflowError, BundleError) as exc:
        print(f"trayscan export: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"bundle": str(bundle.path), "version": bundle.version}))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Install a bundle on a terminal's store, or publish it on the backend."""
    import os

    from training.workflow import WorkflowError, publish
    from vision.bundle import BundleError

    token = os.environ.get("TRAYSCAN_ADMIN_TOKEN")
    if args.admin_token_file is not None:
        token = args.admin_token_file.read_text(encoding="utf-8").strip()
    try:
        result = publish(args.bundle.resolve(), args.terminal, admin_token=token)
    except (WorkflowError, BundleError) as exc:
        print(f"trayscan publish: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Go back to the previous bundle of a terminal's store."""
    from training.workflow import rollback
    from vision.bundle import BundleError

    try:
        result = rollback(args.store.resolve())
    except BundleError as exc:
        print(f"trayscan rollback: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Two bundles side by side on one labelled dataset."""
    from terminal.menu_file import load_menu
    from terminal.yamlmodels import FileError
    from training.compare import compare_bundles
    from vision.bundle import BundleError
    from vision.datasets import DatasetError

    if len(args.bundle) != 2:
        print("trayscan compare: give --bundle exactly twice", file=sys.stderr)
        return 2
    try:
        menu = load_menu(args.menu.resolve()) if args.menu else None
        result = compare_bundles(
            args.bundle[0].resolve(),
            args.bundle[1].resolve(),
            args.dataset.resolve(),
            format=args.format,
            split=args.split,
            menu=menu,
            plots=args.plots.resolve() if args.plots else None,
            limit=args.limit,
        )
    except (BundleError, DatasetError, FileError) as exc:
        print(f"trayscan compare: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"trayscan compare: --plots needs the train extra ({exc})", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
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
    bundle.add_argument(
        "--identifier-run",
        default="identifier",
        help="the identifier run under RUNS to use (default identifier; its final fit NAME-final)",
    )
    bundle.add_argument(
        "--final-fit",
        action="store_true",
        help="train the chosen models once more on every photo of train/ and ship those",
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
    detector.add_argument(
        "--per-dish",
        action="store_true",
        help="one class per dish (a second opinion); default: one class, 'dish'",
    )
    detector.set_defaults(func=cmd_train_detector)

    identifier = actions.add_parser(
        "identifier", help="fine-tune the identifier's backbone on the dish crops of a dataset"
    )
    identifier.add_argument("--data", type=Path, required=True, help="YOLO dataset YAML")
    identifier.add_argument("--split", default="train", help="the dataset split to learn from")
    identifier.add_argument(
        "--held-out", type=Path, help="a dataset of other dishes: 5-shot check of both backbones"
    )
    identifier.add_argument("--out", type=Path, default=home / "runs" / "identifier-run")
    identifier.add_argument("--epochs", type=int, default=16)
    identifier.add_argument("--batch", type=int, default=32)
    identifier.add_argument("--lr", type=float, default=3e-4)
    identifier.add_argument("--val-fraction", type=float, default=0.15)
    identifier.add_argument("--device", default="cpu", help="cpu, or a CUDA device index")
    identifier.add_argument("--resume", action="store_true", help="continue from --out")
    identifier.add_argument("--no-bar", action="store_true", help="no progress bar")
    identifier.add_argument(
        "--overrides", type=Path, help=f"YAML with any of {', '.join(IDENTIFIER_SETTINGS)}"
    )
    identifier.set_defaults(func=cmd_train_identifier)

    export = sub.add_parser("export", help="build a verified model bundle from a training run")
    export.add_argument("--run", type=Path, required=True, help="a detector run folder")
    export.add_argument("--to", type=Path, required=True, help="the bundle folder to write")
    export.add_argument(
        "--base",
        type=Path,
        default=home / "assets" / "models" / "default",
        help="the bundle whose identifier, gallery and thresholds are kept",
    )
    export.add_argument("--identifier-run", type=Path, help="a `train identifier` run folder")
    export.add_argument(
        "--references", type=Path, help="labelled dataset to rebuild the gallery from"
    )
    export.add_argument("--version", help="the new bundle's version (default: the base's next)")
    export.set_defaults(func=cmd_export)

    publish = sub.add_parser(
        "publish", help="install a bundle on a terminal (its store folder) or on the backend (URL)"
    )
    publish.add_argument("bundle", type=Path)
    publish.add_argument("--terminal", required=True, metavar="URL|DIR")
    publish.add_argument("--admin-token-file", type=Path, help="the backend's admin token")
    publish.set_defaults(func=cmd_publish)

    rollback = sub.add_parser("rollback", help="go back to a terminal's previous bundle")
    rollback.add_argument("--store", type=Path, default=home / "var" / "models")
    rollback.set_defaults(func=cmd_rollback)

    compare = sub.add_parser("compare", help="two bundles side by side on a labelled dataset")
    compare.add_argument("--bundle", type=Path, action="append", required=True)
    compare.add_argument("--dataset", type=Path, required=True)
    compare.add_argument("--format", choices=["yolo", "voc", "coco"])
    compare.add_argument("--split", help="dataset split (YOLO)")
    compare.add_argument(
        "--menu",
        type=Path,
        default=home / "assets" / "menu" / "demo-menu.yaml",
        help="prices for the price error",
    )
    compare.add_argument("--plots", type=Path, help="folder for PR curve and confusion PNGs")
    compare.add_argument("--limit", type=int, help="only the first N images")
    compare.set_defaults(func=cmd_compare)
