"""The ``trayscan`` command: one console script, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from terminal import __version__

logger = logging.getLogger(__name__)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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
        reason = "no display" if not _has_display() else "the kiosk screens are not built yet"
        print(f"trayscan kiosk: {reason}; running the headless demo", file=sys.stderr)
    interval = args.interval if args.interval is not None else (0.0 if args.max_trays else 2.0)
    demo = HeadlessDemo(terminal, sys.stdout, interval_s=interval)
    try:
        counts = demo.run(args.max_trays)
    except KeyboardInterrupt:
        counts = demo.counts
    finally:
        terminal.close()
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no trays"
    print(f"trayscan kiosk: {summary}", file=sys.stderr)
    return 0


def cmd_validate_config(args: argparse.Namespace) -> int:
    """Check a config file and everything it points at."""
    from terminal.app import StartupError, build_terminal
    from terminal.config import load_config
    from terminal.yamlmodels import FileError

    try:
        loaded = load_config(args.file)
    except FileError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        terminal = build_terminal(loaded, check_only=True)
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return 1
    terminal.close()
    print(f"{args.file}: OK (terminal {loaded.config.terminal_id}, {len(terminal.menu)} dishes)")
    return 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
