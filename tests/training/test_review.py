"""The Label Studio round trip: tasks out (corrections first), reviewed labels back in."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from terminal.cli import main
from terminal.core.menu import Menu, Tableware, TablewareKind
from training.dataset_check import scan_dataset, validate_dataset
from training.review import (
    ReviewError,
    decide,
    export_review,
    find_image,
    image_url,
    import_review,
    items_from_captures,
    items_from_dataset,
    label_config,
)

from ..conftest import SAMPLE, item
from .builders import HEIGHT, WIDTH, box_line, noise_image, read_yolo_lines

MENU_IDS = ["rice", "pork_belly", "greens", "soup"]


def menu() -> Menu:
    return Menu(
        items=tuple(item(dish) for dish in MENU_IDS),
        tableware=(Tableware("tray", TablewareKind.TRAY, "餐盘", "tray", 400),),
    )


# What the terminal saw: file -> (corrected, needs_review, timestamp, [(dish, pixel box)]).
CAPTURES: dict[str, tuple[bool, bool, str, list[tuple[str, tuple[float, float, float, float]]]]] = {
    "t1.jpg": (False, False, "2026-05-01T10:00:00", [("rice", (8, 6, 24, 18))]),
    "t2.jpg": (
        True,
        False,
        "2026-05-01T11:00:00",
        [("rice", (8, 6, 24, 18)), ("greens", (32, 12, 56, 36))],
    ),
    "t3.jpg": (False, False, "2026-05-01T09:00:00", [("soup", (0, 24, 16, 48))]),
    "t4.jpg": (True, False, "2026-05-01T09:30:00", [("pork_belly", (10, 10, 30, 30))]),
    "t5.jpg": (False, True, "2026-05-01T12:00:00", [("greens", (4, 4, 12, 12))]),
}
QUEUE = ["t4.jpg", "t2.jpg", "t5.jpg", "t3.jpg", "t1.jpg"]


def captures_export(root: Path) -> Path:
    """A dataset laid out as ``trayscan captures export`` writes it (sorted menu ids, manifest)."""
    names = sorted(MENU_IDS)
    entries = []
    for seed, (name, (corrected, review, stamp, boxes)) in enumerate(CAPTURES.items()):
        noise_image(root / "images" / name, 300 + seed)
        lines = [box_line(names.index(dish), box) for dish, box in boxes]
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / name.replace(".jpg", ".txt")).write_text(
            "".join(line + "\n" for line in lines)
        )
        entries.append(
            {
                "file": f"images/{name}",
                "checkout_id": f"c{seed}",
                "corrected": corrected,
                "needs_review": review,
                "model_version": "2026.11.26-3",
                "timestamp": stamp,
            }
        )
    (root / "dataset.yaml").write_text(
        f"path: {root.resolve()}\ntrain: images\nval: images\nnc: 4\nnames: {json.dumps(names)}\n"
    )
    (root / "manifest.json").write_text(json.dumps({"images": entries}))
    return root


def export_tasks(tmp_path: Path) -> list[dict[str, Any]]:
    dataset = captures_export(tmp_path / "captures")
    tasks_path = tmp_path / "tasks.json"
    export_review(
        items_from_dataset(dataset, menu()),
        tasks_path,
        menu(),
        source=dataset,
        config_path=tmp_path / "label_config.xml",
    )
    tasks: list[dict[str, Any]] = json.loads(tasks_path.read_text(encoding="utf-8"))
    return tasks


def by_file(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(task["data"]["file"]).name: task for task in tasks}


def test_export_puts_the_cashiers_corrections_first(tmp_path: Path) -> None:
    tasks = export_tasks(tmp_path)
    assert [Path(task["data"]["file"]).name for task in tasks] == QUEUE
    assert [task["data"]["corrected"] for task in tasks] == [True, True, False, False, False]
    assert tasks[0]["meta"]["trayscan"]["corrected"] is True
    assert tasks[0]["data"]["note"].startswith("Corrected by the cashier")
    assert tasks[2]["data"]["needs_review"] is True


def test_export_writes_predictions_in_percent_with_the_model_version(tmp_path: Path) -> None:
    task = by_file(export_tasks(tmp_path))["t2.jpg"]
    assert task["data"]["image"] == "/data/local-files/?d=images/t2.jpg"
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "2026.11.26-3"
    rice, greens = prediction["result"]
    assert rice["type"] == "rectanglelabels"
    assert (rice["original_width"], rice["original_height"]) == (WIDTH, HEIGHT)
    assert rice["value"].pop("rectanglelabels") == ["rice"]
    assert rice["value"] == pytest.approx(
        {"x": 12.5, "y": 12.5, "width": 25.0, "height": 25.0, "rotation": 0}
    )
    assert greens["value"]["rectanglelabels"] == ["greens"]
    assert greens["value"]["x"] == pytest.approx(50.0)


def test_label_config_offers_every_dish_and_a_drop_choice(tmp_path: Path) -> None:
    export_tasks(tmp_path)
    root = ET.fromstring((tmp_path / "label_config.xml").read_text(encoding="utf-8"))
    image = root.find("Image")
    labels = root.find("RectangleLabels")
    choices = root.find("Choices")
    assert image is not None and labels is not None and choices is not None
    assert image.get("value") == "$image"
    assert labels.get("toName") == image.get("name") == choices.get("toName")
    assert [label.get("value") for label in labels] == MENU_IDS
    assert labels[0].get("hint") == "rice菜 · Rice"
    assert [choice.get("value") for choice in choices] == ["drop"]
    # The tasks' results name the config's tags.
    result = export_tasks(tmp_path / "again")[0]["predictions"][0]["result"][0]
    assert (result["from_name"], result["to_name"]) == (labels.get("name"), image.get("name"))


def test_label_config_adds_labels_that_are_not_on_the_menu() -> None:
    root = ET.fromstring(label_config(menu(), ["mystery stew", "rice"]))
    labels = root.find("RectangleLabels")
    assert labels is not None
    assert [label.get("value") for label in labels] == [*MENU_IDS, "mystery stew"]


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("/data/local-files/?d=", "/data/local-files/?d=images/a%20b.jpg"),
        ("/data/local-files/?d=captures", "/data/local-files/?d=captures/images/a%20b.jpg"),
        ("http://files.canteen.lan/export/", "http://files.canteen.lan/export/images/a%20b.jpg"),
        ("/srv/review", "/srv/review/images/a b.jpg"),
    ],
)
def test_image_urls(root: str, expected: str) -> None:
    assert image_url(root, "images/a b.jpg") == expected


def label_studio_export(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Label Studio exports after a review: accept t2, fix t4, skip t5, drop t3, t1 unseen."""
    exported = []
    for task_id, task in enumerate(copy.deepcopy(tasks), start=1):
        task["id"] = task_id
        prediction = task["predictions"][0]
        prediction["id"] = 100 + task_id
        name = Path(task["data"]["file"]).name
        result = copy.deepcopy(prediction["result"])
        annotation: dict[str, Any] = {
            "id": 200 + task_id,
            "completed_by": 1,
            "was_cancelled": False,
            "ground_truth": False,
            "created_at": "2026-05-02T08:00:00.000000Z",
            "updated_at": "2026-05-02T08:00:00.000000Z",
            "parent_prediction": prediction["id"],
            "result": result,
        }
        if name == "t2.jpg":
            task["annotations"] = [annotation]  # submitted untouched
        elif name == "t4.jpg":
            result[0]["value"]["rectanglelabels"] = ["rice"]  # the right dish
            result[0]["value"]["x"] = 20.0  # and the box moved
            task["annotations"] = [annotation]
        elif name == "t5.jpg":
            task["annotations"] = [annotation | {"was_cancelled": True, "result": []}]
        elif name == "t3.jpg":
            result.append(
                {
                    "id": "c1",
                    "type": "choices",
                    "from_name": "review",
                    "to_name": "image",
                    "value": {"choices": ["drop"]},
                }
            )
            task["annotations"] = [annotation]
        else:
            task["annotations"] = []
        exported.append(task)
    return exported


