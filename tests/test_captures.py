"""The capture store: paid trays kept for the data staff, cropped to the tray, capped, exported."""

from __future__ import annotations

import datetime as dt
import errno
import io
import json
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from terminal.app import Terminal, build_terminal
from terminal.captures import (
    CaptureDish,
    CaptureJob,
    CaptureRecord,
    CaptureRecorder,
    CaptureStore,
    CaptureWriter,
    crop_to_tray,
    export_yolo,
    match_dishes,
    scale_tray_area,
    write_atomic,
)
from terminal.cli import main
from terminal.config import DEMO_CARDS, load_config
from terminal.core.session import CheckoutState
from terminal.demo import HeadlessDemo, simulated_gross_g
from terminal.payment import take_card_payment
from vision.datasets import read_dataset
from vision.sources import list_images
from vision.types import DishRecognition, DishStatus, Frame, TrayRecognition

from .conftest import SAMPLE

PHOTOS = list_images(SAMPLE / "images")
PIN = ("demo", "1234")  # the demo cashier app.DEMO_CASHIER enrols


# --- builders -------------------------------------------------------------------------------


def write_config(tmp_path: Path, captures: str = "", calibration: str | None = None) -> Path:
    config = tmp_path / "terminal.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'var'}\n"
        f"calibration: {calibration or tmp_path / 'none.yaml'}\n"
        f"backend:\n  ledger: {tmp_path / 'ledger.sqlite'}\n"
        "model:\n  type: ground_truth\n"
        f"captures:\n  folder: {tmp_path / 'captures'}\n  min_free_mb: 0\n{captures}",
        encoding="utf-8",
    )
    return config


def make_terminal(tmp_path: Path, captures: str = "", calibration: str | None = None) -> Terminal:
    loaded = load_config(write_config(tmp_path, captures, calibration))
    return build_terminal(loaded, seed_demo_accounts=True)


def read_frame(photo: Path) -> Frame:
    image = cv2.imread(str(photo))
    assert image is not None
    return Frame(np.asarray(image, np.uint8), 0.0, 0, str(photo))


def captured(terminal: Terminal) -> list[CaptureRecord]:
    recorder = terminal.captures
    assert recorder is not None
    assert recorder.writer.flush(30.0)
    return recorder.store.list()


def checkout_by_hand(
    terminal: Terminal,
    photo: Path,
    change: Callable[[TrayRecognition], TrayRecognition],
    cashier: Callable[[Terminal], object],
) -> None:
    """One tray the model gets wrong (``change``) and the cashier fixes (``cashier``)."""
    session = terminal.session
    frame = read_frame(photo)
    assert terminal.truth is not None
    truth = terminal.truth.recognise(frame)
    session.tray_arrived()
    session.tray_settled(simulated_gross_g(terminal, truth, photo.name))
    terminal.frame_settled(frame)
    session.recognised(change(truth))
    cashier(terminal)
    assert session.state is CheckoutState.AWAITING_PAYMENT, session.holds
    take_card_payment(session, terminal.backend, DEMO_CARDS[0])
    session.tray_removed()


def truth_ids(terminal: Terminal, photo: Path) -> list[str]:
    assert terminal.truth is not None
    return [d.dish_id or "" for d in terminal.truth.recognise(read_frame(photo)).dishes]


def sure(box: tuple[float, float, float, float], dish_id: str | None) -> DishRecognition:
    status = DishStatus.SURE if dish_id else DishStatus.UNKNOWN
    return DishRecognition(box, status, dish_id, 0.9 if dish_id else 0.1)


def recognition_of(*ids: str | None) -> TrayRecognition:
    boxes = [(10.0 * i, 0.0, 10.0 * i + 8, 8.0) for i in range(len(ids))]
    return TrayRecognition(tuple(sure(b, d) for b, d in zip(boxes, ids, strict=True)), "m1")


