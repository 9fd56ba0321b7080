"""The technician's ``trayscan calibrate ...`` subcommands: scale, camera and check.

Each calibration writes its own section of the terminal's profile file and keeps the other,
so the scale and the camera can be calibrated in either order and again one at a time.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration.profile import (
    CalibrationError,
    CameraProfile,
    ScaleProfile,
    TerminalProfile,
    load_profile,
    save_profile,
)
from terminal.core.ports import Scale

logger = logging.getLogger(__name__)

#: What the rehearsal's simulated technician puts down for each tableware id.
REHEARSAL_TARES_G = {"tray": 410, "bowl": 180, "plate": 250, "cup": 120, "saucer": 45}
_REHEARSAL_OTHER_TARE_G = 200
#: How long a serial scale may take to send its first weight.
_SCALE_CONNECT_S = 5.0
#: Frames read and thrown away before the calibration frame, while auto exposure settles.
_CAMERA_WARMUP_FRAMES = 10


def default_profile_path() -> Path:
    """Where the terminal's calibration profile lives unless ``--profile`` says otherwise."""
    from terminal.config import trayscan_home

    return trayscan_home() / "var" / "calibration.yaml"


def _float_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not grams separated by commas, e.g. 500,1000,2000"
        ) from None
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive grams, e.g. 500,1000,2000")
    return values


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _existing_profile(path: Path, command: str) -> TerminalProfile | None:
    """The profile already at ``path`` (empty when there is none), or None after saying why."""
    if not path.exists():
        return TerminalProfile()
    try:
        return load_profile(path)
    except ValueError as exc:  # FileError, one line per problem
        print(
            f"trayscan calibrate {command}: the profile {path} cannot be updated:\n{exc}\n"
            f"fix it, or move it away to start a new one",
            file=sys.stderr,
        )
    return None


def _write(profile: TerminalProfile, path: Path, command: str) -> bool:
    """Save ``profile``; False after saying why it could not be written."""
    try:
        save_profile(profile, path)
    except OSError as exc:
        print(f"trayscan calibrate {command}: cannot write {path}: {exc}", file=sys.stderr)
        return False
    return True


# -- scale ---------------------------------------------------------------------------------


def _ask(prompt: str) -> str:
    try:
        return input(f"{prompt} ")
    except EOFError:
        raise CalibrationError("no more answers (end of input); nothing was saved") from None


def _wait_for_weight(scale: Scale, timeout_s: float) -> str | None:
    """None once the scale gives a reading, else the last reason it did not."""
    from terminal.devices.scale import ScaleError

    deadline = time.monotonic() + timeout_s
    reason = "no reading"
    while time.monotonic() < deadline:
        try:
            scale.read()
            return None
        except ScaleError as exc:
            reason = str(exc)
        time.sleep(0.1)
    return reason


def _nothing() -> None:
    """Closing a fake scale."""