def test_round_trip_accept_fix_and_drop(tmp_path: Path) -> None:
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(label_studio_export(export_tasks(tmp_path))))
    out = tmp_path / "reviewed"

    result = import_review(export_path, out, menu())

    assert result.counts == {
        "images": 2,
        "accepted": 1,
        "fixed": 1,
        "dropped": 2,
        "unreviewed": 1,
    }
    assert sorted(p.name for p in (out / "images").iterdir()) == ["t2.jpg", "t4.jpg"]
    rice, greens = MENU_IDS.index("rice"), MENU_IDS.index("greens")
    # Accepted: exactly the predicted boxes, class ids now in menu order.
    assert read_yolo_lines(out / "labels" / "t2.txt") == [
        (rice, pytest.approx([16 / WIDTH, 12 / HEIGHT, 16 / WIDTH, 12 / HEIGHT], abs=1e-6)),
        (greens, pytest.approx([44 / WIDTH, 24 / HEIGHT, 24 / WIDTH, 24 / HEIGHT], abs=1e-6)),
    ]
    # Fixed: the new dish, the moved box (x from 20 % of the width, same size).
    x1, width, height = 0.20, 20 / WIDTH, 20 / HEIGHT
    assert read_yolo_lines(out / "labels" / "t4.txt") == [
        (rice, pytest.approx([x1 + width / 2, 20 / HEIGHT, width, height], abs=1e-6))
    ]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["objects"] == 3
    assert {e["file"]: e["status"] for e in manifest["images"]} == {
        "images/t4.jpg": "fixed",
        "images/t2.jpg": "accepted",
    }
    assert all(e["corrected"] for e in manifest["images"])
    assert {d["file"]: d["reason"] for d in manifest["dropped"]} == {
        "images/t5.jpg": "skipped",
        "images/t3.jpg": "drop",
    }
    assert [u["file"] for u in manifest["unreviewed"]] == ["images/t1.jpg"]
    assert "names:\n- rice\n- pork_belly\n- greens\n- soup" in (out / "dataset.yaml").read_text()
    assert validate_dataset(out).ok


