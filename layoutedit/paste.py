"""The `paste` reference edit: cut the source objects out, paste them at their targets.

No model: the holes the objects leave are filled with the background's mean colour, then
each object's pixels are resampled (bilinear, weighted by its mask so no background leaks
in) at its target centre and scale, in drawing order. It scores what exact placement with
the source's own pixels scores; its faults are the honest ones of cut-and-paste (flat
holes, a faint anti-aliased rim left behind, parts hidden in the source stay missing).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layoutedit.bench.cases import Placement


def _bilinear(array: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample (H, W[, C]) `array` at float index coordinates; zero outside the frame."""
    h, w = array.shape[:2]
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = ys - y0, xs - x0
    out = np.zeros(ys.shape + array.shape[2:], dtype=np.float64)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            vals = np.zeros(ys.shape + array.shape[2:], dtype=np.float64)
            vals[ok] = array[yy[ok], xx[ok]]
            weight = wy * wx
            out += vals * (weight[..., None] if array.ndim == 3 else weight)
    return out


def paste_edit(
    image: np.ndarray,
    masks: np.ndarray,
    placements: Sequence[Placement],
    fill_colour: np.ndarray | Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Cut-and-paste rendering of a target layout.

    Args:
        image: (H, W, 3) uint8 source.
        masks: (K, H, W) bool visible source pixels of each object (drawing order).
        placements: K placements (source centre, target centre in px, scale).
        fill_colour: RGB that fills the holes (the background's mean colour).

    Returns:
        (H, W, 3) uint8 edited image, and (K, H, W) bool where each object was pasted
        (visible pixels: a later object covers an earlier one).
    """
    out = image.astype(np.float64).copy()
    out[masks.any(axis=0)] = np.asarray(fill_colour, dtype=np.float64)
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w] + 0.5  # pixel centres
    src = image.astype(np.float64)
    pasted = np.zeros(masks.shape, dtype=bool)
    for k, (mask, p) in enumerate(zip(masks, placements, strict=True)):
        # Target pixel centre -> source point, then to index coordinates (centre at +0.5).
        xs = p.src_cx + (xx - p.dst_cx) / p.scale - 0.5
        ys = p.src_cy + (yy - p.dst_cy) / p.scale - 0.5
        m = mask.astype(np.float64)
        alpha = _bilinear(m, ys, xs)
        colour = _bilinear(src * m[..., None], ys, xs)
        inside = alpha >= 0.5
        out[inside] = colour[inside] / alpha[inside][:, None]
        pasted[:k] &= ~inside
        pasted[k] = inside
    return np.clip(out, 0, 255).round().astype(np.uint8), pasted


def background_mean(image: np.ndarray, labels: np.ndarray, background_index: int) -> np.ndarray:
    """(3,) float64 mean RGB of the background pixels of a source."""
    return image[labels == background_index].astype(np.float64).mean(axis=0)
