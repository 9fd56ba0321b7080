"""``trayscan captures``: what the terminal kept of its paid trays, for the data staff.

- ``trayscan captures export --since YYYY-MM-DD [--until DATE] [--to DIR]
  [--include-incomplete] [--config FILE]`` writes the captures of those days as a YOLO dataset
  (``images/``, ``labels/``, ``dataset.yaml`` with the menu ids as class names, sorted, and
  ``manifest.json``) and prints a JSON summary.
- ``trayscan captures stats [--config FILE]`` prints what the store holds (JSON).

The capture folder and the menu come from the terminal config (the demo defaults without
``--config``). Both commands only read the store, so they are safe while the kiosk runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from terminal.captures import CaptureStore
    from terminal.config import LoadedConfig

logger = logging.getLogger(__name__)


class _UsageError(Exception):
    """A command line that cannot be acted on; the message says why."""


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, not {text!r}") from None


def _local_midnight(day: dt.date) -> float:
    """Epoch seconds of the start of ``day`` in the terminal's local time."""
    return dt.datetime.combine(day, dt.time()).astimezone().timestamp()


def _open(config_path: Path | None) -> tuple[LoadedConfig, CaptureStore]:
    from terminal.captures import CaptureStore
    from terminal.config import load_config
    from terminal.yamlmodels import FileError

    try:
        loaded = load_config(config_path)
    except FileError as exc:
        raise _UsageError(str(exc)) from None
    config = loaded.config.captures
    folder = loaded.resolve(config.folder)
    if not folder.is_dir():
        raise _UsageError(f"{loaded.where('captures')}: captures.folder: {folder} does not exist")
    try:
        store = CaptureStore(
            folder, max_bytes=config.max_mb * 2**20, retention_days=config.retention_days
        )
    except OSError as exc:
        raise _UsageError(f"cannot read the captures in {folder}: {exc}") from None
    return loaded, store


def _menu_ids(loaded: LoadedConfig) -> list[str]:
    """Today's menu ids, or none (with a warning) when the menu cannot be read here."""
    from terminal.menu_file import load_menu
    from terminal.yamlmodels import FileError

    config = loaded.config
    path = (
        loaded.resolve(config.menu.path)
        if config.menu.source == "file"
        else loaded.resolve(config.data_dir) / "menu-from-backend.json"
    )
    try:
        return [item.id for item in load_menu(path)]
    except (FileError, OSError) as exc:
        logger.warning("menu %s unreadable (%s): classes are the captured dishes only", path, exc)
        return []


def cmd_captures_export(args: argparse.Namespace) -> int:
    """Export captures as a YOLO dataset with a manifest."""
    from terminal.captures import ExportError, class_names_for, export_yolo

    until: dt.date | None = args.until
    if until is not None and until < args.since:
        print("trayscan captures export: --until is before --since", file=sys.stderr)
        return 2
    try:
        loaded, store = _open(args.config)
    except _UsageError as exc:
        print(f"trayscan captures export: {exc}", file=sys.stderr)
        return 2
    end = _local_midnight(until + dt.timedelta(days=1)) if until is not None else None
    records = store.list(since=_local_midnight(args.since), until=end)
    out: Path = args.to or Path(
        f"captures-{args.since.isoformat()}_{(until or dt.date.today()).isoformat()}"
    )
    try:
        summary = export_yolo(
            records,
            out,
            class_names=class_names_for(records, _menu_ids(loaded)),
            include_incomplete=args.include_incomplete,
            since=args.since.isoformat(),
            until=until.isoformat() if until is not None else None,
        )
    except (ExportError, OSError) as exc:
        print(f"trayscan captures export: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary.to_json(), ensure_ascii=False))
    return 0


def cmd_captures_stats(args: argparse.Namespace) -> int:
    """Print what the capture store holds."""
    try:
        _, store = _open(args.config)
    except _UsageError as exc:
        print(f"trayscan captures stats: {exc}", file=sys.stderr)
        return 2
    stats = store.stats().to_json()
    for key in ("added", "pruned", "failed", "refused"):
        stats.pop(key)  # counters of this process: always 0 here
    records = store.list()
    days: dict[str, int] = {}
    for record in records:
        day = dt.datetime.fromtimestamp(record.time).date().isoformat()
        days[day] = days.get(day, 0) + 1
    stats.update(
        {
            "folder": str(store.folder),
            "corrected": sum(r.corrected for r in records),
            "incomplete": sum(not r.complete for r in records),
            "needs_review": sum(r.needs_review for r in records),
            "per_day": days,
        }
    )
    print(json.dumps(stats, ensure_ascii=False))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``trayscan captures export|stats`` to the main parser's subcommands."""
    captures = sub.add_parser("captures", help="the trays the terminal kept for the data staff")
    actions = captures.add_subparsers(dest="captures_command", required=True, metavar="ACTION")

    export = actions.add_parser("export", help="write captures as a YOLO dataset with a manifest")
    export.add_argument("--since", type=_day, required=True, help="first day, YYYY-MM-DD")
    export.add_argument("--until", type=_day, help="last day, included (default: today)")
    export.add_argument("--to", type=Path, help="a new folder (default: ./captures-SINCE_UNTIL)")
    export.add_argument(
        "--include-incomplete",
        action="store_true",
        help="also export captures where a dish the cashier added has no box",
    )
    export.add_argument("--config", type=Path, help="terminal config (default: demo defaults)")
    export.set_defaults(func=cmd_captures_export)

    stats = actions.add_parser("stats", help="how many captures, how much disk, since when")
    stats.add_argument("--config", type=Path, help="terminal config (default: demo defaults)")
    stats.set_defaults(func=cmd_captures_stats)
