"""The data staff's ``trayscan dataset ...`` and ``trayscan review ...`` subcommands.

- ``trayscan dataset validate D [--format yolo|voc|coco] [--json] [--all]``: every fault with
  its file and line; exit 1 when there are errors (warnings allowed).
- ``trayscan dataset stats D [--json]``: images per split, objects per class, image sizes.
- ``trayscan dataset merge D1 [D2 ...] [--map MAP.yaml] [--menu MENU] --to OUT
  [--drop-unmapped]``: one YOLO dataset whose classes are the menu's dish ids.
- ``trayscan dataset split D --to OUT [--val 0.2] [--seed 0] [--from SPLIT]``: train and val
  by source photo.
- ``trayscan review export --captures DIR|--dataset D --to TASKS.json [--image-root URL]
  [--config-to label_config.xml]``: Label Studio tasks, the cashier's corrections first.
- ``trayscan review import EXPORT.json --to DATASET [--images DIR] [--keep-unreviewed]``: the
  reviewed labels back as a YOLO dataset.

No torch here: these run with the kiosk's dependencies only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from terminal.core.menu import Menu
    from training.dataset_check import ValidationReport

logger = logging.getLogger(__name__)

_FORMATS = ["yolo", "voc", "coco"]


class _CommandError(Exception):
    """A command that cannot go on; the message is printed as it is."""


def _default_menu() -> Path:
    from terminal.config import trayscan_home

    return trayscan_home() / "assets" / "menu" / "demo-menu.yaml"


def _load_menu(path: Path) -> Menu:
    from terminal.menu_file import load_menu
    from terminal.yamlmodels import FileError

    try:
        return load_menu(path)
    except FileError as exc:
        raise _CommandError(f"cannot read the menu:\n{exc}") from None


def _say(text: str) -> None:
    """Print to stdout; a reader that went away (``| head``) is not an error."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's recipe: point stdout at devnull so the exit flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _print_reports(reports: list[ValidationReport]) -> None:
    for report in reports:
        print(report.format_text(per_code=10, classes=False), file=sys.stderr)


def _run(name: str, action: Any, args: argparse.Namespace) -> int:
    """Run a command, turning the tools' errors into a message and exit status 1."""
    from training.dataset_tools import DatasetToolError, InvalidDatasetError
    from training.review import ReviewError

    try:
        result: int = action(args)
    except InvalidDatasetError as exc:
        _print_reports(exc.reports)
        print(f"trayscan {name}: {exc}", file=sys.stderr)
        return 1
    except (DatasetToolError, ReviewError, _CommandError) as exc:
        print(f"trayscan {name}: {exc}", file=sys.stderr)
        return 1
    return result


# --- dataset --------------------------------------------------------------------------------