def tiny_store(
    tmp_path: Path,
    clock: list[float],
    *,
    max_bytes: int = 10**9,
    retention_days: float = 30,
    write_file: Callable[[Path, bytes], None] = write_atomic,
) -> CaptureStore:
    return CaptureStore(
        tmp_path / "store",
        max_bytes=max_bytes,
        retention_days=retention_days,
        clock=lambda: clock[0],
        write_file=write_file,
    )


def noise_image(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8)


# --- matching boxes to paid lines -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "final", "expected", "removed", "ambiguous"),
    [
        # model ids, paid ids -> (box index or None, corrected) per line, removed boxes, review
        (("a", "b", "c"), ("a", "b", "c"), [(0, False), (1, False), (2, False)], [], False),
        # renamed in place
        (("a", "b", "c"), ("a", "x", "c"), [(0, False), (1, True), (2, False)], [], False),
        (("a", "a"), ("a", "b"), [(0, False), (1, True)], [], False),
        # removed, added, an unknown dish named
        (("a", "b", "c"), ("a", "c"), [(0, False), (2, False)], [1], False),
        (("a", "b"), ("a", "b", "x"), [(0, False), (1, False), (None, True)], [], False),
        (("a", None, "c"), ("a", "x", "c"), [(0, False), (1, True), (2, False)], [], False),
        (("a", None), ("a",), [(0, False)], [1], False),
        ((), ("a", "b"), [(None, True), (None, True)], [], False),
        # the session skips an unknown dish, the cashier adds it at the end
        (("a", None, "c"), ("a", "c", "x"), [(0, False), (2, False), (1, True)], [], False),
        # the cashier listed the dishes in another order
        (("a", "b"), ("b", "a"), [(1, False), (0, False)], [], False),
        (("a", "b", "c", "d"), ("d", "c", "b"), [(3, False), (2, False), (1, False)], [0], False),
        (("a", "b"), ("b", "x"), [(1, False), (0, True)], [], False),
        # which box is which cannot be told
        (("a", "a"), ("a",), [(0, False)], [1], True),
        ((None,), ("x", "y"), [(0, True), (None, True)], [], True),
        (("a", "b", "c"), ("c", "x", "y"), [(2, False), (0, True), (1, True)], [], True),
    ],
)
def test_boxes_are_matched_to_paid_lines_in_order_and_ambiguity_is_flagged(
    model: tuple[str | None, ...],
    final: tuple[str, ...],
    expected: list[tuple[int | None, bool]],
    removed: list[int],
    ambiguous: bool,
) -> None:
    recognition = recognition_of(*model)
    match = match_dishes(recognition, final)
    assert [d.dish_id for d in match.dishes] == list(final)
    assert bool(match.review_reasons) is ambiguous
    if expected is not None:
        boxes = [d.box_xyxy for d in recognition.dishes]
        got = [(boxes.index(d.box_xyxy) if d.box_xyxy else None, d.corrected) for d in match.dishes]
        assert got == expected
        assert [boxes.index(r.box_xyxy) for r in match.removed] == removed
        assert all(d.source == ("model" if d.box_xyxy else "cashier") for d in match.dishes)


def test_a_failed_recognition_gives_only_unboxed_dishes() -> None:
    match = match_dishes(None, ["rice"])
    assert match.dishes == (CaptureDish(None, "rice", True, "cashier"),)


# --- the terminal keeps paid trays ----------------------------------------------------------


def test_a_demo_checkout_keeps_the_frame_with_the_models_boxes_and_ids(tmp_path: Path) -> None:
    terminal = make_terminal(tmp_path)
    try:
        demo = HeadlessDemo(terminal, io.StringIO())
        frame = read_frame(PHOTOS[0])
        record = demo.checkout(frame)
        records = captured(terminal)
    finally:
        terminal.close()
    assert record.status == "posted"
    assert len(records) == 1
    capture = records[0]
    assert terminal.truth is not None
    truth = terminal.truth.recognise(frame)
    assert capture.checkout_id == record.checkout_id
    assert capture.data["outcome"] == "paid"
    assert capture.data["model_version"] == truth.model_version
    assert capture.data["terminal_id"] == "demo-01"
    assert capture.complete and not capture.corrected and not capture.needs_review
    assert [d["dish_id"] for d in capture.data["dishes"]] == [d.dish_id for d in truth.dishes]
    for (_, box), dish in zip(capture.boxes, truth.dishes, strict=True):
        assert box == pytest.approx(dish.box_xyxy, abs=0.01)
    assert all(d["source"] == "model" and not d["corrected"] for d in capture.data["dishes"])
    image = cv2.imread(str(capture.image_path))
    assert image is not None and image.shape == frame.image.shape
    assert capture.image_size == (frame.width, frame.height)


