"""What the recipe's stages (`train`, `decoder_finetune`) and the gate (`evaluate`) share: a
run folder's log, the images-to-tensor conversion and the check of a model folder argument."""

from __future__ import annotations

import argparse
import json
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


def pipeline_folder(text: str) -> Path:
    """argparse `type` for a model argument: a pipeline folder (with `model_index.json`).

    A wrong path is a usage error (exit 2) before any data is generated or loaded, not a
    traceback from the loader minutes later.
    """
    path = Path(text)
    if not (path / "model_index.json").is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a model folder (no model_index.json)")
    return path


def trained_steps(model: Path) -> int:
    """The UNet steps an exported model was trained for (`TRAINING.json`'s `unet_steps`).

    Raises:
        ValueError: no TRAINING.json, or no step count in it.
    """
    try:
        steps = json.loads((model / "TRAINING.json").read_text())["unet_steps"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"{model}: no TRAINING.json with unet_steps (not a recipe export)"
        ) from None
    return int(steps)


def continuable_model(text: str) -> Path:
    """argparse `type` for a model to continue training: a pipeline folder that the recipe
    exported (its TRAINING.json says where training stopped). A usage error (exit 2)."""
    path = pipeline_folder(text)
    try:
        trained_steps(path)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path
