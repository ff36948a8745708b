"""Cut-and-paste: the source objects cut out and pasted at their targets, in pixels.

Two users: the benchmark's `paste` reference row (holes filled with the background's mean
colour: what exact placement with the source's own pixels scores, with the honest faults of
cut-and-paste: flat holes, a faint anti-aliased rim left behind, hidden parts missing), and
the editor's `paste` start (`EditConfig.init`), where the pasted image, its holes filled
smoothly from the surrounding background (`fill_holes`), is noised part-way and denoised
with the concept, so the objects start where they go with their own look.

Each object's pixels are resampled (bilinear, weighted by its mask so no background leaks
in) at its target centre and scale, in drawing order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layoutedit.scenes.layout_ops import Placement
from layoutedit.scenes.masks import bounding_box
from layoutedit.scenes.morphology import dilate

__all__ = [
    "Placement",
    "background_mean",
    "fill_holes",
    "grow",
    "paste_edit",
    "rim_width",
    "warp_objects",
]


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


def warp_objects(
    values: np.ndarray,
    masks: np.ndarray,
    placements: Sequence[Placement],
    order: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each object's values moved and scaled to its target, back to front.

    Args:
        values: (H, W, C) float values to carry (the image's colours, or any per-pixel field).
        masks: (K, H, W) bool visible source pixels of each object (drawing order).
        placements: K placements (source centre, target centre in px, scale).
        order: object indices back to front (`layout_ops.paint_order`); None: drawing order.

    Returns:
        (H, W, C) float64 the carried values where an object landed (0 elsewhere), and
        (K, H, W) bool where each object landed (visible pixels: a later object covers an
        earlier one).
    """
    if len(placements) != len(masks):
        raise ValueError(f"{len(masks)} masks vs {len(placements)} placements")
    h, w = masks.shape[1:]
    carried = np.zeros((h, w, values.shape[2]), dtype=np.float64)
    landed = np.zeros(masks.shape, dtype=bool)
    for k in range(len(masks)) if order is None else order:
        mask, p = masks[k], placements[k]
        box = _target_box(mask, p)
        if box is None:
            continue
        yy, xx = np.mgrid[box] + 0.5  # pixel centres of the box only: a photo is large
        # Target pixel centre -> source point, then to index coordinates (centre at +0.5).
        xs = p.src_cx + (xx - p.dst_cx) / p.scale - 0.5
        ys = p.src_cy + (yy - p.dst_cy) / p.scale - 0.5
        m = mask.astype(np.float64)
        alpha = _bilinear(m, ys, xs)  # weighted by the mask, so no background leaks in
        value = _bilinear(values * m[..., None], ys, xs)
        inside = np.zeros((h, w), dtype=bool)
        inside[box] = alpha >= 0.5
        carried[inside] = (value / np.maximum(alpha, 1e-12)[..., None])[inside[box]]
        landed &= ~inside  # what landed before lies behind
        landed[k] = inside
    return carried, landed


def _target_box(mask: np.ndarray, p: Placement) -> tuple[slice, slice] | None:
    """The frame's pixels an object can land on: its source box moved and scaled, grown by
    2 px for the bilinear reach; None when it lands outside the frame or has no pixel."""
    bounds = bounding_box(mask)
    if bounds is None:
        return None
    x0, y0, x1, y1 = bounds
    h, w = mask.shape
    top = int(np.floor(p.dst_cy + (y0 - p.src_cy) * p.scale)) - 2
    bottom = int(np.ceil(p.dst_cy + (y1 - p.src_cy) * p.scale)) + 2
    left = int(np.floor(p.dst_cx + (x0 - p.src_cx) * p.scale)) - 2
    right = int(np.ceil(p.dst_cx + (x1 - p.src_cx) * p.scale)) + 2
    top, left, bottom, right = max(0, top), max(0, left), min(h, bottom), min(w, right)
    if top >= bottom or left >= right:
        return None
    return slice(top, bottom), slice(left, right)


