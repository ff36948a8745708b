"""Masks + names -> an ordinary scene folder (image.png, mask.png, semantic_dict.json).

The folder is checked by reading it back with `layoutedit.scenes.scene.load_scene`, so what `mask`
writes is exactly what `learn`, `edit` and `inspect` accept. A new folder appears whole or
not at all; in an existing folder (with `overwrite`) the three files are replaced one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from layoutedit.atomic import atomic_folder, write_json_atomic, write_png_atomic
from layoutedit.errors import UserError
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
        overwrite: replace image.png, mask.png and semantic_dict.json of an existing folder.

    Raises:
        UserError: an empty mask, too many objects, or an existing scene without `overwrite`.
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
    if folder.exists() and not folder.is_dir():
        raise UserError("not a folder", path=folder)
    if folder.exists() and any(folder.iterdir()):
        taken = [n for n in (IMAGE_NAME, MASK_NAME, LABELS_NAME) if (folder / n).exists()]
        if taken and not overwrite:
            raise UserError(
                f"already holds {', '.join(taken)} (pass --force to replace them)", path=folder
            )
        for name, pixels in files.items():
            write_png_atomic(folder / name, pixels)
        write_json_atomic(folder / LABELS_NAME, label_map)
    else:
        with atomic_folder(folder) as tmp:
            for name, pixels in files.items():
                write_png_atomic(tmp / name, pixels)
            write_json_atomic(tmp / LABELS_NAME, label_map)
    return load_scene(folder)
