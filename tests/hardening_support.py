"""Scene folders for the hardening tests (issue #14)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = {"cat": [250, 20, 20], "pot": [20, 250, 20], "background": [255, 255, 255]}


def write_scene(folder: Path, size: int = 32, labels: object = LABELS) -> Path:
    """A two-object scene: cat in the top-left quarter, pot in the bottom-right one."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        folder / "image.png"
    )
    mask = np.full((size, size, 3), 255, np.uint8)
    half = size // 2
    mask[:half, :half] = LABELS["cat"]
    mask[half:, half:] = LABELS["pot"]
    Image.fromarray(mask).save(folder / "mask.png")
    (folder / "semantic_dict.json").write_text(json.dumps(labels))
    return folder
