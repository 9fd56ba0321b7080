"""A broken config gets one line per problem, naming the file, line and key; nothing starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from terminal.app import StartupError, build_terminal
from terminal.cli import main
from terminal.config import TerminalConfig, check_paths, load_config
from terminal.core.ports import PaymentDeclinedError
from terminal.yamlmodels import FileError

from .conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "terminal.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BAD_CONFIGS = [
    ("unknown top-level key", "terminal_id: t1\ncolour: red\n", ":2: colour: unknown key"),
    (
        "unknown nested key",
        "scale:\n  type: fake\n  settle_readings: 2\n  baud: 9600\n",
        ":4: scale.baud: unknown key (allowed: type, settle_readings)",
    ),
    (
        "wrong type",
        "scale:\n  type: serial\n  url: /dev/ttyUSB0\n  protocol: mt-sics\n  baudrate: fast\n",
        ":5: scale.baudrate: Input should be a valid integer (got 'fast')",
    ),
    (
        "number given as text",
        "thresholds:\n  empty_tray_max_g: '30'\n",
        ":2: thresholds.empty_tray_max_g: Input should be a valid integer",
    ),
    (
        "unknown device type",
        "card_reader:\n  type: magic\n",
        ":2: card_reader.type: unknown type 'magic' (known: 'fake', 'keyboard_wedge', 'serial')",
    ),
    ("bad choice", "language: fr\n", ":1: language: Input should be 'zh' or 'en'"),
    (
        "negative threshold",
        "thresholds:\n  settle_s: -1\n",
        ":2: thresholds.settle_s: Input should be greater than 0",
    ),
    (
        "missing required key",
        "backend:\n  type: http\n  secret: abcdefghijklmnop\n",
        ":1: backend.url: required key is missing",
    ),
    ("yaml syntax", "scale: [fake\n", "YAML syntax error"),
    ("not a mapping", "- a\n- b\n", ":1: the file must hold a mapping"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_line_and_key(
    tmp_path: Path, case: str, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FileError) as caught:
        load_config(path)
    errors = caught.value.errors
    assert len(errors) == 1, errors
    assert errors[0].startswith(str(path))
    assert message in errors[0]
    assert "\n" not in errors[0]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileError, match=r"nope\.yaml: file does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "colour: red\nlanguage: fr\nscale: {type: fake, settle_readings: x}\n")
    with pytest.raises(FileError) as caught:
        load_config(path)
    assert len(caught.value.errors) == 3


def test_defaults_are_the_demo_and_point_at_real_files() -> None:
    loaded = load_config(None)
    assert loaded.config == TerminalConfig()
    assert check_paths(loaded) == []


def test_example_config_is_valid() -> None:
    loaded = load_config(REPO / "assets" / "config" / "terminal.example.yaml", home=REPO)
    assert check_paths(loaded) == []


def test_a_path_that_does_not_exist_stops_the_start(tmp_path: Path) -> None:
    path = write(tmp_path, "camera:\n  type: replay\n  folder: /no/such/folder\n")
    loaded = load_config(path)
    with pytest.raises(
        StartupError,
        match=r"terminal\.yaml:3: camera\.folder: folder /no/such/folder does not exist",
    ):
        build_terminal(loaded)


def test_an_http_backend_needs_exactly_one_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "backend:\n  type: http\n  url: http://127.0.0.1:9\n")
    with pytest.raises(FileError, match=r":1: backend: .*exactly one of secret and secret_file"):
        load_config(path)


def test_a_missing_secret_file_stops_the_start(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "backend:\n  type: http\n  url: http://127.0.0.1:9\n  secret_file: /no/such/secret\n",
    )
    with pytest.raises(
        StartupError, match=r":4: backend\.secret_file: cannot read /no/such/secret"
    ):
        build_terminal(load_config(path))


def test_a_terminal_starts_offline_when_its_backend_is_down(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "backend:\n  type: http\n  url: http://127.0.0.1:9\n  secret: abcdefghijklmnop\n"
        f"  outbox: {tmp_path / 'outbox.sqlite'}\n  retries: 0\n"
        f"model:\n  store: {tmp_path / 'models'}\n",
    )
    terminal = build_terminal(load_config(path))
    try:
        assert type(terminal.backend).__name__ == "OutboxBackend"
        assert terminal.outbox is not None and terminal.outbox.depth() == 0
        with pytest.raises(PaymentDeclinedError, match="cannot be reached"):
            terminal.backend.lookup_card("04A1B2C3D4")
    finally:
        terminal.close()


def test_serial_devices_are_built_from_the_config(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "scale:\n  type: serial\n  url: 'loop://'\n  protocol: mt-sics\n"
        "card_reader:\n  type: serial\n  url: 'loop://'\n  protocol: frame\n"
        f"backend:\n  ledger: {tmp_path / 'ledger.sqlite'}\n"
        f"model:\n  store: {tmp_path / 'models'}\n",
    )
    terminal = build_terminal(load_config(path))
    try:
        assert type(terminal.scale).__name__ == "SerialScale"
        assert type(terminal.card_reader).__name__ == "SerialCardReader"
    finally:
        terminal.close()


def test_the_demo_refuses_real_devices(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"scale:\n  type: serial\n  url: 'loop://'\n  protocol: mt-sics\n"
        f"backend:\n  ledger: {tmp_path / 'ledger.sqlite'}\n",
    )
    result = run_cli("kiosk", "--demo", "--headless", "--config", str(path), "--max-trays", "1")
    assert result.returncode == 2
    assert "the demo simulates the diners" in result.stderr


def test_a_broken_menu_stops_the_start(tmp_path: Path) -> None:
    menu = tmp_path / "menu.yaml"
    menu.write_text(
        "version: 1\ntableware: []\nitems:\n  - id: rice\n    name_zh: 米饭\n    name_en: Rice\n"
        "    pricing: per_portion\n    price_fen: 1.5\n    portion_g: 200\n"
        "    nutrition_per_100g: {kcal: 130, protein_g: 2.7, fat_g: 0.3, carbohydrate_g: 28}\n",
        encoding="utf-8",
    )
    ledger = tmp_path / "ledger.sqlite"
    path = write(tmp_path, f"menu:\n  path: {menu}\nbackend:\n  ledger: {ledger}\n")
    with pytest.raises(
        StartupError, match=r"menu\.yaml:8: items\[0\]\.price_fen: Input should be a valid integer"
    ):
        build_terminal(load_config(path))
    assert not ledger.exists(), "nothing starts half-configured"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "terminal.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_validate_config_cli(tmp_path: Path) -> None:
    bad = write(tmp_path, "terminal_id: t1\nscale:\n  type: fake\n  colour: red\n")
    result = run_cli("validate-config", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"{bad}:4: scale.colour: unknown key (allowed: type, settle_readings)"
    ]
    result = run_cli("validate-config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{tmp_path / 'missing.yaml'}: file does not exist"
    good = REPO / "assets" / "config" / "terminal.example.yaml"
    result = run_cli("validate-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "41 dishes" in result.stdout


def test_the_customer_camera_comes_from_the_face_section(tmp_path: Path) -> None:
    """Paying by face needs the camera facing the diner, configured like the tray camera."""
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "astronaut.png").write_bytes((REPO / "tests/data/faces/astronaut.png").read_bytes())
    key = tmp_path / "face.key"
    assert main(["face", "new-key", str(key)]) == 0
    path = write(
        tmp_path,
        f"backend:\n  ledger: {tmp_path / 'ledger.sqlite'}\n"
        f"model:\n  store: {tmp_path / 'models'}\n"
        f"data_dir: {tmp_path / 'var'}\n"
        "face:\n  enabled: true\n"
        f"  cache: {tmp_path / 'face.cache'}\n  cache_key_file: {key}\n"
        f"  camera:\n    type: replay\n    folder: {faces}\n",
    )
    terminal = build_terminal(load_config(path))
    try:
        assert terminal.face is not None and terminal.customer_camera is not None
        frame = terminal.customer_camera.read()
        assert frame is not None and frame.shape == (512, 512, 3)
    finally:
        terminal.close()


def test_a_missing_customer_camera_folder_names_its_key(tmp_path: Path) -> None:
    key = tmp_path / "face.key"
    assert main(["face", "new-key", str(key)]) == 0
    path = write(
        tmp_path,
        f"model:\n  store: {tmp_path / 'models'}\n"
        f"data_dir: {tmp_path / 'var'}\n"
        f"face:\n  enabled: true\n  cache_key_file: {key}\n"
        f"  cache: {tmp_path / 'face.cache'}\n"
        "  camera:\n    type: replay\n    folder: /no/such/faces\n",
    )
    with pytest.raises(StartupError, match=r"face\.camera: .*/no/such/faces"):
        build_terminal(load_config(path))
