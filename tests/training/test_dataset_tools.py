"""Merging datasets onto the menu's dish ids, and splitting by source photo."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from terminal.cli import main
from terminal.core.menu import Menu, Tableware, TablewareKind
from training.dataset_check import validate_dataset
from training.dataset_tools import (
    DatasetToolError,
    InvalidDatasetError,
    assign_groups,
    load_class_map,
    merge_datasets,
    split_dataset,
)

from ..conftest import SAMPLE, item
from .builders import (
    HEIGHT,
    WIDTH,
    box_line,
    coco_data,
    noise_image,
    read_yolo_lines,
    write_coco,
    write_yolo,
)


def menu() -> Menu:
    """rice, pork_belly (dataset class "pork belly"), greens, soup: class ids 0..3."""
    return Menu(
        items=(item("rice"), item("pork_belly"), item("greens"), item("soup")),
        tableware=(Tableware("tray", TablewareKind.TRAY, "餐盘", "tray", 400),),
    )


POLYGON = "2 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5"


def source_a(root: Path) -> Path:
    """YOLO: "steamed rice" (mapped by the class map), "greens" (a menu id), "pork belly"
    (a menu item's dataset_class)."""
    return write_yolo(
        root,
        {
            "train": [
                ("a1.jpg", box_line(0, (8, 6, 24, 18)) + "\n" + box_line(1, (32, 12, 56, 36))),
                ("a2.jpg", POLYGON + "\n"),
            ]
        },
        class_names=["steamed rice", "greens", "pork belly"],
        seed=10,
    )


def source_b(root: Path) -> Path:
    """COCO: "rijst" (mapped to rice) and "drink" (mapped to null: dropped)."""
    noise_image(root / "tray1.jpg", 20)
    write_coco(
        root,
        coco_data(
            [(1, 1, [16, 12, 32, 24]), (1, 2, [0, 0, 8, 8])],
            categories=((1, "rijst"), (2, "drink")),
        ),
    )
    return root


def write_map(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_merge_maps_every_class_onto_menu_ids(tmp_path: Path) -> None:
    a, b = source_a(tmp_path / "a"), source_b(tmp_path / "b")
    map_path = write_map(tmp_path / "map.yaml", "steamed rice: rice\nrijst: rice\ndrink: null\n")
    out = tmp_path / "merged"

    result = merge_datasets(
        [(a, None), (b, "coco")], load_class_map(map_path), menu(), out, map_path=map_path
    )

    names = ["rice", "pork_belly", "greens", "soup"]
    dataset_yaml = (out / "dataset.yaml").read_text(encoding="utf-8")
    assert "names:\n- rice\n- pork_belly\n- greens\n- soup" in dataset_yaml
    a1 = read_yolo_lines(out / "labels" / "a__a1.txt")
    assert [row[0] for row in a1] == [names.index("rice"), names.index("greens")]
    assert a1[0][1] == pytest.approx([16 / WIDTH, 12 / HEIGHT, 16 / WIDTH, 12 / HEIGHT], abs=1e-6)
    # A polygon stays a polygon, with its new class id.
    assert read_yolo_lines(out / "labels" / "a__a2.txt") == [
        (names.index("pork_belly"), [0.1, 0.1, 0.4, 0.1, 0.4, 0.5, 0.1, 0.5])
    ]
    # The COCO box comes out in fractions; the drink is gone.
    assert read_yolo_lines(out / "labels" / "b__tray1.txt") == [
        (0, pytest.approx([32 / WIDTH, 24 / HEIGHT, 32 / WIDTH, 24 / HEIGHT], abs=1e-6))
    ]
    assert result.n_images == 3
    assert result.objects_per_class == {"rice": 2, "pork_belly": 1, "greens": 1, "soup": 0}
    assert result.dropped_objects == {"b:drink": 1}

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [s["format"] for s in manifest["sources"]] == ["yolo", "coco"]
    assert manifest["sources"][0]["mapping"] == {
        "steamed rice": "rice",
        "greens": "greens",
        "pork belly": "pork_belly",
    }
    assert {entry["file"] for entry in manifest["images"]} == {
        "images/a__a1.jpg",
        "images/a__a2.jpg",
        "images/b__tray1.jpg",
    }
    assert all(len(entry["sha256"]) == 64 for entry in manifest["images"])
    assert manifest["counts"]["per_class"]["rice"] == 2
    assert validate_dataset(out).ok


def test_merge_refuses_classes_that_map_to_no_dish(tmp_path: Path) -> None:
    a, b = source_a(tmp_path / "a"), source_b(tmp_path / "b")
    out = tmp_path / "merged"
    with pytest.raises(DatasetToolError) as caught:
        merge_datasets([(a, None), (b, None)], {"steamed rice": "rice"}, menu(), out)
    message = str(caught.value)
    assert "'rijst' (1 objects)" in message
    assert "'drink' (1 objects)" in message
    assert "--drop-unmapped" in message
    assert not out.exists()


def test_merge_can_drop_unmapped_classes(tmp_path: Path) -> None:
    a, b = source_a(tmp_path / "a"), source_b(tmp_path / "b")
    result = merge_datasets(
        [(a, None), (b, None)],
        {"steamed rice": "rice"},
        menu(),
        tmp_path / "merged",
        drop_unmapped=True,
    )
    assert result.dropped_objects == {"b:rijst": 1, "b:drink": 1}
    assert result.n_images == 3
    assert read_yolo_lines(tmp_path / "merged" / "labels" / "b__tray1.txt") == []


def test_merge_refuses_a_map_onto_a_dish_not_on_the_menu(tmp_path: Path) -> None:
    a = source_a(tmp_path / "a")
    map_path = write_map(tmp_path / "map.yaml", "greens: greens\nsteamed rice: congee\n")
    with pytest.raises(DatasetToolError, match=r"map\.yaml:2: 'steamed rice' maps to 'congee'"):
        merge_datasets(
            [(a, None)], load_class_map(map_path), menu(), tmp_path / "out", map_path=map_path
        )


def test_merge_keeps_the_same_bytes_once(tmp_path: Path) -> None:
    a = source_a(tmp_path / "a")
    result = merge_datasets(
        [(a, None), (a, None)], {"steamed rice": "rice"}, menu(), tmp_path / "out"
    )
    assert (result.n_images, result.duplicates_skipped) == (2, 2)


def test_merge_refuses_a_dataset_with_errors_and_the_command_shows_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = source_a(tmp_path / "a")
    (tmp_path / "a" / "labels" / "train" / "a2.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InvalidDatasetError):
        merge_datasets([(a, None)], {}, menu(), tmp_path / "out")

    assert main(["dataset", "merge", str(tmp_path / "a"), "--to", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "a2.txt:1: class id 7 is not one of the 3 classes" in err


def test_load_class_map_names_a_bad_line(tmp_path: Path) -> None:
    path = write_map(tmp_path / "map.yaml", "rice: rice\ngreens: [a, b]\n")
    with pytest.raises(DatasetToolError, match=r"map\.yaml:2: expected 'source class: menu id'"):
        load_class_map(path)
    assert load_class_map(write_map(tmp_path / "m2.yaml", "a: x\nb: ~\nc:\n")) == {
        "a": "x",
        "b": None,
        "c": None,
    }


def test_merge_command_on_the_sample_maps_dataset_classes_onto_the_demo_menu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "merged"
    assert main(["dataset", "merge", str(SAMPLE), "--to", str(out)]) == 0
    assert "merged into" in capsys.readouterr().out
    source = validate_dataset(SAMPLE)
    merged = validate_dataset(out)
    assert merged.ok
    assert merged.n_objects == source.n_objects == 52
    # Demo menu ids are the dataset classes with underscores ("rau muong" -> "rau_muong").
    assert merged.objects_per_class["com"] == source.objects_per_class["com"]
    assert merged.objects_per_class["rau_muong"] == source.objects_per_class["rau muong"]


# --- split ----------------------------------------------------------------------------------


def roboflow_dataset(root: Path, sources: int = 8, copies: int = 3) -> Path:
    """``sources`` photos with ``copies`` augmented copies each (different pixels, Roboflow
    names), plus a mirrored pair under unrelated names."""
    entries: list[tuple[str, str | None]] = []
    for k in range(sources):
        for c in range(copies):
            label = POLYGON if (k, c) == (0, 0) else box_line(k % 3, (4, 4, 20 + c, 20))
            entries.append((f"IMG_{k:04d}_jpg.rf.{k:02x}{c:02x}beef.jpg", label + "\n"))
    yaml_path = write_yolo(root, {"train": entries}, seed=1000)
    left = noise_image(root / "images" / "train" / "left.jpg", 7)
    right = root / "images" / "train" / "right.jpg"
    cv2.imwrite(str(right), np.fliplr(cv2.imread(str(left))))
    for name in ("left", "right"):
        (root / "labels" / "train" / f"{name}.txt").write_text(box_line(0, (1, 1, 9, 9)) + "\n")
    return yaml_path


def sides(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return {Path(entry["file"]).name: entry["split"] for entry in manifest["images"]}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_never_puts_copies_of_one_photo_on_both_sides(tmp_path: Path, seed: int) -> None:
    roboflow_dataset(tmp_path / "d")
    out = tmp_path / "split"

    result = split_dataset(tmp_path / "d", out, val_fraction=0.3, seed=seed)

    side = sides(out)
    assert len(side) == 26
    for k in range(8):
        assert len({s for name, s in side.items() if name.startswith(f"IMG_{k:04d}_")}) == 1
    assert side["left.jpg"] == side["right.jpg"], "a mirrored near-duplicate stays with its twin"
    assert sum(result.groups.values()) == 9
    assert result.images["train"] + result.images["val"] == 26
    assert abs(result.images["val"] - 0.3 * 26) <= 3  # off by at most one group
    assert result.images["val"] > 0 and result.images["train"] > 0
    assert {p.name for p in (out / "val" / "images").iterdir()} == {
        name for name, s in side.items() if s == "val"
    }
    check = validate_dataset(out)
    assert check.ok and "split-leak" not in check.codes(), check.format_text()


def test_split_is_the_same_for_the_same_seed_and_keeps_labels(tmp_path: Path) -> None:
    roboflow_dataset(tmp_path / "d")
    split_dataset(tmp_path / "d", tmp_path / "s1", 0.3, seed=5)
    split_dataset(tmp_path / "d", tmp_path / "s2", 0.3, seed=5)
    assert sides(tmp_path / "s1") == sides(tmp_path / "s2")
    name = "IMG_0000_jpg.rf.0000beef"
    side = sides(tmp_path / "s1")[f"{name}.jpg"]
    assert read_yolo_lines(tmp_path / "s1" / side / "labels" / f"{name}.txt") == [
        (2, [0.1, 0.1, 0.4, 0.1, 0.4, 0.5, 0.1, 0.5])
    ]


def test_split_can_take_one_split_of_the_input_only(tmp_path: Path) -> None:
    write_yolo(
        tmp_path / "d",
        {
            "train": [(f"t{i}.jpg", box_line(0, (4, 4, 20, 20)) + "\n") for i in range(4)],
            "val": [("held_out.jpg", box_line(1, (4, 4, 20, 20)) + "\n")],
        },
    )
    result = split_dataset(tmp_path / "d", tmp_path / "s", 0.25, from_splits=["train"])
    assert result.images["train"] + result.images["val"] == 4
    assert "held_out.jpg" not in sides(tmp_path / "s")


def test_split_command_says_where_groups_and_images_went(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roboflow_dataset(tmp_path / "d")
    code = main(
        ["dataset", "split", str(tmp_path / "d"), "--to", str(tmp_path / "s"), "--val", "0.3"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "split 26 images from 9 source photos" in out
    assert "groups" in out

    assert main(["dataset", "split", str(tmp_path / "d"), "--to", str(tmp_path / "s")]) == 1
    assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("sizes", "fraction", "val_images"),
    [
        ({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}, 0.4, 2),
        ({"a": 5, "b": 1}, 0.0, 0),
        ({"a": 5, "b": 5}, 0.05, 5),  # val gets a group even when it overshoots
    ],
)
def test_assign_groups_hits_the_fraction(
    sizes: dict[str, int], fraction: float, val_images: int
) -> None:
    train, val = assign_groups(sizes, fraction, seed=0)
    assert sorted(train + val) == sorted(sizes)
    assert sum(sizes[g] for g in val) == val_images


def test_the_dataset_tools_import_no_training_extra() -> None:
    """They run with the kiosk's dependencies: no torch, torchvision or ultralytics."""
    from ..test_import_boundaries import HEAVY, REPO, imported_modules

    for name in ("dataset_check", "dataset_tools", "dataset_cli", "review", "data"):
        assert imported_modules(REPO / "training" / f"{name}.py") & HEAVY == set(), name