def test_a_dish_the_cashier_renamed_is_marked_corrected(tmp_path: Path) -> None:
    terminal = make_terminal(tmp_path)
    photo = PHOTOS[1]
    ids = truth_ids(terminal, photo)
    wrong = next(item.id for item in terminal.menu if item.id not in ids)

    def misread(truth: TrayRecognition) -> TrayRecognition:
        dish = replace(truth.dishes[1], status=DishStatus.UNSURE, dish_id=wrong)
        return replace(truth, dishes=(truth.dishes[0], dish, *truth.dishes[2:]))

    def fix(terminal: Terminal) -> object:
        assert terminal.desk is not None
        return terminal.desk.resolve(*PIN, ids, reason="wrong dish")

    try:
        checkout_by_hand(terminal, photo, misread, fix)
        (capture,) = captured(terminal)
    finally:
        terminal.close()
    dishes = capture.data["dishes"]
    assert [d["dish_id"] for d in dishes] == ids
    assert [d["corrected"] for d in dishes] == [i == 1 for i in range(len(ids))]
    assert dishes[1]["model_dish_id"] == wrong and dishes[1]["box_xyxy"] is not None
    assert capture.corrected and capture.complete and not capture.needs_review


def test_a_dish_the_cashier_added_has_no_box_and_the_capture_says_it_is_incomplete(
    tmp_path: Path,
) -> None:
    terminal = make_terminal(tmp_path)
    photo = PHOTOS[2]
    ids = truth_ids(terminal, photo)

    def missed(truth: TrayRecognition) -> TrayRecognition:
        return replace(truth, dishes=truth.dishes[:-1])

    def add(terminal: Terminal) -> object:
        assert terminal.desk is not None
        return terminal.desk.add_dish(*PIN, ids[-1], "the camera missed it")

    try:
        checkout_by_hand(terminal, photo, missed, add)
        (capture,) = captured(terminal)
    finally:
        terminal.close()
    dishes = capture.data["dishes"]
    assert [d["dish_id"] for d in dishes] == ids
    assert dishes[-1] == {
        "dish_id": ids[-1],
        "box_xyxy": None,
        "corrected": True,
        "source": "cashier",
        "model_dish_id": None,
    }
    assert all(d["box_xyxy"] is not None for d in dishes[:-1])
    assert capture.data["unboxed"] == [ids[-1]]
    assert not capture.complete and capture.corrected


def test_a_voided_tray_is_kept_only_when_configured_and_then_for_review(tmp_path: Path) -> None:
    for keep, expected in ((False, 0), (True, 1)):
        folder = tmp_path / str(keep)
        folder.mkdir()
        terminal = make_terminal(folder, captures=f"  keep_voided: {str(keep).lower()}\n")
        try:
            session = terminal.session
            frame = read_frame(PHOTOS[0])
            assert terminal.truth is not None
            session.tray_arrived()
            session.tray_settled(500)
            terminal.frame_settled(frame)
            session.recognised(terminal.truth.recognise(frame))
            session.void("diner walked away")
            session.tray_removed()
            records = captured(terminal)
        finally:
            terminal.close()
        assert len(records) == expected
        if records:
            assert records[0].data["outcome"] == "voided" and records[0].needs_review


# --- only the tray is kept ------------------------------------------------------------------