def cmd_dataset_validate(args: argparse.Namespace) -> int:
    """Check a dataset; print the report as text or JSON; exit 1 on errors."""
    from training.dataset_check import validate_dataset

    report = validate_dataset(args.dataset, args.format)
    if args.json:
        _say(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    else:
        _say(report.format_text(per_code=None if args.all else 5))
    return 0 if report.ok else 1


def cmd_dataset_stats(args: argparse.Namespace) -> int:
    """Print a dataset's counts: splits, classes, sizes."""
    from training.dataset_check import validate_dataset

    report = validate_dataset(args.dataset, args.format)
    if args.json:
        data = report.to_dict()
        data.pop("findings")
        _say(json.dumps(data, ensure_ascii=False, indent=1))
        return 0
    lines = report.summary_lines()
    if report.n_images:
        per_image = report.n_objects / report.n_images
        sizes = ", ".join(f"{size} ({n})" for size, n in list(report.image_sizes.items())[:5])
        lines.append(f"{per_image:.1f} objects per image; image sizes: {sizes}")
    if report.findings:
        lines.append("(trayscan dataset validate lists the errors and warnings)")
    lines.append("")
    lines.extend(report.class_table())
    _say("\n".join(lines))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from training.dataset_tools import load_class_map, merge_datasets

    class_map = load_class_map(args.map) if args.map is not None else {}
    result = merge_datasets(
        [(path, args.format) for path in args.datasets],
        class_map,
        _load_menu(args.menu),
        args.to,
        drop_unmapped=args.drop_unmapped,
        map_path=args.map,
        menu_path=args.menu,
    )
    _say("\n".join(result.summary_lines()))
    return 0


def cmd_dataset_merge(args: argparse.Namespace) -> int:
    """Merge datasets into one YOLO dataset of menu ids."""
    return _run("dataset merge", _merge, args)


def _split(args: argparse.Namespace) -> int:
    from training.dataset_tools import split_dataset

    result = split_dataset(
        args.dataset,
        args.to,
        args.val,
        args.seed,
        format=args.format,
        from_splits=args.from_splits,
    )
    _say("\n".join(result.summary_lines()))
    return 0


def cmd_dataset_split(args: argparse.Namespace) -> int:
    """Split a dataset into train and val by source photo."""
    return _run("dataset split", _split, args)


# --- review ---------------------------------------------------------------------------------


def _review_export(args: argparse.Namespace) -> int:
    from training.review import (
        DEFAULT_IMAGE_ROOT,
        export_review,
        items_from_captures,
        items_from_dataset,
    )

    if (args.captures is None) == (args.dataset is None):
        raise _CommandError("give either --captures DIR or --dataset D")
    menu = _load_menu(args.menu)
    if args.captures is not None:
        source = args.captures
        items = items_from_captures(source)
    else:
        source = args.dataset if args.dataset.is_dir() else args.dataset.parent
        items = items_from_dataset(args.dataset, menu, args.format)
    if not items:
        raise _CommandError(f"{args.captures or args.dataset}: nothing to review")
    result = export_review(
        items,
        args.to,
        menu,
        source=source,
        image_root=args.image_root if args.image_root is not None else DEFAULT_IMAGE_ROOT,
        config_path=args.config_to,
    )
    _say("\n".join(result.summary_lines()))
    return 0


def cmd_review_export(args: argparse.Namespace) -> int:
    """Write Label Studio tasks (and the labelling config) for captures or a dataset."""
    return _run("review export", _review_export, args)


def _review_import(args: argparse.Namespace) -> int:
    from training.review import import_review

    result = import_review(
        args.export,
        args.to,
        _load_menu(args.menu),
        images=args.images,
        keep_unreviewed=args.keep_unreviewed,
    )
    _say("\n".join(result.summary_lines()))
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    """Read a Label Studio JSON export into a YOLO dataset."""
    return _run("review import", _review_import, args)


def add_parsers(sub: Any) -> None:
    """Add ``dataset`` and ``review`` and their actions to the ``trayscan`` parser."""
    menu_default = _default_menu()

    dataset = sub.add_parser("dataset", help="check, count, merge and split labelled datasets")
    actions = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")

    validate = actions.add_parser(
        "validate", help="every fault with its file and line; exit 1 on errors"
    )
    validate.add_argument(
        "dataset", type=Path, help="dataset YAML or folder, VOC folder, COCO JSON"
    )
    validate.add_argument("--format", choices=_FORMATS, help="dataset format (auto)")
    validate.add_argument("--json", action="store_true", help="the report as JSON")
    validate.add_argument("--all", action="store_true", help="list every finding, not 5 per kind")
    validate.set_defaults(func=cmd_dataset_validate)

    stats = actions.add_parser("stats", help="images per split, objects per class, image sizes")
    stats.add_argument("dataset", type=Path)
    stats.add_argument("--format", choices=_FORMATS)
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_dataset_stats)

    merge = actions.add_parser("merge", help="merge datasets onto the menu's dish ids (YOLO)")
    merge.add_argument("datasets", type=Path, nargs="+", metavar="DATASET")
    merge.add_argument(
        "--map", type=Path, help="YAML of 'source class: menu id' (null drops a class)"
    )
    merge.add_argument("--menu", type=Path, default=menu_default, help="menu YAML")
    merge.add_argument("--to", type=Path, required=True, help="a new folder")
    merge.add_argument("--format", choices=_FORMATS, help="format of every dataset (auto)")
    merge.add_argument(
        "--drop-unmapped",
        action="store_true",
        help="drop objects of classes that map to no dish instead of refusing",
    )
    merge.set_defaults(func=cmd_dataset_merge)

    split = actions.add_parser("split", help="train/val split by source photo")
    split.add_argument("dataset", type=Path)
    split.add_argument("--to", type=Path, required=True, help="a new folder")
    split.add_argument("--val", type=float, default=0.2, help="share of images for val")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--format", choices=_FORMATS)
    split.add_argument(
        "--from",
        dest="from_splits",
        action="append",
        metavar="SPLIT",
        help="only the images of this split of the input (repeatable; default all)",
    )
    split.set_defaults(func=cmd_dataset_split)

    review = sub.add_parser("review", help="review captures in Label Studio and import the result")
    review_actions = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    export = review_actions.add_parser("export", help="Label Studio tasks with predicted boxes")
    export.add_argument("--captures", type=Path, help="a capture store folder (var/captures)")
    export.add_argument("--dataset", type=Path, help="a dataset (e.g. from captures export)")
    export.add_argument("--format", choices=_FORMATS, help="format of --dataset (auto)")
    export.add_argument("--to", type=Path, required=True, help="the tasks JSON to write")
    export.add_argument(
        "--image-root",
        metavar="URL_OR_PATH",
        help="prefix of the image URLs (default /data/local-files/?d=, Label Studio's local "
        "files, with the document root set to the dataset folder)",
    )
    export.add_argument("--config-to", type=Path, help="write the labelling config XML here")
    export.add_argument("--menu", type=Path, default=menu_default, help="menu YAML")
    export.set_defaults(func=cmd_review_export)

    imported = review_actions.add_parser("import", help="a Label Studio JSON export to YOLO")
    imported.add_argument("export", type=Path, help="Label Studio's JSON export")
    imported.add_argument("--to", type=Path, required=True, help="a new folder")
    imported.add_argument("--images", type=Path, help="where the images are (default: as exported)")
    imported.add_argument("--menu", type=Path, default=menu_default, help="menu YAML")
    imported.add_argument(
        "--keep-unreviewed", action="store_true", help="keep tasks nobody annotated, as predicted"
    )
    imported.set_defaults(func=cmd_review_import)
