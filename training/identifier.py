"""Fine-tuning the identifier's backbone on dish crops, and exporting its embedding to ONNX.

The identifier names a dish by comparing the embedding of its crop with a gallery of reference
embeddings, so a new dish needs photos, not training. Frozen ImageNet features name only about two
thirds of the canteen's dishes, so the backbone is fine-tuned on the crops of the labelled trays
with a cosine classifier: the class weights and the embeddings are both L2-normalised, which trains
exactly the geometry the gallery's cosine matching uses. The classifier is thrown away at export;
only the pooled 1280-d embedding goes into the bundle.

Dishes the fine-tuning never saw must still match at least as well as with the plain ImageNet
backbone: :func:`gallery_top1` measures both on a held-out cuisine.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from training.offline import setup_offline, use_all_cores
from vision.gallery import Gallery
from vision.identifier import crop_box
from vision.labels import label_path_for, read_yolo_labels
from vision.sources import read_image

if TYPE_CHECKING:
    from vision.datasets import LabelledDataset

logger = logging.getLogger(__name__)

INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, eq=False)
class Crop:
    """One dish crop (BGR) with its class name and the image it came from (compared by identity)."""

    image: np.ndarray
    class_name: str
    source: str


def dataset_crops(dataset: LabelledDataset, images: set[str] | None = None) -> list[Crop]:
    """Every labelled object of ``dataset`` as a crop (optionally only the named image files)."""
    crops = []
    for labelled in dataset.images:
        if images is not None and labelled.path.name not in images:
            continue
        image = read_image(labelled.path)
        for obj in labelled.objects:
            crops.append(Crop(crop_box(image, obj.box_xyxy), obj.class_name, labelled.path.name))
    return crops


def yolo_crops(images: Sequence[Path], class_names: Sequence[str]) -> list[Crop]:
    """Crops of every object of YOLO-labelled images (labels beside them in ``labels/``)."""
    crops = []
    for path in images:
        label_file = label_path_for(path)
        if not label_file.exists():
            continue
        image = read_image(path)
        height, width = image.shape[:2]
        for box in read_yolo_labels(label_file, width, height):
            crops.append(Crop(crop_box(image, box.box_xyxy), class_names[box.class_id], path.name))
    return crops


def _to_tensor(crop: np.ndarray, size: int = INPUT_SIZE) -> Any:
    import torch

    rgb = cv2.cvtColor(
        cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )
    array = (rgb.astype(np.float32) / 255.0 - np.array(MEAN, np.float32)) / np.array(
        STD, np.float32
    )
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def _augment(crop: np.ndarray, rng: random.Random) -> np.ndarray:
    """Random resized crop, flips, a small rotation and lighting change: what trays vary by."""
    height, width = crop.shape[:2]
    scale = rng.uniform(0.6, 1.0)
    new_w, new_h = max(2, int(width * math.sqrt(scale))), max(2, int(height * math.sqrt(scale)))
    x0, y0 = rng.randint(0, width - new_w), rng.randint(0, height - new_h)
    out = crop[y0 : y0 + new_h, x0 : x0 + new_w]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.3:
        out = out[::-1, :]
    angle = rng.uniform(-15, 15)
    matrix = cv2.getRotationMatrix2D((out.shape[1] / 2, out.shape[0] / 2), angle, 1.0)
    out = cv2.warpAffine(
        np.ascontiguousarray(out),
        matrix,
        (out.shape[1], out.shape[0]),
        borderMode=cv2.BORDER_REFLECT,
    )
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    result: np.ndarray = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return result


class EmbeddingNet:
    """MobileNetV2 features + global average pooling: the embedding the bundle exports."""

    @staticmethod
    def build(pretrained: bool = True) -> Any:
        import torch
        import torchvision

        weights = "IMAGENET1K_V1" if pretrained else None
        backbone = torchvision.models.mobilenet_v2(weights=weights)

        class _Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.features = backbone.features
                self.pool = torch.nn.AdaptiveAvgPool2d(1)

            def forward(self, x: Any) -> Any:
                return torch.flatten(self.pool(self.features(x)), 1)

        return _Net()


class CosineClassifier:
    """Normalised weights times normalised embeddings, scaled: trains cosine geometry."""

    @staticmethod
    def build(dim: int, n_classes: int, scale: float = 16.0) -> Any:
        import torch

        class _Head(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.weight = torch.nn.Parameter(torch.randn(n_classes, dim) * 0.01)
                self.scale = scale

            def forward(self, embedding: Any) -> Any:
                weight = torch.nn.functional.normalize(self.weight, dim=1)
                return self.scale * torch.nn.functional.normalize(embedding, dim=1) @ weight.T

        return _Head()


def embed_crops(
    net: Any, crops: Sequence[np.ndarray], batch: int = 32, device: str = "cpu"
) -> np.ndarray:
    """L2-normalised embeddings of crops with a torch network (evaluation mode) on ``device``."""
    import torch

    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch):
            tensor = torch.stack([_to_tensor(c) for c in crops[start : start + batch]])
            embedding = net(tensor.to(device))
            out.append(torch.nn.functional.normalize(embedding, dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def gallery_top1(
    reference: np.ndarray,
    reference_labels: Sequence[str],
    queries: np.ndarray,
    query_labels: Sequence[str],
) -> float:
    """Top-1 of ``queries`` against a gallery of ``reference`` matched by class prototypes, the
    way the terminal's identifier matches."""
    gallery = Gallery(reference.shape[1])
    labels = np.array(reference_labels)
    for label in sorted(set(reference_labels)):
        members = np.flatnonzero(labels == label)
        gallery.add(label, reference[members], [f"{label}:{i}" for i in members])
    best = [c[0].dish_id if c else None for c in gallery.match(queries, k=1)]
    return float(np.mean([b == t for b, t in zip(best, query_labels, strict=True)]))


