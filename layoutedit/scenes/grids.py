"""Pure-numpy geometry on images and label grids: square padding, nearest resizing, region masks.

Label grids use the coding of `layoutedit.scenes.scene`: value `i < K` is object `i`, value `K` is
the background (K = number of objects).

Non-square images: the model works on squares, so an image is padded to a square of side
`max(H, W)` with the original centred (`square_pad`; image pixels edge-replicated, labels
padded with background), and results are cropped back with `unpad`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PadBox:
    """Where the original (height x width) array sits inside its padded square, in pixels."""

    top: int
    left: int
    height: int
    width: int

    @property
    def side(self) -> int:
        """Side of the padded square, in pixels of the original."""
        return max(self.height, self.width)


def square_pad(
    array: np.ndarray, fill: float | int | tuple[float, ...] | None
) -> tuple[np.ndarray, PadBox]:
    """Pad an (H, W) or (H, W, C) array to a centred (S, S[, C]) square, S = max(H, W).

    Args:
        array: image (H, W, C) or label grid (H, W).
        fill: None replicates the edge pixels (for images, so the model sees no hard border);
            a number or per-channel tuple pads with that constant (labels: the background index).

    Returns:
        The padded array (same dtype) and the box where the original sits.
    """
    height, width = array.shape[:2]
    side = max(height, width)
    top = (side - height) // 2
    left = (side - width) // 2
    box = PadBox(top=top, left=left, height=height, width=width)
    if height == width:
        return array.copy(), box
    pads = [(top, side - height - top), (left, side - width - left)]
    pads += [(0, 0)] * (array.ndim - 2)
    if fill is None:
        return np.pad(array, pads, mode="edge"), box
    out = np.empty((side, side, *array.shape[2:]), dtype=array.dtype)
    out[...] = np.asarray(fill, dtype=array.dtype)
    out[top : top + height, left : left + width] = array
    return out, box


def unpad(array: np.ndarray, box: PadBox) -> np.ndarray:
    """Crop the original region back out of a padded square.

    The square may have any side (e.g. a 512 px model output of a 640 x 480 source padded to
    640): the box is scaled by `array side / box.side`. Leading batch/channel axes are not
    supported: `array` is (S, S) or (S, S, C).
    """
    scale = array.shape[0] / box.side
    top = round(box.top * scale)
    left = round(box.left * scale)
    bottom = round((box.top + box.height) * scale)
    right = round((box.left + box.width) * scale)
    return array[top:bottom, left:right]


def _nearest_index(src: int, dst: int) -> np.ndarray:
    # Sample each destination pixel at the source pixel under its centre.
    idx = np.floor((np.arange(dst) + 0.5) * (src / dst)).astype(np.int64)
    return np.clip(idx, 0, src - 1)


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W[, C]) array to (height, width[, C]); keeps dtype."""
    rows = _nearest_index(array.shape[0], height)
    cols = _nearest_index(array.shape[1], width)
    return array[rows[:, None], cols[None, :]]


def resize_labels(labels: np.ndarray, side: int, pad_value: int | None = None) -> np.ndarray:
    """Resize a label grid to (side, side) int16 with nearest neighbour.

    Args:
        labels: (H, W) integer grid.
        side: output side in pixels (e.g. the latent side 64, or the attention side 16).
        pad_value: for a non-square grid, the label to pad with first (the background index);
            required when H != W so that nothing is stretched.
    """
    if labels.shape[0] != labels.shape[1]:
        if pad_value is None:
            raise ValueError("non-square label grid: give pad_value (the background index)")
        labels, _ = square_pad(labels, pad_value)
    return resize_nearest(labels, side, side).astype(np.int16)


def region_masks(labels: np.ndarray, n_objects: int, side: int) -> np.ndarray:
    """Per-object 0/1 masks on a (side, side) grid: (K, side, side) float32, K = n_objects.

    A non-square grid is padded with background (index K) first, like the image.
    """
    small = resize_labels(labels, side, pad_value=n_objects)
    ks = np.arange(n_objects, dtype=np.int16)[:, None, None]
    return (small[None] == ks).astype(np.float32)


def blend_mask(
    source_labels: np.ndarray, layout_labels: np.ndarray, background_index: int, side: int
) -> np.ndarray:
    """(side, side) bool: True where both the source and the layout are background.

    Both grids are at the same (H, W) size; non-square grids are padded with background.
    """
    src = resize_labels(source_labels, side, pad_value=background_index)
    lay = resize_labels(layout_labels, side, pad_value=background_index)
    return (src == background_index) & (lay == background_index)