def test_unreviewed_tasks_can_be_kept_as_predicted(tmp_path: Path) -> None:
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(label_studio_export(export_tasks(tmp_path))))
    result = import_review(export_path, tmp_path / "out", menu(), keep_unreviewed=True)
    assert result.counts["images"] == 3
    assert read_yolo_lines(tmp_path / "out" / "labels" / "t1.txt") == [
        (0, pytest.approx([16 / WIDTH, 12 / HEIGHT, 16 / WIDTH, 12 / HEIGHT], abs=1e-6))
    ]


def rect(label: str, x: float, y: float = 10.0, rotation: float = 0.0) -> dict[str, Any]:
    return {
        "type": "rectanglelabels",
        "original_width": 200,
        "original_height": 100,
        "value": {
            "x": x,
            "y": y,
            "width": 10.0,
            "height": 20.0,
            "rotation": rotation,
            "rectanglelabels": [label],
        },
    }


def annotation(result: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"id": 1, "was_cancelled": False, "result": result} | fields


PREDICTED = [{"model_version": "m", "result": [rect("rice", 10.0)]}]


@pytest.mark.parametrize(
    ("annotations", "status", "boxes"),
    [
        ([], "unreviewed", [("rice", (0.1, 0.1, 0.2, 0.3))]),
        ([annotation([rect("rice", 10.0)])], "accepted", [("rice", (0.1, 0.1, 0.2, 0.3))]),
        ([annotation([rect("soup", 10.0)])], "fixed", [("soup", (0.1, 0.1, 0.2, 0.3))]),
        ([annotation([])], "fixed", []),  # no dishes on it after all
        ([annotation([], was_cancelled=True)], "dropped", []),
        (
            [
                annotation([rect("rice", 10.0)], id=1, updated_at="2026-05-01T10:00:00Z"),
                annotation([], id=2, was_cancelled=True, updated_at="2026-05-01T11:00:00Z"),
            ],
            "dropped",
            [],
        ),
        (
            [
                annotation([], id=2, was_cancelled=True, updated_at="2026-05-01T09:00:00Z"),
                annotation([rect("soup", 10.0)], id=3, updated_at="2026-05-01T11:00:00Z"),
            ],
            "fixed",
            [("soup", (0.1, 0.1, 0.2, 0.3))],
        ),
        (
            # 10 % x 20 % of a 200x100 image (20x20 px) at (100, 10) px, turned 90° clockwise
            # about its top-left corner: it now lies to the left of that corner.
            [annotation([rect("rice", 50.0, 10.0, rotation=90.0)])],
            "fixed",
            [("rice", (0.4, 0.1, 0.5, 0.3))],
        ),
    ],
    ids=[
        "not annotated",
        "submitted untouched",
        "label changed",
        "boxes removed",
        "skipped",
        "skipped after accepting",
        "annotated after skipping",
        "rotated box",
    ],
)
def test_what_an_annotation_decides(
    annotations: list[dict[str, Any]], status: str, boxes: list[tuple[str, tuple[float, ...]]]
) -> None:
    task = {"id": 7, "data": {"image": "x"}, "predictions": PREDICTED, "annotations": annotations}
    reviewed = decide(task)
    assert reviewed.status == status
    assert [(o.label, pytest.approx(o.box)) for o in reviewed.objects] == boxes


