"""Small binary morphology on (H, W) bool masks, pure numpy (no scipy dependency).

Images here are tiny (64 x 64 shapes-world scenes), so plain shifts and a flood fill are
fast enough and keep the package's dependencies as they are.
"""

from __future__ import annotations

import numpy as np


def disk(radius: float) -> np.ndarray:
    """(2r+1, 2r+1) bool structuring element: offsets within `radius` pixels of the centre."""
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= radius * radius + 1e-9


def dilate(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary dilation of (H, W) bool `mask` by a centred odd-sized bool `footprint`.

    Pixels outside the frame count as False, so nothing grows in from the border.
    """
    h, w = mask.shape
    ry, rx = footprint.shape[0] // 2, footprint.shape[1] // 2
    padded = np.pad(mask, ((ry, ry), (rx, rx)))
    out = np.zeros_like(mask, dtype=bool)
    for dy, dx in zip(*np.nonzero(footprint), strict=True):
        out |= padded[dy : dy + h, dx : dx + w]
    return out


def erode(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary erosion; pixels outside the frame count as True (the frame edge does not erode)."""
    return ~dilate(~mask, footprint[::-1, ::-1])


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of an (H, W) bool mask.

    Returns:
        (H, W) int32 labels (0 = not in the mask, 1..n = component) and n.
    """
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    n = 0
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if labels[y0, x0]:
            continue
        n += 1
        labels[y0, x0] = n
        stack = [(int(y0), int(x0))]
        while stack:
            y, x = stack.pop()
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = n
                    stack.append((ny, nx))
    return labels, n


def remove_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Drop 4-connected components of fewer than `min_pixels` pixels."""
    labels, n = components(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def fill_small_holes(mask: np.ndarray, max_pixels: int) -> np.ndarray:
    """Fill holes (components of ~mask that do not touch the frame) of at most `max_pixels`.

    A ring's real hole is far larger than the few pixels this is meant for (noise specks).
    """
    labels, n = components(~mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = sizes <= max_pixels
    fill[0] = False
    fill[border] = False
    return mask | fill[labels]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of `mask` (empty mask -> empty mask)."""
    labels, n = components(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))
