"""The terminal's configuration: one YAML file per terminal, read into strict models.

Every section has defaults that run the demo, so ``trayscan kiosk --demo`` needs no file.
Swappable parts (camera, scale, card reader, backend, model) are chosen by ``type``. Relative
paths are resolved against the trayscan home: ``$TRAYSCAN_HOME`` when set, else the checkout
the package runs from.

Example (see ``assets/config/terminal.example.yaml`` for every key)::

    terminal_id: canteen-2-left
    scale: {type: serial, url: /dev/ttyUSB0, protocol: mt-sics}
    backend: {type: http, url: "https://canteen.example/api", secret_file: /etc/trayscan/secret}
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from terminal.backend.campus import CampusCardBackendConfig
from terminal.yamlmodels import FileError, StrictModel, load_yaml_model, locate

logger = logging.getLogger(__name__)

DEMO_CARDS = ("04A1B2C3D4", "04E5F60718", "0492A3B4C5")
SAMPLE_DATASET = "datasets/vn-canteen-trays-sample"


def trayscan_home() -> Path:
    """The folder relative paths in a config are resolved against."""
    env = os.environ.get("TRAYSCAN_HOME")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


# --- camera -------------------------------------------------------------------------------


class ReplayCameraConfig(StrictModel):
    """Replays the photos of a folder as if a camera saw one tray after another."""

    type: Literal["replay"] = "replay"
    folder: str = f"{SAMPLE_DATASET}/images"
    loop: bool = True


class OpenCVCameraConfig(StrictModel):
    """A USB or IP camera opened with OpenCV: a device index or a stream URL."""

    type: Literal["opencv"]
    device: int | str = 0
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    fps: float | None = Field(default=None, gt=0)


class VideoCameraConfig(StrictModel):
    """A recorded video file."""

    type: Literal["video"]
    path: str
    loop: bool = False


CameraConfig = Annotated[
    ReplayCameraConfig | OpenCVCameraConfig | VideoCameraConfig, Field(discriminator="type")
]


# --- scale --------------------------------------------------------------------------------


class FakeScaleConfig(StrictModel):
    """The shipped fake scale: the demo puts each tray's simulated weight on it."""

    type: Literal["fake"] = "fake"
    settle_readings: int = Field(default=3, ge=0)


class SerialScaleConfig(StrictModel):
    """A scale on a serial port (any ``serial_for_url`` URL: /dev/ttyUSB0, socket://, loop://)."""

    type: Literal["serial"]
    url: str
    protocol: Literal["mt-sics", "toledo-continuous", "aclas-os2", "ascii-line"]
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_s: float = Field(default=0.5, gt=0)


ScaleConfig = Annotated[FakeScaleConfig | SerialScaleConfig, Field(discriminator="type")]


# --- card reader --------------------------------------------------------------------------


class FakeCardReaderConfig(StrictModel):
    """The shipped fake reader: the demo taps these cards in turn."""

    type: Literal["fake"] = "fake"
    cards: list[str] = Field(default_factory=lambda: list(DEMO_CARDS), min_length=1)


class KeyboardWedgeCardReaderConfig(StrictModel):
    """A USB reader that types the card number and Enter, read from its evdev input device."""

    type: Literal["keyboard_wedge"]
    device: str
    grab: bool = True
    byte_order: Literal["msb", "lsb"] = "msb"
    uid_format: Literal["auto", "hex", "dec10", "w26"] = "auto"
    debounce_s: float = Field(default=1.5, ge=0)


class SerialCardReaderConfig(StrictModel):
    """A reader on a serial port: a line of digits/hex, or STX-framed EM4100-style frames."""

    type: Literal["serial"]
    url: str
    baudrate: int = Field(default=9600, gt=0)
    protocol: Literal["line", "frame"] = "line"
    byte_order: Literal["msb", "lsb"] = "msb"
    uid_format: Literal["auto", "hex", "dec10", "w26"] = "auto"
    debounce_s: float = Field(default=1.5, ge=0)


CardReaderConfig = Annotated[
    FakeCardReaderConfig | KeyboardWedgeCardReaderConfig | SerialCardReaderConfig,
    Field(discriminator="type"),
]


# --- backend ------------------------------------------------------------------------------


class EmbeddedBackendConfig(StrictModel):
    """No canteen backend: the terminal keeps accounts and transactions in a local SQLite file."""

    type: Literal["embedded"] = "embedded"
    ledger: str = "var/ledger.sqlite"


