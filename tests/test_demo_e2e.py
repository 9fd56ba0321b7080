"""`trayscan kiosk --demo --headless` checks out replayed trays end to end."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from terminal.core.money import price_by_weight_fen
from terminal.menu_file import load_menu
from vision.labels import read_class_names, read_yolo_labels

from .conftest import DEMO_MENU, SAMPLE


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "terminal.yaml"
    config.write_text(
        f"backend:\n  ledger: {tmp_path / 'ledger.sqlite'}\n"
        f"model:\n  store: {tmp_path / 'models'}\n",
        encoding="utf-8",
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "terminal.cli",
            "kiosk",
            "--demo",
            "--headless",
            "--config",
            str(config),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_five_trays_print_five_priced_paid_checkouts(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--max-trays", "5")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 5
    menu = load_menu(DEMO_MENU)
    by_class = menu.by_dataset_class()
    names = read_class_names(SAMPLE / "dataset.yaml")
    for record in lines:
        # The dishes are the ones on the photo.
        labels = read_yolo_labels(
            SAMPLE / "labels" / (Path(record["tray"]).stem + ".txt"), 640, 640
        )
        assert sorted(d["id"] for d in record["dishes"]) == sorted(
            by_class[names[b.class_id]].id for b in labels
        )
        # Each line is priced by the menu, and the total is their sum.
        for dish in record["dishes"]:
            item = menu.item(dish["id"])
            expected = (
                item.price_fen
                if item.pricing == "per_portion"
                else price_by_weight_fen(item.price_fen, dish["grams"])
            )
            assert dish["price_fen"] == expected, dish
            assert dish["name"] == item.name_en
        assert record["total_fen"] == sum(d["price_fen"] for d in record["dishes"]) > 0
        assert record["kcal"] > 0
        assert record["status"] == "posted"
        assert (
            record["payment"]["method"] == "card"
            and record["payment"]["amount_fen"] == record["total_fen"]
        )
        assert record["transaction_id"]
    # Each checkout is in the local store exactly once, and the money adds up.
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        rows = dict(db.execute("SELECT transaction_id, amount_fen FROM transactions").fetchall())
        assert rows == {r["transaction_id"]: r["total_fen"] for r in lines}
        spent = db.execute("SELECT SUM(amount_fen) FROM transactions").fetchone()[0]
        topped = db.execute("SELECT SUM(amount_fen) FROM top_ups").fetchone()[0]
        left = db.execute("SELECT SUM(balance_fen) FROM accounts").fetchone()[0]
        assert topped - spent == left
    assert "5 posted" in result.stderr


def test_the_demo_runs_again_on_the_same_store(tmp_path: Path) -> None:
    first = run_demo(tmp_path, "--max-trays", "2")
    second = run_demo(tmp_path, "--max-trays", "2")
    assert first.returncode == second.returncode == 0
    ids = [
        json.loads(line)["transaction_id"] for line in (first.stdout + second.stdout).splitlines()
    ]
    assert len(set(ids)) == 4
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 4


def test_the_whole_sample_loops_and_every_tray_is_paid(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--max-trays", "14")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 14
    assert records[12]["tray"] == records[0]["tray"], "the replay loops"
    assert all(r["status"] == "posted" for r in records), [r["holds"] for r in records]


def test_kiosk_refuses_a_broken_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("scale:\n  type: fake\n  colour: red\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "terminal.cli", "kiosk", "--headless", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{config}:3: scale.colour: unknown key" in result.stderr
    assert result.stdout == ""
