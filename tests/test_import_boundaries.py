"""The kiosk stays light: no torch or ultralytics outside training/, no Qt outside terminal/ui/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

HEAVY = {"torch", "torchvision", "ultralytics"}
QT = {"PySide6", "PyQt5", "PyQt6", "shiboken6"}

RULES = [
    # folder, forbidden top-level modules
    ("terminal/core", HEAVY | QT | {"cv2", "onnxruntime", "serial", "requests", "sqlite3"}),
    ("vision", HEAVY | QT),
    ("terminal", HEAVY),
    ("calibration", HEAVY),
]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def violations(folder: str, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        bad = imported_modules(path) & forbidden
        found.extend(f"{rel} imports {name}" for name in sorted(bad))
    return found


@pytest.mark.parametrize(("folder", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_no_forbidden_imports(folder: str, forbidden: set[str]) -> None:
    assert violations(folder, forbidden) == []


def test_qt_only_in_terminal_ui() -> None:
    for folder in ("terminal", "vision", "calibration"):
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith("terminal/ui/"):
                continue
            assert not imported_modules(path) & QT, f"{rel} imports Qt"


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import torch.nn\nfrom PySide6 import QtWidgets\nfrom .x import y\n")
    assert imported_modules(sample) == {"torch", "PySide6"}
