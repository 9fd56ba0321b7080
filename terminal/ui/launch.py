"""Starting the kiosk screens from ``trayscan kiosk``, or saying why they cannot start.

No Qt is imported here until the screens really start, so the command line can ask
:func:`screens_unavailable` on a machine without PySide6 or without a display and fall back to
the headless terminal.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Mapping

from terminal.app import StartupError, Terminal
from terminal.ui.drivers import DemoTimings

logger = logging.getLogger(__name__)

#: Qt platforms that draw without an X11 or Wayland session (a kiosk on the framebuffer, tests).
HEADLESS_PLATFORMS = frozenset({"offscreen", "eglfs", "linuxfb", "vnc", "vkkhrdisplay"})


def screens_unavailable(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the screens cannot open here, or None when they can."""
    env = os.environ if environ is None else environ
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or platform in HEADLESS_PLATFORMS):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    if importlib.util.find_spec("PySide6") is None:
        return "PySide6 is not installed (pip install -e '.[ui]')"
    return None


def demo_timings_for(interval_s: float) -> DemoTimings:
    """The demo's pace for ``--interval S``: S seconds of empty scanner between diners, the other
    moments in proportion; 0 runs as fast as it can, the simulated cashier fixing held trays at
    once (for scripts and tests)."""
    return DemoTimings(
        idle_s=interval_s,
        settle_s=interval_s / 2,
        tap_after_s=interval_s * 1.25,
        paid_s=interval_s * 1.75,
        cashier_timeout_s=interval_s * 22.5,
    )


def run_screens(
    terminal: Terminal, *, demo: bool, max_trays: int | None, interval_s: float | None
) -> int:
    """Run the kiosk screens over ``terminal`` until they close; closes the terminal."""
    from terminal.ui.app import run_kiosk

    interval = interval_s if interval_s is not None else (0.0 if max_trays else 2.0)
    try:
        return run_kiosk(
            terminal,
            demo=demo,
            max_trays=max_trays,
            out=sys.stdout,
            timings=demo_timings_for(interval),
            customer_camera=terminal.customer_camera,
        )
    except StartupError as exc:
        print(f"trayscan kiosk: cannot start:\n{exc}", file=sys.stderr)
        return 2
    finally:
        terminal.close()