def cmd_calibrate_scale(args: argparse.Namespace) -> int:
    """Calibrate the scale interactively and write the scale section of the profile."""
    from calibration.scale_cal import Sampling, ScaleStep, calibrate_scale
    from terminal.devices.fakes import FakeScale
    from terminal.devices.scale import ScaleError, SerialScale

    if args.url is not None and args.protocol is None:
        print("trayscan calibrate scale: --url needs --protocol NAME", file=sys.stderr)
        return 2
    existing = _existing_profile(args.profile, "scale")
    if existing is None:
        return 1

    placed: Callable[[ScaleStep], None] | None = None
    close: Callable[[], None] = _nothing
    scale: Scale
    if args.fake:
        fake = FakeScale(settle_readings=3)

        def place_on_fake(step: ScaleStep) -> None:
            # The rehearsal plays the technician too: it puts down what each step asks for.
            if step.load_g is not None:
                fake.place(round(step.load_g))
            else:
                fake.place(REHEARSAL_TARES_G.get(step.tableware or "", _REHEARSAL_OTHER_TARE_G))

        scale, placed = fake, place_on_fake
        sampling = Sampling(readings=args.readings)
        print("Rehearsal on a simulated scale: nothing needs to be placed.")
    else:
        try:
            serial_scale = SerialScale(args.url, args.protocol, baudrate=args.baudrate)
        except ScaleError as exc:
            print(f"trayscan calibrate scale: {exc}", file=sys.stderr)
            return 2
        scale, close = serial_scale, serial_scale.close
        problem = _wait_for_weight(scale, _SCALE_CONNECT_S)
        if problem is not None:
            close()
            print(f"trayscan calibrate scale: {problem}", file=sys.stderr)
            return 1
        sampling = Sampling(readings=args.readings, max_reads=300, interval_s=0.1)

    try:
        scale_profile = calibrate_scale(
            scale,
            _ask,
            print,
            reference_g=args.reference_g,
            loads_g=args.loads,
            tableware=args.tableware,
            tolerance_g=args.tolerance_g,
            sampling=sampling,
            placed=placed,
        )
    except (CalibrationError, ValueError) as exc:
        print(f"trayscan calibrate scale: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ntrayscan calibrate scale: cancelled; nothing was saved", file=sys.stderr)
        return 130
    finally:
        close()

    updated = TerminalProfile(scale=scale_profile, camera=existing.camera)
    if not _write(updated, args.profile, "scale"):
        return 1
    print(_scale_summary(scale_profile))
    print(f"wrote the scale section of {args.profile}")
    if not scale_profile.linearity_ok:
        print(
            "trayscan calibrate scale: linearity failed; the profile says so until the scale "
            "is fixed and calibrated again",
            file=sys.stderr,
        )
        return 1
    return 0


def _scale_summary(profile: ScaleProfile) -> str:
    worst = profile.worst_point()
    linearity = (f"within ±{profile.tolerance_g:g} g" if profile.linearity_ok else "FAILED") + (
        f" (worst {worst.error_g:+.1f} g at {worst.load_g:g} g)" if worst is not None else ""
    )
    tares = ", ".join(f"{name} {grams} g" for name, grams in profile.tableware_tares_g.items())
    return (
        f"scale: zero {profile.zero_offset_g:+.1f} g, span {profile.span_factor:.6f} "
        f"(reference {profile.reference_g:g} g), linearity {linearity}, "
        f"tares: {tares or 'none'}; calibrated {profile.calibrated_at}"
    )


# -- camera --------------------------------------------------------------------------------


def _grab_frame(args: argparse.Namespace) -> npt.NDArray[np.uint8]:
    """The calibration frame: the image file, or a fresh frame of the live camera.

    Raises:
        CalibrationError: the file cannot be read, or the camera gives no frame.
    """
    from vision.sources import CameraSource, FrameSourceError, make_source, read_image

    if args.image is not None:
        try:
            return read_image(args.image)
        except FrameSourceError as exc:
            raise CalibrationError(str(exc)) from exc
    device: int | str = args.device if args.device is not None else args.url
    options: dict[str, Any] = {"width": args.width, "height": args.height}
    try:
        source = make_source("opencv", device=device, **options)
    except FrameSourceError as exc:
        raise CalibrationError(str(exc)) from exc
    try:
        if not isinstance(source, CameraSource):  # make_source("opencv") always makes one
            raise CalibrationError(f"frame source for {device} is not a live camera")
        frame = None
        # The first frames of a camera come before its auto exposure settles.
        for _ in range(_CAMERA_WARMUP_FRAMES):
            latest = source.read(timeout_s=5.0)
            if latest is None:
                break
            frame = latest
        if frame is None:
            error = source.health().last_error or "no picture"
            raise CalibrationError(
                f"camera {device} gave no frame: {error}; check the cable and the device "
                f"number or URL"
            )
        return frame.image
    finally:
        source.close()


