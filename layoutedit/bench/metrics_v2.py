"""World v2's metrics as pure functions on numpy arrays (see docs/benchmark.md).

World v2 scenes hide parts of objects, cast shadows, light the scene unevenly and lay
structured textures under the objects; these measures look where a cut-and-paste edit is
wrong there. Conventions as in `metrics.py`: masks are bool arrays, (H, W) for one object or
(K, H, W) for K objects in object order; images are (H, W, 3) uint8 RGB; shadow maps are
(K, H, W) float darkening per object (0 none .. the light's strength); PSNRs in dB through
`metrics.psnr` (identical pixels give `PSNR_CAP_DB`, an empty mask NaN).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layoutedit.bench.metrics import psnr
from layoutedit.scenes.layout_ops import Placement, warp_mask
from layoutedit.scenes.morphology import box, dilate, erode

SHADOW_SHARE = 0.1
"""A pixel is in an object's shadow where its darkening exceeds this share of the light's
strength (the shadow's core darkens by the full strength)."""
UNSHADOWED_SHARE = 0.02
"""The background PSNR of v2 keeps pixels whose darkening stays below this share of the
strength in source and target: a soft shadow's faint tail differs between them too."""
SEAM_RADIUS = 1
"""Half-width of the seam band, px: one pixel inside and one outside the edge."""
TEXTURE_CELL = 8
"""Side of the square cells, px, whose gradient histograms are compared (two tiles of the
finest structured background)."""
ORIENTATION_BINS = 4
"""Bins of gradient orientation over 0..180 degrees (an edge and its opposite agree)."""
MAGNITUDE_EDGES = (3.0, 6.0, 12.0, 25.0, 50.0)
"""Gradient magnitude edges, grey levels per px (central differences of the luma): below
the first a pixel is flat (its orientation is noise; the illumination ramp stays below it);
then doubling bands, so that a blur, which lowers and widens an edge's gradient, changes
bins. Chosen on the structured and grass backgrounds: the same texture 2-3 px off scored at
most 0.38, any blur of 0.8-2.5 px at least 0.40, a smooth fill at least 0.43."""
TEXTURE_BINS = 1 + len(MAGNITUDE_EDGES) * ORIENTATION_BINS
LUMA = (0.299, 0.587, 0.114)
"""Luma weights of R, G and B for the texture codes (the recipe's soft copy reads them too)."""


def image_psnr(output: np.ndarray, truth: np.ndarray) -> float:
    """PSNR of the whole `output` against the target image `truth` (as the ObjMove benchmarks
    score a move)."""
    return psnr(output, truth)


def hidden_moved(
    amodal: np.ndarray, visible: np.ndarray, placements: Sequence[Placement]
) -> np.ndarray:
    """(K, H, W) bool: each object's pixels that the source hides, carried to the target.

    Args:
        amodal: (K, H, W) whole-object source masks, hidden parts included.
        visible: (K, H, W) visible source masks.
        placements: K moves from source to target (centres in px and scale); nearest
            sampling, exact for the whole-pixel moves of the bench's cases.
    """
    hidden = amodal & ~visible
    return np.stack([warp_mask(h, p) for h, p in zip(hidden, placements, strict=True)])


def revealed_mask(hidden_at_target: np.ndarray, target_visible: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of an object hidden in the source and visible in the target.

    Args:
        hidden_at_target: (K, H, W) each object's source-hidden pixels at its target place
            (`hidden_moved`).
        target_visible: (K, H, W) visible target masks.
    """
    return np.asarray((hidden_at_target & target_visible).any(axis=0), dtype=bool)


def revealed_psnr(output: np.ndarray, truth: np.ndarray, revealed: np.ndarray) -> float:
    """PSNR against the truth over the `revealed` pixels (`revealed_mask`): what a paste
    cannot know, since the source never showed them. NaN when nothing is revealed."""
    return psnr(output, truth, revealed)


def shadow_region(
    source_shadows: np.ndarray,
    target_shadows: np.ndarray,
    strength: float,
    source_objects: np.ndarray,
    target_objects: np.ndarray,
    share: float = SHADOW_SHARE,
) -> np.ndarray:
    """(H, W) bool: where any object's shadow shows in the source or in the target.

    The old shadows where the source shows them (not under a source object) and the new
    ones, both without the target's object pixels: a ghost of an old shadow left behind
    and a missing new shadow both fall inside. The old shadow's part under its own object
    is left out: the source shows the object there, and those pixels are `vacated_psnr`'s.

    Args:
        source_shadows, target_shadows: (K, H, W) float darkening per object.
        strength: the light's darkening at a shadow's core (`Light.strength`).
        source_objects, target_objects: (H, W) bool, any object's visible pixels.
        share: a shadow's footprint is where its darkening exceeds `share * strength`.
    """
    level = share * strength
    old = (source_shadows > level).any(axis=0) & ~source_objects
    new = (target_shadows > level).any(axis=0)
    return np.asarray((old | new) & ~target_objects, dtype=bool)


def shadow_psnr(output: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """PSNR against the truth inside the shadows' `region` (`shadow_region`)."""
    return psnr(output, truth, region)


def unshadowed_background(
    source_labels: np.ndarray,
    target_labels: np.ndarray,
    background_index: int,
    source_shadows: np.ndarray,
    target_shadows: np.ndarray,
    strength: float,
    share: float = UNSHADOWED_SHARE,
) -> np.ndarray:
    """(H, W) bool: background in both label grids and in no shadow, source or target.

    What an edit should leave as it was: v2's background PSNR is taken here (a moved
    shadow changes the background under it, and the truth knows how)."""
    level = share * strength
    shadowed = (source_shadows > level).any(axis=0) | (target_shadows > level).any(axis=0)
    keep = (source_labels == background_index) & (target_labels == background_index)
    return np.asarray(keep & ~shadowed, dtype=bool)


def gradient_codes(image: np.ndarray) -> np.ndarray:
    """(H, W) int64 texture code of each pixel: 0 flat, else a (magnitude, orientation) bin.

    Gradients are central differences of the luma (0-255); magnitude bins by
    `MAGNITUDE_EDGES`, orientation modulo 180 degrees in `ORIENTATION_BINS` bins. Codes lie in
    0 .. `TEXTURE_BINS` - 1."""
    luma = image.astype(np.float64) @ np.array(LUMA)
    gy, gx = np.gradient(luma)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    orient = np.minimum((angle / np.pi * ORIENTATION_BINS).astype(np.int64), ORIENTATION_BINS - 1)
    level = np.digitize(magnitude, MAGNITUDE_EDGES[1:])  # 0 .. len(edges) - 1
    codes = 1 + level * ORIENTATION_BINS + orient
    return np.where(magnitude < MAGNITUDE_EDGES[0], 0, codes)


def texture_distance(
    output: np.ndarray, truth: np.ndarray, mask: np.ndarray, cell: int = TEXTURE_CELL
) -> float:
    """Distance of local gradient histograms of `output` and `truth` over `mask`, 0..1.

    The frame is cut into `cell` x `cell` squares; in each, the `mask` pixels' texture codes
    (`gradient_codes`: orientation and magnitude) of the two images form two histograms,
    whose total-variation distance (half the L1 of the shares) is weighted by the square's
    mask pixels. A smooth fill or a blur moves every pixel into the flat and weak bins, so
    it cannot score like the truth's texture; the same texture a few pixels off keeps its
    histograms. 0: the same statistics; lower is better. NaN for an empty mask.
    """
    n = int(mask.sum())
    if n == 0:
        return float("nan")
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    cells_x = -(-w // cell)
    square = (ys // cell) * cells_x + xs // cell
    counts = []
    for image in (output, truth):
        joint = square * TEXTURE_BINS + gradient_codes(image)[ys, xs]
        counts.append(np.bincount(joint, minlength=(-(-h // cell)) * cells_x * TEXTURE_BINS))
    # Per square, n_s * TV(p_s, q_s) = 0.5 * sum |count_o - count_t|: summed and over n.
    return float(0.5 * np.abs(counts[0] - counts[1]).sum() / n)


def seam_band(masks: np.ndarray, radius: int = SEAM_RADIUS) -> np.ndarray:
    """(H, W) bool: a band `radius` px either side of the edge of each of `masks`
    ((K, H, W) bool; an object's pixels next to the edge and the pixels just outside)."""
    band = np.zeros(masks.shape[1:], dtype=bool)
    for m in masks:
        if m.any():
            band |= dilate(m, box(radius)) & ~erode(m, box(radius))
    return band


def seam_error(output: np.ndarray, truth: np.ndarray, band: np.ndarray) -> float:
    """Mean absolute error (grey levels, 0-255, over pixels and channels) of `output`
    against `truth` in the seam `band` (`seam_band`): a halo, a hard cut or a colour step
    where a pasted object meets its new surroundings. Lower is better; NaN for no band."""
    if not band.any():
        return float("nan")
    diff = output.astype(np.float64)[band] - truth.astype(np.float64)[band]
    return float(np.abs(diff).mean())
