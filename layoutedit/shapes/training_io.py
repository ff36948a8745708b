"""What the recipe's stages (`train`, `decoder_finetune`) and the gate (`evaluate`) share: a
run folder's log and the images-to-tensor conversion."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch


def log_to_run(run: Path, message: str) -> None:
    """Print `message` with the time and append it to `run/train.log`."""
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    with (run / "train.log").open("a") as log:
        log.write(line + "\n")


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