def cmd_calibrate_camera(args: argparse.Namespace) -> int:
    """Measure the tray area and picture quality and write the camera section of the profile."""
    import cv2

    from calibration.camera_cal import (
        calibrate_camera,
        draw_area,
        exposure_check,
        focus_problem,
        parse_corners,
        white_balance_check,
    )

    if args.corners is not None:
        try:
            corners: list[tuple[int, int]] | None = parse_corners(args.corners)
        except ValueError as exc:
            print(f"trayscan calibrate camera: --corners: {exc}", file=sys.stderr)
            return 2
    else:
        corners = None
    existing = _existing_profile(args.profile, "camera")
    if existing is None:
        return 1
    try:
        image = _grab_frame(args)
        camera_profile = calibrate_camera(image, corners=corners, auto=args.auto)
    except CalibrationError as exc:
        print(f"trayscan calibrate camera: {exc}", file=sys.stderr)
        return 1

    area = camera_profile.tray_area
    exposure = exposure_check(image, area)
    balance = white_balance_check(image, area)
    focus = focus_problem(camera_profile.focus)
    problems = [p for p in (exposure["problem"], balance["problem"], focus) if p is not None]

    updated = TerminalProfile(scale=existing.scale, camera=camera_profile)
    if not _write(updated, args.profile, "camera"):
        return 1
    overlay_written = args.overlay is not None and cv2.imwrite(
        str(args.overlay), draw_area(image, area)
    )
    if args.overlay is not None and not overlay_written:
        print(f"trayscan calibrate camera: cannot write {args.overlay}", file=sys.stderr)

    def verdict(problem: str | None) -> str:
        return "OK" if problem is None else f"NOT OK: {problem}"

    x1, y1, x2, y2 = area
    share = (x2 - x1) * (y2 - y1) / (camera_profile.frame_width * camera_profile.frame_height)
    print(
        f"tray area: ({x1}, {y1})-({x2}, {y2}), {x2 - x1}x{y2 - y1} px, {share:.0%} of the "
        f"{camera_profile.frame_width}x{camera_profile.frame_height} frame"
    )
    print(f"brightness: {exposure['mean']:.0f} {verdict(exposure['problem'])}")
    print(
        f"white balance: r {balance['r']:.2f} g {balance['g']:.2f} b {balance['b']:.2f} "
        f"{verdict(balance['problem'])}"
    )
    print(f"focus: {camera_profile.focus:.0f} {verdict(focus)}")
    if overlay_written:
        print(f"wrote the picture with the tray area outlined to {args.overlay}")
    print(f"wrote the camera section of {args.profile}")
    if problems:
        print(
            "trayscan calibrate camera: fix what is NOT OK and run the calibration again",
            file=sys.stderr,
        )
        return 1
    return 0


def _camera_summary(profile: CameraProfile) -> str:
    x1, y1, x2, y2 = profile.tray_area
    red, green, blue = profile.white_balance_gains
    return (
        f"camera: {profile.frame_width}x{profile.frame_height} frame, tray area "
        f"({x1}, {y1})-({x2}, {y2}), brightness {profile.empty_brightness:.0f}, white balance "
        f"r {red:.2f} g {green:.2f} b {blue:.2f}, focus {profile.focus:.0f}; "
        f"calibrated {profile.calibrated_at}"
    )


# -- check ---------------------------------------------------------------------------------


def profile_problems(profile: TerminalProfile) -> list[str]:
    """What keeps a valid profile from being used, one line each; empty when all is well."""
    from calibration.camera_cal import camera_problems
    from calibration.scale_cal import scale_problems

    if profile.scale is None and profile.camera is None:
        return ["nothing is calibrated: run `trayscan calibrate scale` and `... camera`"]
    problems: list[str] = []
    if profile.scale is not None:
        problems += scale_problems(profile.scale)
    if profile.camera is not None:
        problems += camera_problems(profile.camera)
    return problems


