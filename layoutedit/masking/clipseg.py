"""Object masks from words with CLIPSeg (transformers' `CLIPSegForImageSegmentation`).

The model comes from a local folder or from the offline Hugging Face cache, never from the
network, and only from `.safetensors` weights (no unpickling). Each object name is one text
prompt; the model gives a score map per name (sigmoid of its logits, at the model's input
size, stretched back to the image). Clean-up: a pixel belongs to the object of highest score
when that score reaches the threshold (overlaps resolved by score); each object keeps its
largest component, with its holes filled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from layoutedit.errors import UserError
from layoutedit.scenes.morphology import fill_holes, largest_component

DEFAULT_SEGMENTER = "CIDAS/clipseg-rd64-refined"
DEFAULT_THRESHOLD = 0.4


@dataclass
class Segmenter:
    """A loaded CLIPSeg model and its processor."""

    source: str
    """What was asked for: a folder or a Hugging Face repo id."""
    model: Any
    processor: Any


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the offline Hugging Face cache holds `repo_id`'s config (nothing is fetched)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def load_segmenter(spec: str | Path | None = None) -> Segmenter:
    """Load CLIPSeg from a local folder, or a repo id from the offline Hugging Face cache.

    Args:
        spec: folder or repo id; None for `DEFAULT_SEGMENTER` (from the cache).

    Raises:
        UserError: missing model, no safetensors weights, or not a CLIPSeg folder; the
            message says how to get one.
    """
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    source = str(spec) if spec is not None else DEFAULT_SEGMENTER
    path = Path(source).expanduser()
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1
    if looks_local and path.is_file():
        raise UserError("--segmenter takes a CLIPSeg model folder; this is a file", path=path)
    if looks_local and not path.is_dir():
        raise UserError("CLIPSeg model folder not found (--segmenter)", path=path)
    if not looks_local and not _in_hub_cache(source):
        raise UserError(
            f"CLIPSeg model {source!r} is not in the offline Hugging Face cache: fetch it on a "
            f"connected machine (`huggingface-cli download {source}`), pass --segmenter FOLDER, "
            "or use --method colours"
        )
    where = str(path) if looks_local else source
    try:
        processor = CLIPSegProcessor.from_pretrained(where, local_files_only=True)
        model = CLIPSegForImageSegmentation.from_pretrained(
            where, local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(
            f"cannot load a CLIPSeg model with safetensors weights from {source!r}: "
            f"{_first_line(exc)[:160]}"
        ) from None
    model.eval()
    return Segmenter(source=source, model=model, processor=processor)


def score_maps(segmenter: Segmenter, image: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(K, H, W) float32 scores in 0-1: how much each pixel looks like each name.

    Args:
        image: (H, W, 3) uint8 RGB.
        names: K text prompts.
    """
    import torch
    from PIL import Image

    picture = Image.fromarray(image)
    inputs = segmenter.processor(
        text=list(names), images=[picture] * len(names), padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = segmenter.model(**inputs).logits  # (K, s, s)
    logits = logits.reshape(len(names), 1, *logits.shape[-2:])
    height, width = image.shape[:2]
    resized = torch.nn.functional.interpolate(
        logits.float(), size=(height, width), mode="bilinear", align_corners=False
    )
    return torch.sigmoid(resized[:, 0]).numpy().astype(np.float32)


def masks_from_scores(
    scores: np.ndarray, names: Sequence[str], threshold: float = DEFAULT_THRESHOLD
) -> np.ndarray:
    """(K, H, W) scores -> (K, H, W) disjoint bool masks (module docstring's clean-up).

    Raises:
        UserError: an object with no pixel at or above the threshold.
    """
    best = scores.argmax(axis=0)
    strong = scores.max(axis=0) >= threshold
    masks = np.zeros(scores.shape, dtype=bool)
    taken = np.zeros(scores.shape[1:], dtype=bool)
    # Strongest objects first, so hole filling never takes pixels another object won.
    for i in np.argsort(-scores.reshape(len(names), -1).max(axis=1)):
        own = strong & (best == i)
        if not own.any():
            raise UserError(
                f"CLIPSeg found no pixels for {names[i]!r} at threshold {threshold:g} "
                f"(highest score {float(scores[i].max()):.2f}; try a lower --threshold)"
            )
        mask = fill_holes(largest_component(own)) & ~taken
        masks[i] = mask
        taken |= mask
    return masks


def clipseg_masks(
    segmenter: Segmenter,
    image: np.ndarray,
    names: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """(K, H, W) disjoint bool masks of `names` in `image` (H, W, 3 uint8)."""
    return masks_from_scores(score_maps(segmenter, image, names), names, threshold)