class OfflineConfig(StrictModel):
    """What the terminal may accept while its backend cannot be reached."""

    enabled: bool = True
    per_card_daily_limit_fen: int = Field(default=3000, ge=0)
    max_cache_age_h: float = Field(default=72.0, gt=0)


class HttpBackendConfig(StrictModel):
    """The canteen's backend over HTTP/JSON (``docs/backend-contract.md``).

    The terminal signs every request with its own secret (``trayscan backend add-terminal``
    prints it), given inline or, better, in a file only the kiosk user can read.
    """

    type: Literal["http"]
    url: str
    secret: str | None = Field(default=None, min_length=16)
    secret_file: str | None = None
    timeout_s: float = Field(default=3.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    verify_tls: bool | str = True
    outbox: str = "var/outbox.sqlite"
    offline: OfflineConfig = Field(default_factory=OfflineConfig)

    @model_validator(mode="after")
    def _check(self) -> HttpBackendConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret and secret_file")
        return self


class CampusCardConfig(CampusCardBackendConfig):
    """A campus card (一卡通) platform as the backend (``docs/campus-card.md``), behind the
    outbox like the HTTP backend."""

    outbox: str = "var/outbox.sqlite"
    offline: OfflineConfig = Field(default_factory=OfflineConfig)


BackendConfig = Annotated[
    EmbeddedBackendConfig | HttpBackendConfig | CampusCardConfig, Field(discriminator="type")
]


# --- model --------------------------------------------------------------------------------


class GroundTruthModelConfig(StrictModel):
    """A fake recogniser that reads the replayed photos' labels (tests)."""

    type: Literal["ground_truth"]
    dataset: str = f"{SAMPLE_DATASET}/dataset.yaml"


class BundleModelConfig(StrictModel):
    """A model bundle folder (detector, identifier, gallery), installed into ``store`` at start.

    The store keeps the bundle in use and the one before it, for rollback.
    """

    type: Literal["bundle"] = "bundle"
    path: str = "assets/models/default"
    store: str = "var/models"
    threads: int = Field(default=2, ge=1, le=16)


ModelConfig = Annotated[GroundTruthModelConfig | BundleModelConfig, Field(discriminator="type")]


# --- face accounts ------------------------------------------------------------------------


class FaceLivenessConfig(StrictModel):
    """The anti-spoofing check on every face payment (``terminal.devices.face.liveness``)."""

    prompt: Literal["head_turn", "blink", "either"] = "head_turn"
    min_frames: int = Field(default=5, ge=2, le=60)
    min_parallax: float = Field(default=0.03, ge=0)
    check_screen: bool = True


class FaceConfig(StrictModel):
    """Face accounts: diners who enrolled pay by looking at the customer camera (off unless
    ``enabled``; needs the ``face`` extra). Templates are cached on the terminal encrypted with
    AES-GCM under a 32-byte key from ``cache_key_file`` or the variable ``cache_key_env``."""

    enabled: bool = False
    detector_model: str = "assets/models/face/face_detection_yunet_2026may.onnx"
    match_threshold: float = Field(default=0.5, gt=0, le=2)
    match_margin: float = Field(default=0.08, ge=0)
    min_face_px: float = Field(default=80, gt=0)
    min_sharpness: float = Field(default=50, ge=0)
    cache: str = "var/face-templates.cache"
    cache_key_file: str | None = None
    cache_key_env: str | None = None
    liveness: FaceLivenessConfig = Field(default_factory=FaceLivenessConfig)
    #: The camera facing the diner (not the tray camera): an OpenCV device or stream, a video,
    #: or a folder of photos replayed. None: face payment and enrolment have no camera.
    camera: CameraConfig | None = None

    @model_validator(mode="after")
    def _check_key(self) -> FaceConfig:
        if self.enabled and not (self.cache_key_file or self.cache_key_env):
            raise ValueError(
                "face accounts need a cache key: give cache_key_file or cache_key_env "
                "(make one with `trayscan face new-key FILE`)"
            )
        return self


# --- the rest -----------------------------------------------------------------------------


class MenuSourceConfig(StrictModel):
    """Where today's menu comes from: a YAML file, or the backend."""

    source: Literal["file", "backend"] = "file"
    path: str = "assets/menu/demo-menu.yaml"


class ThresholdsConfig(StrictModel):
    """Decision thresholds of the checkout."""

    weight_min_ratio: float = Field(default=0.4, gt=0)
    weight_max_ratio: float = Field(default=2.5, gt=0)
    empty_tray_max_g: int = Field(default=30, ge=0)
    settle_s: float = Field(default=0.6, gt=0)

    @model_validator(mode="after")
    def _check_ratios(self) -> ThresholdsConfig:
        if self.weight_min_ratio >= self.weight_max_ratio:
            raise ValueError("weight_min_ratio must be below weight_max_ratio")
        return self


class CapturesConfig(StrictModel):
    """What the terminal keeps of each paid tray for the data staff (``terminal/captures.py``).

    Only the calibrated tray area of the settled frame is kept, never the rest of the view.
    """

    enabled: bool = True
    folder: str = "var/captures"
    max_mb: int = Field(default=2048, gt=0)
    retention_days: int = Field(default=30, gt=0)
    min_free_mb: int = Field(default=512, ge=0)
    keep_voided: bool = False


#: The type a section takes when it is given without one.
DEFAULT_TYPES = {
    "camera": "replay",
    "scale": "fake",
    "card_reader": "fake",
    "backend": "embedded",
    "model": "bundle",
}


class TerminalConfig(StrictModel):
    """One terminal's whole configuration."""

    @model_validator(mode="before")
    @classmethod
    def _default_types(cls, data: object) -> object:
        if isinstance(data, dict):
            data = dict(data)
            for section, default in DEFAULT_TYPES.items():
                value = data.get(section)
                if isinstance(value, dict) and "type" not in value:
                    data[section] = {"type": default, **value}
        return data

    terminal_id: str = Field(default="demo-01", min_length=1)
    language: Literal["zh", "en"] = "zh"
    data_dir: str = "var"
    calibration: str = "var/calibration.yaml"
    camera: CameraConfig = Field(default_factory=ReplayCameraConfig)
    scale: ScaleConfig = Field(default_factory=FakeScaleConfig)
    card_reader: CardReaderConfig = Field(default_factory=FakeCardReaderConfig)
    backend: BackendConfig = Field(default_factory=EmbeddedBackendConfig)
    model: ModelConfig = Field(default_factory=BundleModelConfig)
    menu: MenuSourceConfig = Field(default_factory=MenuSourceConfig)
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig)
    face: FaceConfig = Field(default_factory=FaceConfig)
    captures: CapturesConfig = Field(default_factory=CapturesConfig)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config, the file it came from (None for the defaults) and the home folder."""

    config: TerminalConfig
    source: Path | None
    home: Path

    def resolve(self, relative: str) -> Path:
        """An absolute path for a path in the config."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.home / path

    def where(self, *key_path: str | int) -> str:
        """``FILE:LINE`` of a key, or ``(defaults)`` when the value came from no file."""
        return locate(self.source, key_path) if self.source else "(defaults)"


