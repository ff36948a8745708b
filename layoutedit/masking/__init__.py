"""Masks without painting: an image and object names -> an ordinary scene folder.

Two methods: `colours` (k-means colour clusters, no model; for flat-coloured scenes such as
the shapes world, see `colour_clusters`) and `clipseg` (a CLIPSeg model reads the names,
see `clipseg`). Either way `write_mask_scene` writes image.png, mask.png and
semantic_dict.json, read back by `layoutedit.scenes.scene.load_scene`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from pathlib import Path

import numpy as np

from layoutedit.masking.clipseg import DEFAULT_THRESHOLD, clipseg_masks, load_segmenter
from layoutedit.masking.colour_clusters import colour_regions
from layoutedit.masking.naming import assign_names
from layoutedit.masking.scene_writer import write_mask_scene
from layoutedit.scenes.scene import Scene


class MaskMethod(str, Enum):
    """How masks are made."""

    colours = "colours"
    clipseg = "clipseg"


def colour_masks(image: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(K, H, W) bool masks of `names` in `image` by colour clusters, in the names' order.

    Names with colour words go to the nearest-coloured region, others largest first
    (`layoutedit.masking.naming`).
    """
    regions = colour_regions(image, len(names))
    order = assign_names(names, regions.colours, [int(m.sum()) for m in regions.masks])
    return regions.masks[order]


def make_masks(
    image: np.ndarray,
    names: Sequence[str],
    method: MaskMethod = MaskMethod.colours,
    *,
    segmenter: str | Path | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """(K, H, W) disjoint bool masks of `names` (K) in `image` ((H, W, 3) uint8 RGB).

    Raises:
        UserError: objects not found, or (clipseg) a missing model.
    """
    if method == MaskMethod.clipseg:
        return clipseg_masks(load_segmenter(segmenter), image, names, threshold)
    return colour_masks(image, names)


def mask_scene(
    image: np.ndarray,
    names: Sequence[str],
    out: Path,
    method: MaskMethod = MaskMethod.colours,
    *,
    segmenter: str | Path | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    overwrite: bool = False,
) -> Scene:
    """Make the masks and write the scene folder `out`; returns the scene as read back."""
    masks = make_masks(image, names, method, segmenter=segmenter, threshold=threshold)
    return write_mask_scene(out, image, masks, names, overwrite=overwrite)


__all__ = ["MaskMethod", "colour_masks", "make_masks", "mask_scene"]