def test_the_crop_keeps_only_the_tray_area_and_shifts_the_boxes(tmp_path: Path) -> None:
    image = np.zeros((400, 600, 3), np.uint8)
    image[:, :] = (0, 0, 255)  # red everywhere: a person, a screen, the room
    image[50:300, 100:400] = (255, 0, 0)  # the tray, blue
    clock = [1_700_000_000.0]
    store = tiny_store(tmp_path, clock)
    record = store.add(
        image,
        [
            ((150.0, 100.0, 250.0, 200.0), "rice", False, "model"),
            ((380, 280, 450, 350), "pork", False, "model"),
        ],
        checkout_id="c1",
        model_version="m1",
        outcome="paid",
        tray_area=(100, 50, 400, 300),
    )
    assert record is not None
    kept = cv2.imread(str(record.image_path))
    assert kept is not None
    assert kept.shape == (250, 300, 3)
    assert kept[:, :, 2].max() < 60, "no red pixel from outside the tray is kept"
    assert kept[:, :, 0].min() > 200
    assert record.boxes == [
        ("rice", (50.0, 50.0, 150.0, 150.0)),
        ("pork", (280.0, 230.0, 300.0, 250.0)),
    ]
    assert record.data["crop"] == {
        "x": 100,
        "y": 50,
        "frame_size": [600, 400],
        "tray_area": [100, 50, 400, 300],
    }


def test_a_polygon_tray_area_blacks_out_what_lies_beside_it() -> None:
    image = np.full((100, 100, 3), 255, np.uint8)
    crop, rect = crop_to_tray(image, [(10.0, 10.0), (90.0, 10.0), (10.0, 90.0)])
    assert rect == (10, 10, 90, 90)
    assert crop[2, 2].tolist() == [255, 255, 255]  # inside the triangle
    assert crop[75, 75].tolist() == [0, 0, 0]  # beside it: gone


@pytest.mark.parametrize(
    ("frame_size", "expected"),
    [
        ((640, 480), (100, 50, 500, 400)),
        ((1280, 960), (200, 100, 1000, 800)),
        ((640, 640), None),  # another shape: the camera moved; keep nothing
    ],
)
def test_the_calibrated_area_follows_the_frame_size(
    frame_size: tuple[int, int], expected: tuple[int, int, int, int] | None
) -> None:
    assert scale_tray_area((100, 50, 500, 400), (640, 480), frame_size) == expected


def test_the_terminal_crops_captures_to_its_calibrated_tray_area(tmp_path: Path) -> None:
    profile = tmp_path / "calibration.yaml"
    profile.write_text(
        "camera:\n  frame_width: 640\n  frame_height: 640\n  tray_area: [0, 100, 640, 600]\n"
        "  empty_brightness: 100.0\n  white_balance_gains: [1.0, 1.0, 1.0]\n  focus: 100.0\n"
        "  calibrated_at: '2024-05-01T09:40:00+08:00'\n",
        encoding="utf-8",
    )
    terminal = make_terminal(tmp_path, calibration=str(profile))
    try:
        frame = read_frame(PHOTOS[3])
        HeadlessDemo(terminal, io.StringIO()).checkout(frame)
        (capture,) = captured(terminal)
    finally:
        terminal.close()
    assert capture.image_size == (640, 500)
    assert terminal.truth is not None
    expected = []
    for dish in terminal.truth.recognise(frame).dishes:
        x1, y1, x2, y2 = dish.box_xyxy
        clipped = (x1, min(max(y1 - 100, 0), 500), x2, min(max(y2 - 100, 0), 500))
        if clipped[3] - clipped[1] >= 1:
            expected.append((dish.dish_id, clipped))
    assert len(capture.boxes) == len(expected)
    for (dish_id, box), (want_id, want) in zip(capture.boxes, expected, strict=True):
        assert dish_id == want_id
        assert box == pytest.approx(want, abs=0.01)


# --- size cap and retention -----------------------------------------------------------------


