"""``trayscan devices check``: one screen a technician can read, every configured device on it.

Each device is watched for a couple of seconds: the camera must deliver frames that are neither
black nor blown out, the scale must send valid frames, the card reader must be open, the ledger
must answer, the model bundle must be verified. What is wrong comes with what to do about it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from terminal.backend.http import HttpBackend
from terminal.backend.payments import OutboxBackend
from terminal.core.ports import BackendRequestError, BackendUnavailableError, ScaleReading
from terminal.devices.scale import ScaleError, SerialScale
from vision.sources import CameraSource

if TYPE_CHECKING:
    from terminal.app import Terminal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceState:
    """One line of the report."""

    device: str
    ok: bool
    summary: str
    advice: str = ""


def check_camera(terminal: Terminal, seconds: float) -> DeviceState:

    camera = terminal.camera
    deadline = time.monotonic() + seconds
    frames, last = 0, None
    while time.monotonic() < deadline:
        frame = camera.read(timeout_s=0.5) if isinstance(camera, CameraSource) else camera.read()
        if frame is None:
            if not isinstance(camera, CameraSource):
                break
            continue
        frames, last = frames + 1, frame
        if not isinstance(camera, CameraSource) and frames >= 3:
            break
    kind = type(camera).__name__
    if isinstance(camera, CameraSource):
        health = camera.health()
        ok = health.state == "ok" and not health.blocked and health.brightness_ok
        summary = (
            f"{kind} {health.state}, {health.fps:.1f} fps, {health.frames_dropped} dropped, "
            f"brightness {health.mean_brightness:.0f}, {health.reconnects} reconnects"
        )
        advice = ""
        if health.blocked:
            advice = "the lens looks blocked: clear it"
        elif not health.brightness_ok:
            advice = "adjust the light or the exposure, then run trayscan calibrate camera"
        elif health.state != "ok":
            advice = f"check the cable and the device ({health.last_error or 'no frames'})"
        return DeviceState("camera", ok, summary, advice)
    if last is None:
        return DeviceState("camera", False, f"{kind}: no frames", "check camera.folder / path")
    return DeviceState("camera", True, f"{kind}: {frames} frames, {last.width}x{last.height}")


def check_scale(terminal: Terminal, seconds: float) -> DeviceState:
    scale = terminal.scale
    deadline = time.monotonic() + seconds
    reading: ScaleReading | None = None
    error = ""
    while time.monotonic() < deadline:
        try:
            reading = scale.read()
            error = ""
            if not isinstance(getattr(scale, "scale", scale), SerialScale):
                break
        except ScaleError as exc:
            error = str(exc)
        time.sleep(0.1)
    kind = type(scale).__name__
    driver = getattr(scale, "scale", scale)  # a CalibratedScale wraps the driver
    if isinstance(driver, SerialScale):
        status = driver.status()
        detail = (
            f"{status.protocol} on {status.url}, {status.frames_ok} frames ok, "
            f"{status.frames_bad} bad, {status.reconnects} reconnects"
        )
        if reading is None:
            return DeviceState(
                "scale",
                False,
                f"{detail}: no weight",
                "check the cable, the port, the protocol and the baud rate: "
                f"{error or status.last_error}",
            )
        if status.frames_bad > status.frames_ok:
            return DeviceState(
                "scale",
                False,
                f"{detail}: mostly garbage",
                "the protocol or the baud rate does not match the indicator's settings",
            )
    else:
        detail = kind
    if reading is None:
        return DeviceState("scale", False, f"{detail}: no reading", error)
    state = "stable" if reading.stable else "moving"
    if reading.overload or reading.underload:
        return DeviceState(
            "scale",
            False,
            f"{detail}: {'overload' if reading.overload else 'underload'}",
            "take everything off the scale, then zero it",
        )
    return DeviceState("scale", True, f"{detail}: {reading.gross_g} g {state}")


def check_card_reader(terminal: Terminal) -> DeviceState:
    reader = terminal.card_reader
    kind = type(reader).__name__
    connected = getattr(reader, "connected", None)
    if connected is False:
        return DeviceState(
            "card reader",
            False,
            f"{kind}: not connected",
            "check the cable and the port; for a keyboard-wedge reader the input device path "
            "and permissions (input group)",
        )
    extra = []
    for name in ("bad_frames", "repeats_dropped", "reconnects"):
        value = getattr(reader, name, None)
        if isinstance(value, int):
            extra.append(f"{value} {name.replace('_', ' ')}")
    if getattr(reader, "grabbed", None) is False:
        extra.append("not grabbed: a text field could receive card numbers")
    return DeviceState("card reader", True, f"{kind}" + (f": {', '.join(extra)}" if extra else ""))


def check_backend(terminal: Terminal) -> DeviceState:
    backend = terminal.backend
    kind = type(backend).__name__
    if isinstance(backend, OutboxBackend):
        return _check_remote(backend)
    try:
        backend.lookup_card("00000000")
    except Exception as exc:  # any failure here is the thing to report
        return DeviceState("backend", False, f"{kind}: {exc}", "check the ledger file or the URL")
    path = getattr(backend, "path", None)
    return DeviceState("backend", True, f"{kind}" + (f" at {path}" if path else "") + ": answers")


def _check_remote(backend: OutboxBackend) -> DeviceState:
    """A remote backend: is it reachable, and what waits in the outbox for it."""
    online = backend.online
    kind = type(online).__name__
    queued = backend.outbox.depth()
    flagged = len(backend.outbox.flagged())
    waiting = f"{queued} waiting in the outbox, {flagged} flagged for the cashier"
    try:
        if isinstance(online, HttpBackend):
            online.health()
        else:
            online.lookup_card("00000000")
    except (BackendUnavailableError, BackendRequestError) as exc:
        return DeviceState(
            "backend",
            False,
            f"{kind}: {exc}; {waiting}",
            "check the network and the backend's URL; card payments continue offline within "
            "the offline limit",
        )
    ok = flagged == 0
    advice = "" if ok else "a cashier must look at the flagged payments (cashier screen)"
    return DeviceState("backend", ok, f"{kind}: reachable; {waiting}", advice)


def check_model(terminal: Terminal) -> DeviceState:
    recogniser = terminal.recogniser
    gallery = getattr(getattr(recogniser, "active", recogniser), "gallery", None)
    dishes = f", {len(gallery.dishes())} dishes in the gallery" if gallery is not None else ""
    return DeviceState("model", True, f"{recogniser.model_version}{dishes}")


def check_devices(terminal: Terminal, *, seconds: float = 2.0) -> list[DeviceState]:
    """Watch every device of ``terminal`` and say how it is."""
    return [
        check_camera(terminal, seconds),
        check_scale(terminal, seconds),
        check_card_reader(terminal),
        check_backend(terminal),
        check_model(terminal),
    ]


def render_report(report: list[DeviceState]) -> str:
    """The report as aligned lines: device, OK/FAULT, summary, and advice on faults."""
    lines = []
    for item in report:
        lines.append(f"{item.device:<12} {'OK' if item.ok else 'FAULT':<6} {item.summary}")
        if item.advice:
            lines.append(f"{'':<12} {'':<6} -> {item.advice}")
    return "\n".join(lines)
