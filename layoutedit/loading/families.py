"""Which Stable Diffusion family a model is (`sd1`, `sd2`, `sdxl`), read from its configs
alone, and SDXL's rule for the empty prompt. Light (json only): the planner reads these
before any weights, the loaders while loading them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def family_of(unet: dict[str, Any], n_encoders: int, prediction: str) -> str:
    """`sdxl` (two text encoders or text-and-time embeddings), `sd2` (1024-wide text or
    v-prediction) or `sd1`, from the UNet config, the encoder count and the prediction."""
    if n_encoders > 1 or unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    if int(unet.get("cross_attention_dim", 768)) >= 1024 or prediction == "v_prediction":
        return "sd2"
    return "sd1"


def is_sdxl_folder(folder: Path) -> bool:
    """Whether a diffusers folder holds an SDXL model: a second text encoder, or a UNet that
    takes text and time embeddings (`addition_embed_type: text_time`)."""
    if (folder / "text_encoder_2").is_dir():
        return True
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return False  # the loader reports unreadable configs itself
    return unet.get("addition_embed_type") == "text_time"


def forces_zero_empty_prompt(folder: Path) -> bool:
    """`force_zeros_for_empty_prompt` of the folder's `model_index.json` (diffusers' SDXL
    default, true, when the file or the key is missing)."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return True
    return bool(index.get("force_zeros_for_empty_prompt", True))