def paste_edit(
    image: np.ndarray,
    masks: np.ndarray,
    placements: Sequence[Placement],
    fill_colour: np.ndarray | Sequence[float] | None,
    order: Sequence[int] | None = None,
    filled: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut-and-paste rendering of a target layout.

    Args:
        image: (H, W, 3) uint8 source.
        masks: (K, H, W) bool visible source pixels of each object (drawing order).
        placements: K placements (source centre, target centre in px, scale).
        fill_colour: RGB that fills the holes (the background's mean colour), or None to
            fill them, and the anti-aliased rim around them, smoothly from the pixels
            around them (`fill_holes`).
        order: object indices back to front (`layout_ops.paint_order`); None: drawing order.
        filled: (H, W, 3) the source with its objects and their rims already filled (e.g.
            `texture_fill.repeat_fill`); used instead of `fill_colour` when given.

    Returns:
        (H, W, 3) uint8 edited image, and (K, H, W) bool where each object was pasted
        (visible pixels: a later object covers an earlier one).
    """
    holes = np.asarray(masks.any(axis=0), dtype=bool)
    if filled is not None:
        out = np.asarray(filled, dtype=np.float64).copy()
    elif fill_colour is None:
        # The anti-aliased rim just outside each mask still carries the object's colour: fill
        # it too, or a faint outline of the object stays where it was.
        out = fill_holes(image, grow(holes, rim_width(holes.shape))).astype(np.float64)
    else:
        out = image.astype(np.float64).copy()
        out[holes] = np.asarray(fill_colour, dtype=np.float64)
    colours, pasted = warp_objects(image.astype(np.float64), masks, placements, order)
    anywhere = pasted.any(axis=0)
    out[anywhere] = colours[anywhere]
    return np.clip(out, 0, 255).round().astype(np.uint8), pasted


def background_mean(image: np.ndarray, labels: np.ndarray, background_index: int) -> np.ndarray:
    """(3,) float64 mean RGB of the background pixels of a source."""
    return image[labels == background_index].astype(np.float64).mean(axis=0)


def rim_width(shape: tuple[int, ...]) -> int:
    """Pixels of an object's anti-aliased rim: 1 at 64 px, growing with the image."""
    return max(1, round(max(shape[:2]) / 64))


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) bool `mask` grown by `radius` pixels (a square neighbourhood)."""
    return dilate(mask, np.ones((2 * radius + 1, 2 * radius + 1), dtype=bool))


_RELAX_STEPS = 8
"""Laplace relaxation sweeps per pyramid level."""


def fill_holes(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Fill the `holes` of an image from the pixels around them (a coarse-to-fine pyramid).

    Each level halves the image, averaging known pixels only; a hole pixel takes the value
    of the next coarser level (upsampled), so large holes get the mean of their
    surroundings and small ones their immediate neighbours: gradients and textures' mean
    tones carry over into the hole, with no seam of a flat colour.

    Args:
        image: (H, W, 3) uint8.
        holes: (H, W) bool, the pixels to fill.

    Returns:
        (H, W, 3) float64; pixels outside `holes` unchanged.
    """
    known = ~holes
    if not known.any():
        return np.full(image.shape, 127.5)
    values = image.astype(np.float64) * known[..., None]
    return _fill(values, known.astype(np.float64))


def _fill(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """values: (H, W, 3) premultiplied by weight (H, W) in [0, 1]; returns filled colours."""
    h, w = weight.shape
    filled = values / np.maximum(weight, 1e-12)[..., None]
    if (weight > 0).all() or min(h, w) == 1:
        if not (weight > 0).all():  # one row or column left: its mean fills it
            mean = values.sum(axis=(0, 1)) / max(weight.sum(), 1e-12)
            filled[weight == 0] = mean
        return filled
    ph, pw = h + h % 2, w + w % 2  # pad to even sides with zero weight
    v = np.zeros((ph, pw, 3))
    wt = np.zeros((ph, pw))
    v[:h, :w], wt[:h, :w] = values, weight
    coarse_v = v.reshape(ph // 2, 2, pw // 2, 2, 3).sum(axis=(1, 3))
    coarse_w = wt.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    coarse = _fill(coarse_v / 4.0, coarse_w / 4.0)  # (ph/2, pw/2, 3)
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]
    hole = weight == 0
    filled[hole] = up[hole]
    # Relax the hole towards its neighbours' mean (Laplace), which smooths the coarse
    # level's blocks into the surrounding gradient; known pixels stay fixed.
    for _ in range(_RELAX_STEPS):
        padded = np.pad(filled, ((1, 1), (1, 1), (0, 0)), mode="edge")
        mean = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
        filled[hole] = mean[hole]
    return filled