def load_config(path: Path | str | None, home: Path | None = None) -> LoadedConfig:
    """Read and validate a terminal config; None gives the demo defaults.

    Raises:
        FileError: one line per problem, naming the file, line and key.
    """
    home = home or trayscan_home()
    if path is None:
        return LoadedConfig(TerminalConfig(), None, home)
    source = Path(path)
    config = load_yaml_model(TerminalConfig, source)
    return LoadedConfig(config, source, home)


def check_paths(loaded: LoadedConfig) -> list[str]:
    """Problems with the files and folders a config points at, one line each."""
    config = loaded.config
    problems = []

    def need(kind: str, relative: str, *key: str | int) -> None:
        path = loaded.resolve(relative)
        ok = path.is_dir() if kind == "folder" else path.is_file()
        if not ok:
            problems.append(
                f"{loaded.where(*key)}: {'.'.join(map(str, key))}: {kind} {path} does not exist"
            )

    if isinstance(config.camera, ReplayCameraConfig):
        need("folder", config.camera.folder, "camera", "folder")
    elif isinstance(config.camera, VideoCameraConfig):
        need("file", config.camera.path, "camera", "path")
    if isinstance(config.model, GroundTruthModelConfig):
        need("file", config.model.dataset, "model", "dataset")
    elif isinstance(config.model, BundleModelConfig):
        need("folder", config.model.path, "model", "path")
    if config.menu.source == "file":
        need("file", config.menu.path, "menu", "path")
    return problems


__all__ = [
    "FileError",
    "LoadedConfig",
    "TerminalConfig",
    "check_paths",
    "load_config",
    "trayscan_home",
]