def cmd_calibrate_check(args: argparse.Namespace) -> int:
    """Validate a profile file; print its problems (exit 1) or a summary (exit 0)."""
    try:
        profile = load_profile(args.profile)
    except ValueError as exc:  # FileError: one line per problem already
        print(exc, file=sys.stderr)
        return 1
    problems = profile_problems(profile)
    if problems:
        for problem in problems:
            print(f"{args.profile}: {problem}", file=sys.stderr)
        return 1
    print(f"{args.profile}: OK")
    print(
        _scale_summary(profile.scale)
        if profile.scale is not None
        else "scale: not calibrated (run `trayscan calibrate scale`)"
    )
    print(
        _camera_summary(profile.camera)
        if profile.camera is not None
        else "camera: not calibrated (run `trayscan calibrate camera`)"
    )
    return 0


# -- parsers -------------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """Add ``calibrate`` and its actions to the ``trayscan`` parser."""
    from terminal.devices.scale import PROTOCOLS

    profile_default = default_profile_path()
    calibrate = sub.add_parser("calibrate", help="calibrate this terminal's scale and camera")
    actions = calibrate.add_subparsers(dest="calibrate_command", required=True, metavar="WHAT")

    scale = actions.add_parser(
        "scale", help="zero, span, linearity and tableware tares, step by step"
    )
    port = scale.add_mutually_exclusive_group(required=True)
    port.add_argument("--url", help="the scale's port: /dev/ttyUSB0, socket://host:port, ...")
    port.add_argument("--fake", action="store_true", help="rehearse on a simulated scale")
    scale.add_argument("--protocol", choices=sorted(PROTOCOLS), help="the scale's protocol")
    scale.add_argument("--baudrate", type=int, default=9600)
    scale.add_argument(
        "--reference-g", type=float, default=1000.0, help="the reference weight (default 1000)"
    )
    scale.add_argument(
        "--loads",
        type=_float_list,
        default=[500.0, 1000.0, 2000.0],
        metavar="G,G,...",
        help="check loads for linearity (default 500,1000,2000)",
    )
    scale.add_argument(
        "--tableware",
        type=_name_list,
        default=["bowl", "plate"],
        metavar="ID,ID,...",
        help="tableware ids to weigh empty (default bowl,plate)",
    )
    scale.add_argument(
        "--tolerance-g", type=float, default=2.0, help="largest linearity error (default 2)"
    )
    scale.add_argument(
        "--readings", type=int, default=10, help="stable readings averaged per step (default 10)"
    )
    scale.add_argument("--profile", type=Path, default=profile_default, help="the profile file")
    scale.set_defaults(func=cmd_calibrate_scale)

    camera = actions.add_parser("camera", help="tray area, exposure, white balance and focus")
    source = camera.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="a photo of the empty scanner")
    source.add_argument("--device", type=int, help="grab a frame from this camera index")
    source.add_argument("--url", help="grab a frame from this stream URL")
    camera.add_argument("--width", type=int, help="frame width to ask a live camera for")
    camera.add_argument("--height", type=int, help="frame height to ask a live camera for")
    area = camera.add_mutually_exclusive_group(required=True)
    area.add_argument(
        "--corners", metavar='"X,Y X,Y ..."', help="the tray's 2 opposite or 4 corners, in pixels"
    )
    area.add_argument("--auto", action="store_true", help="find the tray automatically")
    camera.add_argument(
        "--overlay", type=Path, help="write the frame with the tray area outlined to this file"
    )
    camera.add_argument("--profile", type=Path, default=profile_default, help="the profile file")
    camera.set_defaults(func=cmd_calibrate_camera)

    check = actions.add_parser("check", help="validate a calibration profile")
    check.add_argument("--profile", type=Path, default=profile_default, help="the profile file")
    check.set_defaults(func=cmd_calibrate_check)