def few_shot_split(
    crops: Sequence[Crop], shots: int, seed: int = 0
) -> tuple[list[Crop], list[Crop]]:
    """``shots`` references per class (from distinct photos where possible), the rest as queries."""
    rng = random.Random(seed)
    by_class: dict[str, list[Crop]] = {}
    for crop in crops:
        by_class.setdefault(crop.class_name, []).append(crop)
    references: list[Crop] = []
    queries: list[Crop] = []
    for members in by_class.values():
        members = members[:]
        rng.shuffle(members)
        if len(members) <= shots:
            continue  # a class with too few crops cannot be both referenced and tested
        chosen_sources: set[str] = set()
        chosen: list[Crop] = []
        for crop in members:
            if len(chosen) < shots and crop.source not in chosen_sources:
                chosen.append(crop)
                chosen_sources.add(crop.source)
        for crop in members:
            if len(chosen) < shots and crop not in chosen:
                chosen.append(crop)
        references.extend(chosen)
        # Queries from other photos than the references, so a plate is not matched to itself.
        queries.extend(c for c in members if c not in chosen and c.source not in chosen_sources)
    return references, queries


@dataclass
class IdentifierRun:
    out: Path
    onnx: Path
    report: dict[str, Any]


def train_identifier(
    train: Sequence[Crop],
    val: Sequence[Crop],
    out: Path,
    *,
    home: Path,
    epochs: int = 8,
    batch: int = 32,
    lr: float = 3e-4,
    threads: int | None = None,
    held_out: Sequence[Crop] = (),
    progress: Callable[[str], None] = logger.info,
    resume: bool = False,
    bar: bool = False,
    device: str = "cpu",
) -> IdentifierRun:
    """Fine-tune the backbone on ``train`` crops, report gallery top-1, export the embedding.

    Args:
        train: crops to learn from (their class names are the classes).
        val: crops of other photos of the same dishes, for gallery top-1 with ``train`` as gallery.
        out: where the ONNX file and the report go.
        home: the project home, for the offline caches.
        epochs: passes over ``train``.
        batch: batch size.
        lr: learning rate of the backbone (the head gets 10x).
        threads: torch threads (default: every core).
        held_out: crops of dishes never trained on (another cuisine), for the 5-shot check.
        progress: where progress lines go.
        resume: continue from ``out/checkpoint.pt`` (written after every epoch) when it exists.
        bar: show a progress bar with an ETA over all batches of the run (on stderr).
        device: "cpu", a CUDA index ("0") or a torch device ("cuda:0"); the crops are still
            augmented on the CPU, and the ONNX export is made on the CPU either way.
    """
    setup_offline(home)
    import torch

    if device.isdigit():  # a CUDA index, as ultralytics takes it
        device = f"cuda:{device}"
    if threads:
        torch.set_num_threads(threads)
    else:
        use_all_cores()
    torch.manual_seed(0)
    rng = random.Random(0)
    out.mkdir(parents=True, exist_ok=True)
    classes = sorted({c.class_name for c in train})
    index = {name: i for i, name in enumerate(classes)}

    def measure(net: Any) -> dict[str, float]:
        result: dict[str, float] = {}
        train_emb = embed_crops(net, [c.image for c in train], device=device)
        if val:
            val_emb = embed_crops(net, [c.image for c in val], device=device)
            seen = [i for i, c in enumerate(val) if c.class_name in index]
            result["val_top1_all_train_refs"] = gallery_top1(
                train_emb,
                [c.class_name for c in train],
                val_emb[seen],
                [val[i].class_name for i in seen],
            )
        if held_out:
            refs, queries = few_shot_split(held_out, 5)
            if refs and queries:
                ref_emb = embed_crops(net, [c.image for c in refs], device=device)
                query_emb = embed_crops(net, [c.image for c in queries], device=device)
                result["held_out_5shot_top1"] = gallery_top1(
                    ref_emb,
                    [c.class_name for c in refs],
                    query_emb,
                    [c.class_name for c in queries],
                )
        return result

    net = EmbeddingNet.build(pretrained=True).to(device)
    report: dict[str, Any] = {"classes": classes, "n_train": len(train), "n_val": len(val)}
    checkpoint = out / "checkpoint.pt"
    saved: dict[str, Any] | None = None
    if resume and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        if saved["classes"] != classes or saved["epochs"] != epochs:
            raise ValueError(
                f"{checkpoint} was made for other classes or another schedule: start afresh"
            )
        report["imagenet"] = saved["imagenet"]
        progress(f"resuming after epoch {saved['epoch'] + 1}/{epochs}")
    else:
        report["imagenet"] = measure(net)
        progress(f"ImageNet backbone: {report['imagenet']}")

    head = CosineClassifier.build(1280, len(classes)).to(device)
    optimizer = torch.optim.AdamW(
        [
            {"params": net.parameters(), "lr": lr},
            {"params": head.parameters(), "lr": lr * 10},
        ],
        weight_decay=1e-4,
    )
    steps = epochs * math.ceil(len(train) / batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[lr, lr * 10], total_steps=steps, pct_start=0.15
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    first_epoch = 0
    if saved is not None:
        net.load_state_dict(saved["net"])
        head.load_state_dict(saved["head"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"].cpu())
        first_epoch = saved["epoch"] + 1
    batches_per_epoch = math.ceil(len(train) / batch)
    meter = _ProgressBar(epochs * batches_per_epoch, first_epoch * batches_per_epoch, bar)
    started = time.monotonic()
    for epoch in range(first_epoch, epochs):
        net.train()
        # The first blocks keep ImageNet's low-level filters (and their statistics).
        for block in net.features[:4]:
            block.eval()
            for parameter in block.parameters():
                parameter.requires_grad = False
        order = list(range(len(train)))
        rng.shuffle(order)
        total, seen = 0.0, 0
        for start in range(0, len(order), batch):
            chosen = [train[i] for i in order[start : start + batch]]
            if len(chosen) < 2:
                continue
            images = torch.stack([_to_tensor(_augment(c.image, rng)) for c in chosen]).to(device)
            targets = torch.tensor([index[c.class_name] for c in chosen], device=device)
            loss = loss_fn(head(net(images)), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(chosen)
            seen += len(chosen)
            meter.step(f"epoch {epoch + 1}/{epochs} loss {total / max(seen, 1):.3f}")
        elapsed = time.monotonic() - started
        eta = elapsed / (epoch + 1 - first_epoch) * (epochs - epoch - 1)
        progress(
            f"epoch {epoch + 1}/{epochs} loss {total / max(seen, 1):.3f} "
            f"{elapsed:.0f}s, ETA {eta:.0f}s"
        )
        torch.save(
            {
                "classes": classes,
                "epochs": epochs,
                "epoch": epoch,
                "imagenet": report["imagenet"],
                "net": net.state_dict(),
                "head": head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
            },
            checkpoint.with_suffix(".tmp"),
        )
        checkpoint.with_suffix(".tmp").replace(checkpoint)
    meter.close()
    report["fine_tuned"] = measure(net)
    report["epochs"] = epochs
    report["train_seconds"] = round(time.monotonic() - started, 1)
    report["device"] = str(device)
    progress(f"fine-tuned backbone: {report['fine_tuned']}")
    net = net.cpu()
    onnx = export_embedding(net, out / "identifier.onnx")
    torch.save(net.state_dict(), out / "identifier.pt")
    (out / "identifier-report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return IdentifierRun(out, onnx, report)


class _ProgressBar:
    """A one-line progress bar with an ETA on stderr (only when asked for and on a terminal
    or a log that wants it)."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total = max(1, total)
        self.done = done
        self.start_done = done
        self.enabled = enabled
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        import sys

        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.start_done) / max(elapsed, 1e-6)
        eta = (self.total - self.done) / max(rate, 1e-6)
        filled = int(30 * self.done / self.total)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {100 * self.done / self.total:5.1f}% "
            f"{text} ETA {int(eta) // 60:d}m{int(eta) % 60:02d}s "
        )
        sys.stderr.flush()

    def close(self) -> None:
        import sys

        if self.enabled:
            sys.stderr.write("\n")


def export_embedding(net: Any, path: Path, size: int = INPUT_SIZE) -> Path:
    """Export ``net`` (images -> embeddings) to ONNX with a dynamic batch."""
    import torch

    net.eval()
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        net,
        (dummy,),
        str(path),
        input_names=["images"],
        output_names=["embeddings"],
        dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path