def test_import_names_labels_not_on_the_menu_and_writes_nothing(tmp_path: Path) -> None:
    exported = label_studio_export(export_tasks(tmp_path))
    exported[1]["annotations"][0]["result"][0]["value"]["rectanglelabels"] = ["mystery stew"]
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(exported))
    with pytest.raises(ReviewError, match=r"task 2 \(images/t2.jpg\): labels not on the menu"):
        import_review(export_path, tmp_path / "out", menu())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[\n {"data": \n', r"export.json:3: not valid JSON"),
        ('[{"image": "/data/upload/1/x.jpg", "label": []}]', "JSON-MIN"),
        ('{"tasks": []}', "expected a list of tasks"),
    ],
)
def test_import_refuses_what_is_not_a_json_export(
    tmp_path: Path, content: str, message: str
) -> None:
    export_path = tmp_path / "export.json"
    export_path.write_text(content)
    with pytest.raises(ReviewError, match=message):
        import_review(export_path, tmp_path / "out", menu())


def test_images_are_found_by_name_under_images_dir(tmp_path: Path) -> None:
    image = noise_image(tmp_path / "photos" / "day1" / "t2.jpg", 1)
    uploaded = {"image": "/data/upload/3/1a2b3c4d-t2.jpg"}
    assert find_image(uploaded, tmp_path / "photos") == image
    assert find_image({"image": "/data/local-files/?d=day1/t2.jpg"}, tmp_path / "photos") == image
    assert find_image(uploaded, None) is None


def test_review_commands_round_trip_the_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every prediction accepted: the imported boxes are the sample's, on the demo menu's ids."""
    tasks_path, config = tmp_path / "tasks.json", tmp_path / "label_config.xml"
    assert (
        main(
            [
                "review",
                "export",
                "--dataset",
                str(SAMPLE),
                "--to",
                str(tasks_path),
                "--config-to",
                str(config),
            ]
        )
        == 0
    )
    assert "12 tasks" in capsys.readouterr().out
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    for task_id, task in enumerate(tasks, start=1):
        task["id"] = task_id
        task["annotations"] = [annotation(copy.deepcopy(task["predictions"][0]["result"]))]
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(tasks))

    assert main(["review", "import", str(export_path), "--to", str(tmp_path / "out")]) == 0
    assert "12 accepted as predicted" in capsys.readouterr().out

    source, source_report = scan_dataset(SAMPLE)
    imported, report = scan_dataset(tmp_path / "out")
    assert source is not None and imported is not None and report.ok
    # Demo menu ids are the dataset's class names with underscores.
    assert {name: n for name, n in report.objects_per_class.items() if n} == {
        name.replace(" ", "_"): n for name, n in source_report.objects_per_class.items() if n
    }
    boxes = {image.path.name: [o.box for o in image.objects] for image in source.images}
    for image in imported.images:
        assert [o.box for o in image.objects] == [
            pytest.approx(box, abs=1e-6) for box in boxes[image.path.name]
        ]


def test_export_from_a_capture_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    captures = pytest.importorskip("terminal.captures")
    import numpy as np

    clock = iter(float(t) for t in range(1_780_000_000, 1_780_000_100, 10))
    store = captures.CaptureStore(
        tmp_path / "captures", max_bytes=2**30, retention_days=3650, clock=lambda: next(clock)
    )
    frame = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    store.add(
        frame,
        [((8, 6, 24, 18), "rice", False, "model")],
        checkout_id="a",
        model_version="v1",
        outcome="paid",
    )
    store.add(
        frame,
        [((8, 6, 24, 18), "soup", True, "model")],
        checkout_id="b",
        model_version="v1",
        outcome="paid",
    )
    store.add(
        frame,
        [((8, 6, 24, 18), "rice", False, "model"), (None, "greens", True, "cashier")],
        checkout_id="c",
        model_version="v1",
        outcome="paid",
    )

    items = items_from_captures(tmp_path / "captures")
    assert len(items) == 3
    tasks_path = tmp_path / "tasks.json"
    assert (
        main(
            ["review", "export", "--captures", str(tmp_path / "captures"), "--to", str(tasks_path)]
        )
        == 0
    )
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    assert [t["data"]["corrected"] for t in tasks] == [True, True, False]
    assert "added greens without a box" in tasks[1]["data"]["note"]
    assert tasks[0]["predictions"][0]["result"][0]["value"]["rectanglelabels"] == ["soup"]
    assert tasks[0]["predictions"][0]["model_version"] == "v1"