def test_the_size_cap_deletes_the_oldest_captures_first(tmp_path: Path) -> None:
    clock = [1_700_000_000.0]
    probe = tiny_store(tmp_path / "probe", clock)
    first = probe.add(noise_image(0), [], checkout_id="p", model_version="m", outcome="paid")
    assert first is not None
    one = probe.stats().total_bytes
    store = tiny_store(tmp_path, clock, max_bytes=int(one * 3.5))
    for index in range(6):
        clock[0] += 60
        store.add(
            noise_image(index), [], checkout_id=f"c{index}", model_version="m", outcome="paid"
        )
    assert [r.checkout_id for r in store.list()] == ["c3", "c4", "c5"]
    stats = store.stats()
    assert (stats.count, stats.pruned, stats.added) == (3, 3, 6)
    assert stats.total_bytes <= store.max_bytes
    # A store opened later (the CLI, a restart) sees the same captures on disk.
    assert [r.checkout_id for r in tiny_store(tmp_path, clock).list()] == ["c3", "c4", "c5"]


def test_captures_past_retention_are_deleted(tmp_path: Path) -> None:
    clock = [1_700_000_000.0]
    store = tiny_store(tmp_path, clock, retention_days=30)
    for index in range(3):
        clock[0] += 10 * 86_400
        store.add(
            noise_image(index), [], checkout_id=f"c{index}", model_version="m", outcome="paid"
        )
    clock[0] += 15 * 86_400  # c0 is now 35 days old, c1 25
    assert store.prune() == 1
    assert [r.checkout_id for r in store.list()] == ["c1", "c2"]
    assert not any(store.folder.glob("*/*c0*")), "its files are gone too"


def test_a_crash_mid_write_leaves_nothing_half_written_after_recovery(tmp_path: Path) -> None:
    clock = [1_700_000_000.0]
    store = tiny_store(tmp_path, clock)
    record = store.add(noise_image(1), [], checkout_id="ok", model_version="m", outcome="paid")
    assert record is not None
    day = record.json_path.parent
    (day / ".20231114T221320000Z-x.jpg.tmp").write_bytes(b"half")
    (day / "20231114T221320000Z-orphan.jpg").write_bytes(b"no record")
    reopened = tiny_store(tmp_path, clock)
    assert reopened.recover() == 2
    assert sorted(p.name for p in day.iterdir()) == sorted(
        [record.json_path.name, record.image_path.name]
    )


# --- never in the checkout's way ------------------------------------------------------------


def test_a_full_disk_loses_the_capture_but_not_the_checkout(tmp_path: Path) -> None:
    terminal = make_terminal(tmp_path)
    assert terminal.captures is not None

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    terminal.captures.store._write_file = disk_full
    try:
        record = HeadlessDemo(terminal, io.StringIO()).checkout(read_frame(PHOTOS[0]))
        records = captured(terminal)
    finally:
        terminal.close()
    assert record.status == "posted"
    assert records == []
    assert terminal.captures.store.stats().failed == 1
    assert not [p for p in (tmp_path / "captures").rglob("*") if p.is_file()]


