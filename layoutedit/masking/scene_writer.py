"""Masks + names -> an ordinary scene folder (image.png, mask.png, semantic_dict.json).

The folder is checked by reading it back with `layoutedit.scenes.scene.load_scene`, so what `mask`
writes is exactly what `learn`, `edit` and `inspect` accept. The three files are staged and
moved in together (`layoutedit.output_guard`): a folder holding files layoutedit did not
write is refused unless `overwrite`, which replaces only these three.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from layoutedit.atomic import write_json_atomic, write_png_atomic
from layoutedit.errors import UserError
from layoutedit.output_guard import staged_output
from layoutedit.scenes.label_map import BACKGROUND
from layoutedit.scenes.scene import LABELS_NAME, MASK_NAME, Scene, load_scene

# Label-map colours: pairwise at least 190 apart in RGB (the scene loader needs 2 x its
# colour tolerance, 80 by default). The first three are the shapes world's palette.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (251, 1, 1),
    (1, 200, 1),
    (1, 1, 251),
    (251, 216, 1),
    (1, 216, 251),
    (251, 1, 216),
    (1, 1, 1),
    (128, 128, 128),
)
BACKGROUND_COLOUR: tuple[int, int, int] = (254, 254, 254)
IMAGE_NAME = "image.png"


def labels_from_masks(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) disjoint bool masks -> (H, W) int16 labels, K where none is set."""
    count = masks.shape[0]
    labels = np.full(masks.shape[1:], count, dtype=np.int16)
    for i in range(count):
        labels[masks[i]] = i
    return labels


def write_mask_scene(
    folder: Path,
    image: np.ndarray,
    masks: np.ndarray,
    names: Sequence[str],
    *,
    overwrite: bool = False,
) -> Scene:
    """Write a scene folder and read it back.

    Args:
        folder: the scene folder to create (or update, with `overwrite`).
        image: (H, W, 3) uint8 RGB, written as image.png.
        masks: (K, H, W) bool, one per name, disjoint.
        names: K object names.
        overwrite: write into a folder holding files layoutedit did not write (only
            image.png, mask.png and semantic_dict.json are replaced).

    Raises:
        UserError: an empty mask, too many objects, or a folder with files layoutedit did not
            write and no `overwrite`.
    """
    if len(names) > len(PALETTE):
        raise UserError(f"at most {len(PALETTE)} objects per mask, got {len(names)}")
    empty = [n for n, m in zip(names, masks, strict=True) if not m.any()]
    if empty:
        raise UserError(f"no pixels found for {', '.join(repr(n) for n in empty)}")
    labels = labels_from_masks(masks)
    palette = np.array([*PALETTE[: len(names)], BACKGROUND_COLOUR], dtype=np.uint8)
    label_map = {name: list(PALETTE[i]) for i, name in enumerate(names)}
    label_map[BACKGROUND] = list(BACKGROUND_COLOUR)
    files = {IMAGE_NAME: image, MASK_NAME: palette[labels]}
    # Staged and moved in at the end (`output_guard`): files of the user's in the folder are
    # refused unless `overwrite`, which replaces only these three.
    with staged_output(folder, overwrite=overwrite) as stage:
        for name, pixels in files.items():
            write_png_atomic(stage.unit(name), pixels)
        write_json_atomic(stage.unit(LABELS_NAME), label_map)
    return load_scene(folder)
