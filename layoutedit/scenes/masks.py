"""Pure measures and moves of (H, W) bool masks, shared by the layout maths, the layout
operations, the region fit, the ranking and the benchmark.

Coordinates are pixels with a pixel's centre at +0.5, so a one-pixel object at column 0
sits at x = 0.5.
"""

from __future__ import annotations

import numpy as np


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) centroid of a mask in px; (nan, nan) for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (float("nan"), float("nan"))
    return (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel bounds of a mask's pixels, x1 and y1 exclusive; None if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two same-shape bool masks; two empty masks score 1."""
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(a, b).sum()) / union


def axis_scales(scale: float | tuple[float, float]) -> tuple[float, float]:
    """(x, y) factors of a scale given as one factor (any real number, NumPy's included) or
    as the pair."""
    if np.ndim(scale) == 0:
        return float(scale), float(scale)  # type: ignore[arg-type]
    sx, sy = scale  # type: ignore[misc]
    return float(sx), float(sy)


def move_mask(
    mask: np.ndarray,
    scale: float | tuple[float, float],
    centre: tuple[float, float],
    target: tuple[float, float],
) -> np.ndarray:
    """(H, W) bool `mask` scaled by `scale` about `centre` (px), that point put at `target`.

    `scale` is one factor, or (x, y) factors that stretch the mask (a box resized without
    keeping its proportions). Nearest sampling: each output pixel centre `p` reads the input
    at `centre + (p - target) / scale`; what falls outside the image is lost.
    """
    height, width = mask.shape
    sx, sy = axis_scales(scale)
    cols = np.floor((np.arange(width) + 0.5 - target[0]) / sx + centre[0]).astype(np.int64)
    rows = np.floor((np.arange(height) + 0.5 - target[1]) / sy + centre[1]).astype(np.int64)
    col_ok = (cols >= 0) & (cols < width)
    row_ok = (rows >= 0) & (rows < height)
    sub = mask[np.clip(rows, 0, height - 1)[:, None], np.clip(cols, 0, width - 1)[None, :]]
    return np.asarray(sub & row_ok[:, None] & col_ok[None, :], dtype=bool)


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool the pixels whose centres lie in the convex hull of `mask`'s pixel
    corners (empty for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros(mask.shape, dtype=bool)
    corners = {
        (x + dx, y + dy)
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True)
        for dx in (0, 1)
        for dy in (0, 1)
    }
    pts = sorted(corners)

    def cross(o: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> int:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[int, int]] = []
    upper: list[tuple[int, int]] = []
    for pt in pts:  # Andrew's monotone chain
        while len(lower) >= 2 and cross(lower[-2], lower[-1], pt) <= 0:
            lower.pop()
        lower.append(pt)
    for pt in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], pt) <= 0:
            upper.pop()
        upper.append(pt)
    hull = lower[:-1] + upper[:-1]  # counter-clockwise in (x, y)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]] + 0.5
    inside = np.ones(mask.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1], strict=True):
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    return inside
