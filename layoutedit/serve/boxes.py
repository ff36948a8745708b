"""Target layouts from per-object boxes and from painted maps. Pure numpy, no model.

A box says where an object goes: the centre of its bounding box, as fractions of the image
(`cx`, `cy` in 0-1, from the left and the top), and linear scales of its width and height
(`sx`, `sy`; 1 = as it is; equal scales keep its proportions). Boxes are read against a
*base* layout (the source's masks, or the layout of the
result one continued from); a box left as it is changes nothing, the others become
`layout_edits.Box` operations applied in object order.

A painted map is an RGB picture in the scene's label colours (the layout preview painted
over with the objects' colours): each pixel takes the nearest label colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from layoutedit.errors import UserError
from layoutedit.scenes.layout_edits import Box, Operation, apply_operations
from layoutedit.scenes.masks import bounding_box

_SAME = 1e-3  # box changes smaller than this (fractions) are no change


@dataclass(frozen=True)
class ObjectBox:
    """Where one object goes: bounding-box centre (fractions of width and height) and the
    scales of its bounding box's width and height."""

    cx: float
    cy: float
    sx: float = 1.0
    sy: float = 1.0

    @classmethod
    def scaled(cls, cx: float, cy: float, scale: float) -> ObjectBox:
        """A box that keeps the object's proportions, `scale` times its size."""
        return cls(cx, cy, scale, scale)

    @property
    def keeps_proportions(self) -> bool:
        """Whether the width and height scale alike."""
        return abs(self.sx - self.sy) < _SAME


def boxes_of(labels: np.ndarray, count: int) -> list[ObjectBox]:
    """The boxes that leave a layout as it is: each object's bounding-box centre, scale 1.

    Args:
        labels: (H, W) label grid, objects 0..count-1 (an absent object gets the centre).
        count: number of objects K.
    """
    height, width = labels.shape
    out = []
    for k in range(count):
        bounds = bounding_box(labels == k)
        if bounds is None:
            out.append(ObjectBox(0.5, 0.5))
            continue
        x0, y0, x1, y1 = bounds
        out.append(ObjectBox((x0 + x1) / 2 / width, (y0 + y1) / 2 / height))
    return out


def box_operations(
    labels: np.ndarray, names: Sequence[str], boxes: Sequence[ObjectBox]
) -> list[Operation]:
    """The `Box` operations (pixels) that move each changed object of `labels` to its box.

    Raises:
        UserError: a scale that is not positive, or a box for an object the base lacks.
    """
    height, width = labels.shape
    start = boxes_of(labels, len(names))
    ops: list[Operation] = []
    for k, (name, box, now) in enumerate(zip(names, boxes, start, strict=True)):
        if min(box.sx, box.sy) <= 0:
            raise UserError(f"{name}: the scale must be greater than 0")
        if (
            abs(box.cx - now.cx) < _SAME
            and abs(box.cy - now.cy) < _SAME
            and abs(box.sx - 1) < _SAME
            and abs(box.sy - 1) < _SAME
        ):
            continue
        bounds = bounding_box(labels == k)
        if bounds is None:
            raise UserError(f"{name} is not visible in the base layout, so it has no box")
        x0, y0, x1, y1 = bounds
        half_w, half_h = (x1 - x0) * box.sx / 2, (y1 - y0) * box.sy / 2
        cx, cy = box.cx * width, box.cy * height
        stretch = not box.keeps_proportions
        ops.append(Box(name, cx - half_w, cy - half_h, cx + half_w, cy + half_h, stretch=stretch))
    return ops


def layout_from_boxes(
    labels: np.ndarray, names: Sequence[str], boxes: Sequence[ObjectBox]
) -> np.ndarray:
    """(H, W) int16 layout: the base `labels` with every object moved to its box.

    Raises:
        UserError: an object pushed out of the frame or hidden behind others
            (`layout_edits.apply_operations`).
    """
    ops = box_operations(labels, names, boxes)
    if not ops:
        return labels.astype(np.int16)
    grid, _ = apply_operations(labels, names, ops)
    return grid


def labels_from_painting(
    painted: np.ndarray, palette: Sequence[tuple[int, int, int]], size: tuple[int, int]
) -> np.ndarray:
    """(H, W) int16 labels of a painted map: nearest palette colour, resized (nearest).

    Args:
        painted: (h, w, 3|4) uint8; transparent pixels (alpha < 128) are background.
        palette: the K object colours then the background's.
        size: (H, W) of the scene.
    """
    rgb = painted[..., :3].astype(np.float64)
    colours = np.asarray(palette, dtype=np.float64)
    dist = ((rgb[..., None, :] - colours[None, None]) ** 2).sum(-1)  # (h, w, K+1)
    labels = dist.argmin(-1).astype(np.int16)
    if painted.shape[-1] == 4:
        labels[painted[..., 3] < 128] = len(palette) - 1
    height, width = size
    if labels.shape != (height, width):
        labels = np.asarray(
            Image.fromarray(labels.astype(np.uint8)).resize(
                (width, height), Image.Resampling.NEAREST
            )
        ).astype(np.int16)
    return labels


def upscale_labels(
    labels: np.ndarray, palette: Sequence[tuple[int, int, int]], side: int
) -> np.ndarray:
    """An (h, w, 3) uint8 colour map of `labels`, enlarged (nearest) so its long side is at
    least `side` pixels: small scenes (64 px) stay visible and paintable."""
    colours = np.asarray(palette, dtype=np.uint8)[labels]
    factor = max(1, -(-side // max(labels.shape)))
    return np.repeat(np.repeat(colours, factor, axis=0), factor, axis=1)
