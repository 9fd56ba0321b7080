"""The ``trayscan`` command: one console script, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from terminal import __version__

logger = logging.getLogger(__name__)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


if TYPE_CHECKING:
    from terminal.app import Terminal


def cmd_kiosk(args: argparse.Namespace) -> int:
    """Start the terminal."""
    from terminal.app import StartupError, build_terminal
    from terminal.config import load_config
    from terminal.demo import HeadlessDemo
    from terminal.yamlmodels import FileError

    if args.config is None and not args.demo:
        print(
            "trayscan kiosk: give --config FILE, or --demo to run on the demo defaults",
            file=sys.stderr,
        )
        return 2
    try:
        loaded = load_config(args.config)
        terminal = build_terminal(loaded, seed_demo_accounts=args.demo)
    except (FileError, StartupError) as exc:
        print(f"trayscan kiosk: cannot start:\n{exc}", file=sys.stderr)
        return 2
    if not args.headless:
        from terminal.ui.launch import run_screens, screens_unavailable

        reason = screens_unavailable()
        if reason is None:
            return run_screens(
                terminal, demo=args.demo, max_trays=args.max_trays, interval_s=args.interval
            )
        print(f"trayscan kiosk: {reason}; running headless", file=sys.stderr)
    if not args.demo:
        return _run_live(terminal, args.max_trays)
    interval = args.interval if args.interval is not None else (0.0 if args.max_trays else 2.0)
    try:
        demo = HeadlessDemo(terminal, sys.stdout, interval_s=interval)
    except StartupError as exc:
        terminal.close()
        print(f"trayscan kiosk: cannot start:\n{exc}", file=sys.stderr)
        return 2
    try:
        counts = demo.run(args.max_trays)
    except KeyboardInterrupt:
        counts = demo.counts
    finally:
        terminal.close()
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no trays"
    print(f"trayscan kiosk: {summary}", file=sys.stderr)
    return 0


def _run_live(terminal: Terminal, max_trays: int | None) -> int:
    """The real terminal: devices drive the checkouts until Ctrl-C or SIGTERM."""
    import signal
    import threading

    from terminal.live import LiveTerminal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    profile = terminal.profile
    area = profile.camera.tray_area if profile and profile.camera else None
    live = LiveTerminal(terminal, sys.stdout, tray_area=area)
    try:
        records = live.run(stop, max_trays)
    except KeyboardInterrupt:
        records = live.records
    finally:
        terminal.close()
    print(f"trayscan kiosk: {len(records)} checkouts", file=sys.stderr)
    return 0


def cmd_validate_config(args: argparse.Namespace) -> int:
    """Check a config file and everything it points at."""
    from terminal.app import StartupError, check_terminal
    from terminal.config import load_config
    from terminal.yamlmodels import FileError

    try:
        loaded = load_config(args.file)
    except FileError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        menu = check_terminal(loaded)
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.file}: OK (terminal {loaded.config.terminal_id}, {len(menu)} dishes)")
    return 0


def _print_json(data: object) -> None:
    import json

    print(json.dumps(data, ensure_ascii=False, indent=None))


def cmd_gallery_add(args: argparse.Namespace) -> int:
    """Add references to a bundle's gallery, from a labelled dataset or single-dish photos."""
    import time

    from vision.bundle import BundleError, verify_bundle
    from vision.datasets import DatasetError, read_dataset
    from vision.recogniser import BundleRecogniser
    from vision.references import (
        add_references,
        class_to_dish_from_bundle,
        dish_id_for,
        references_from_dataset,
        references_from_photos,
    )

    if (args.dataset is None) == (args.photos is None):
        print(
            "trayscan gallery add: give either --dataset D or --dish NAME --photos DIR",
            file=sys.stderr,
        )
        return 2
    if args.photos is not None and not args.dish:
        print("trayscan gallery add: --photos needs --dish NAME", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        bundle = verify_bundle(args.bundle)
        recogniser = BundleRecogniser(bundle, threads=args.threads)
        embedder = recogniser.identifier.embedder
        if args.dataset is not None:
            dataset = read_dataset(args.dataset, args.format, args.split)
            references = references_from_dataset(
                dataset,
                embedder,
                class_to_dish=class_to_dish_from_bundle(bundle.dishes),
                max_per_class=args.max_per_class,
            )
            origin = "dataset"
        else:
            dish = dish_id_for(args.dish)
            references = references_from_photos(args.photos, dish, recogniser.detector, embedder)
            origin = "photos"
        names = (
            {dish_id_for(args.dish): (args.name_zh or args.dish, args.dish)} if args.dish else None
        )
        update = add_references(bundle, references, names=names, origin=origin)
    except (BundleError, DatasetError, ValueError) as exc:
        print(f"trayscan gallery add: {exc}", file=sys.stderr)
        return 1
    _print_json(
        {
            "bundle": str(args.bundle),
            "version": update.version,
            "added": update.added,
            "new_dishes": update.new_dishes,
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a bundle on a labelled dataset."""
    from vision.bundle import BundleError
    from vision.datasets import DatasetError
    from vision.eval_runner import evaluate_bundle

    try:
        result = evaluate_bundle(
            args.bundle,
            args.dataset,
            format=args.format,
            split=args.split,
            few_shot=args.few_shot,
            threads=args.threads,
            limit=args.limit,
        )
    except (BundleError, DatasetError, ValueError) as exc:
        print(f"trayscan eval: {exc}", file=sys.stderr)
        return 1
    _print_json(result)
    return 0


def cmd_bench_recognise(args: argparse.Namespace) -> int:
    """Time recognition and print the figures."""
    from vision.benchmark import bench_recognise
    from vision.bundle import BundleError

    try:
        result = bench_recognise(args.bundle, args.images, rounds=args.rounds)
    except (BundleError, ValueError) as exc:
        print(f"trayscan bench recognise: {exc}", file=sys.stderr)
        return 1
    _print_json(result)
    return 0


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    """Verify a bundle folder and load its models."""
    from vision.bundle import BundleError
    from vision.recogniser import BundleRecogniser

    try:
        recogniser = BundleRecogniser.from_path(args.bundle, threads=1)
    except BundleError as exc:
        print(f"trayscan bundle verify: {exc}", file=sys.stderr)
        return 1
    gallery = recogniser.gallery
    print(
        f"{args.bundle}: OK (version {recogniser.model_version}, {len(gallery.dishes())} dishes, "
        f"{len(gallery)} references)"
    )
    return 0


def cmd_devices_check(args: argparse.Namespace) -> int:
    """Print every configured device's state on one screen."""
    from terminal.app import StartupError, build_terminal
    from terminal.config import load_config
    from terminal.diagnostics import check_devices, render_report
    from terminal.yamlmodels import FileError

    try:
        terminal = build_terminal(load_config(args.config))
    except (FileError, StartupError) as exc:
        print(f"trayscan devices check: cannot start:\n{exc}", file=sys.stderr)
        return 2
    try:
        report = check_devices(terminal, seconds=args.seconds)
    finally:
        terminal.close()
    print(render_report(report))
    return 0 if all(item.ok for item in report) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trayscan",
        description="Self-service checkout terminal for staff canteens.",
    )
    parser.add_argument("--version", action="version", version=f"trayscan {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kiosk = sub.add_parser("kiosk", help="run the checkout terminal")
    kiosk.add_argument("--config", type=Path, help="terminal config YAML (default: demo defaults)")
    kiosk.add_argument(
        "--demo",
        action="store_true",
        help="simulate diners: replayed trays, scale loads and card taps",
    )
    kiosk.add_argument("--headless", action="store_true", help="no screens; JSON lines on stdout")
    kiosk.add_argument(
        "--max-trays",
        type=int,
        default=None,
        metavar="N",
        help="stop after N checkouts (default: run until the trays or Ctrl-C end it)",
    )
    kiosk.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="S",
        help="seconds between trays (default 2, or 0 with --max-trays)",
    )
    kiosk.set_defaults(func=cmd_kiosk)

    validate = sub.add_parser("validate-config", help="check a terminal config file")
    validate.add_argument("file", type=Path)
    validate.set_defaults(func=cmd_validate_config)

    from terminal.config import trayscan_home

    home = trayscan_home()
    default_bundle = home / "assets" / "models" / "default"
    sample_images = home / "datasets" / "vn-canteen-trays-sample" / "images"

    gallery = sub.add_parser("gallery", help="grow a model bundle's gallery without retraining")
    gallery_sub = gallery.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    add = gallery_sub.add_parser(
        "add", help="add references from a labelled dataset or a folder of single-dish photos"
    )
    add.add_argument("--bundle", type=Path, required=True, help="the bundle folder to change")
    add.add_argument("--dataset", type=Path, help="YOLO dataset YAML, VOC folder or COCO JSON")
    add.add_argument("--format", choices=["yolo", "voc", "coco"], help="dataset format (auto)")
    add.add_argument("--split", help="which split of a YOLO dataset YAML (default test, else val)")
    add.add_argument("--max-per-class", type=int, help="take at most N boxes per class")
    add.add_argument("--dish", help="the dish the photos show (new dishes are added to the menu)")
    add.add_argument("--name-zh", help="Chinese name of a new dish")
    add.add_argument("--photos", type=Path, help="folder of photos of one dish")
    add.add_argument("--threads", type=int, default=2)
    add.set_defaults(func=cmd_gallery_add)

    evaluate = sub.add_parser("eval", help="score a model bundle on a labelled dataset (JSON)")
    evaluate.add_argument("--bundle", type=Path, default=default_bundle)
    evaluate.add_argument("--dataset", type=Path, required=True)
    evaluate.add_argument("--format", choices=["yolo", "voc", "coco"])
    evaluate.add_argument(
        "--split", help="which split of a YOLO dataset YAML (default test, else val)"
    )
    evaluate.add_argument(
        "--few-shot",
        type=int,
        metavar="K",
        help="use the dataset as a new menu: a gallery of K boxes per class, scored on the rest",
    )
    evaluate.add_argument("--threads", type=int, default=2)
    evaluate.add_argument("--limit", type=int, help="score only the first N images")
    evaluate.set_defaults(func=cmd_eval)

    bench = sub.add_parser("bench", help="benchmarks that print their figures (JSON)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    recognise = bench_sub.add_parser("recognise", help="recognition latency and peak memory")
    recognise.add_argument("--bundle", type=Path, default=default_bundle)
    recognise.add_argument("--images", type=Path, default=sample_images)
    recognise.add_argument("--rounds", type=int, default=5)
    recognise.set_defaults(func=cmd_bench_recognise)

    from calibration.cli import add_parsers as add_calibration_parsers
    from server.cli import add_bench_parser as add_bench_backend_parser
    from server.cli import add_parsers as add_backend_parsers
    from terminal.devices.face.cli import add_parsers as add_face_parsers
    from training.cli import add_parsers as add_training_parsers
    from training.dataset_cli import add_parsers as add_dataset_parsers

    add_bench_backend_parser(bench_sub)
    add_training_parsers(sub)
    add_dataset_parsers(sub)
    add_calibration_parsers(sub)
    add_face_parsers(sub, bench_sub)
    add_backend_parsers(sub)

    devices = sub.add_parser("devices", help="the terminal's devices")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    check = devices_sub.add_parser("check", help="the state of every configured device")
    check.add_argument("--config", type=Path, help="terminal config (default: demo defaults)")
    check.add_argument("--seconds", type=float, default=2.0, help="how long to watch each device")
    check.set_defaults(func=cmd_devices_check)

    bundle = sub.add_parser("bundle", help="model bundles")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    verify = bundle_sub.add_parser("verify", help="check a bundle's hashes and load its models")
    verify.add_argument("bundle", type=Path)
    verify.set_defaults(func=cmd_bundle_verify)

    from terminal.cashier_cli import add_parsers as add_cashier_parsers

    add_cashier_parsers(sub)
    from terminal.captures_cli import add_parsers as add_captures_parsers

    add_captures_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