def test_a_writer_that_falls_behind_drops_and_counts(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def slow_write(path: Path, data: bytes) -> None:
        started.set()
        release.wait(30)
        path.write_bytes(data)

    clock = [1_700_000_000.0]
    store = tiny_store(tmp_path, clock, write_file=slow_write)
    writer = CaptureWriter(store, queue_size=1)

    def job(name: str) -> CaptureJob:
        return CaptureJob(noise_image(0), (), name, "m", "paid")

    assert writer.submit(job("first"))
    assert started.wait(30)
    assert writer.submit(job("second"))  # waits in the queue
    assert not writer.submit(job("third"))  # the queue is full
    release.set()
    assert writer.flush(30)
    writer.close()
    assert writer.dropped == 1
    assert sorted(r.checkout_id for r in store.list()) == ["first", "second"]


# --- export ---------------------------------------------------------------------------------


def test_export_writes_a_yolo_dataset_that_reads_back_with_the_same_boxes(
    tmp_path: Path,
) -> None:
    terminal = make_terminal(tmp_path)
    photo = PHOTOS[2]
    ids = truth_ids(terminal, photo)

    def missed(truth: TrayRecognition) -> TrayRecognition:
        return replace(truth, dishes=truth.dishes[:-1])

    def add(terminal: Terminal) -> object:
        assert terminal.desk is not None
        return terminal.desk.add_dish(*PIN, ids[-1], "missed")

    try:
        demo = HeadlessDemo(terminal, io.StringIO())
        for photo_path in PHOTOS[:3]:
            demo.checkout(read_frame(photo_path))
        checkout_by_hand(terminal, photo, missed, add)
        records = captured(terminal)
    finally:
        terminal.close()
    assert len(records) == 4 and sum(not r.complete for r in records) == 1

    out = tmp_path / "export"
    menu_ids = [item.id for item in terminal.menu]
    summary = export_yolo(records, out, class_names=sorted(menu_ids), since="2024-05-01")
    assert (summary.images, summary.skipped_incomplete) == (3, 1)
    dataset = read_dataset(out / "dataset.yaml")
    assert dataset.class_names == sorted(menu_ids)
    by_name = {r.capture_id + ".jpg": r for r in records}
    assert len(dataset.images) == 3
    for image in dataset.images:
        record = by_name[image.path.name]
        expected = sorted(record.boxes)
        got = sorted((o.class_name, o.box_xyxy) for o in image.objects)
        assert [name for name, _ in got] == [name for name, _ in expected]
        for (_, box), (_, want) in zip(got, expected, strict=True):
            assert box == pytest.approx(want, abs=1.0)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["images"] == 3 and manifest["exported_at"]
    for entry in manifest["images"]:
        assert set(entry) == {
            "file",
            "checkout_id",
            "corrected",
            "model_version",
            "timestamp",
            "needs_review",
        }
        assert (out / entry["file"]).is_file()

    with_incomplete = tmp_path / "export-all"
    export_yolo(records, with_incomplete, include_incomplete=True)
    entries = json.loads((with_incomplete / "manifest.json").read_text(encoding="utf-8"))["images"]
    assert len(entries) == 4
    assert [e["needs_review"] for e in entries if e["corrected"]] == [True]


def test_the_captures_commands_export_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = make_terminal(tmp_path)
    try:
        demo = HeadlessDemo(terminal, io.StringIO())
        for photo in PHOTOS[:2]:
            demo.checkout(read_frame(photo))
        captured(terminal)
    finally:
        terminal.close()
    config = str(tmp_path / "terminal.yaml")
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    out = tmp_path / "out"
    capsys.readouterr()
    assert (
        main(["captures", "export", "--since", yesterday, "--to", str(out), "--config", config])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 2 and summary["classes"] == len(terminal.menu)
    assert len(list((out / "labels").glob("*.txt"))) == 2
    names = read_dataset(out).class_names
    assert names == sorted(item.id for item in terminal.menu)

    assert main(["captures", "stats", "--config", config]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["count"] == 2 and stats["incomplete"] == 0
    assert (
        main(["captures", "export", "--since", yesterday, "--to", str(out), "--config", config])
        == 1
    )
    assert "not an empty folder" in capsys.readouterr().err


def test_a_checkout_without_a_settled_frame_is_not_captured(tmp_path: Path) -> None:
    terminal = make_terminal(tmp_path, captures="  enabled: false\n")
    assert terminal.captures is None
    clock = [1_700_000_000.0]
    store = tiny_store(tmp_path, clock)
    recorder = CaptureRecorder(terminal.session, CaptureWriter(store), keep_voided=True)
    try:
        frame = read_frame(PHOTOS[0])
        assert terminal.truth is not None
        session = terminal.session
        session.tray_arrived()
        session.tray_settled(500)
        session.recognised(terminal.truth.recognise(frame))  # nobody called frame_settled
        session.void("test")
        session.tray_removed()
    finally:
        recorder.close()
        terminal.close()
    assert store.list() == []
    assert recorder.skipped == 1
