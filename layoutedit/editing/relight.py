"""Re-light a moved object from the light around its new place.

Under uneven light an object moved from the dark side to the bright side must come out
brighter; pasted or colour-matched to its source pixels it keeps the light of where it was.
The source's background says how much light falls where: its brightness is fitted by a
smooth field (a plane in the image coordinates, the first-order shading of one distant
light), and an object's gain is the field's mean over its new footprint over its mean over
its old pixels. The fit leaves out the pixels next to any object (anti-aliased rims, cast
shadows) and, in a few rounds, the darkest of the rest against the fit (shadows, mortar,
stripes), so neither texture nor shade pulls the field. A ring of background around each
place (an earlier estimate) read the local texture as light: on world v2's development
cases (seeds 2000 and 2001, 33 moved objects) its gains missed the true light ratio by 0.065
and 0.100 on average, the plane fit by 0.032 and 0.022.
"""

from __future__ import annotations

import numpy as np

from layoutedit.editing.paste import grow

GAIN_LIMITS = (0.6, 1.6)
_MIN_FIT = 32  # background pixels: fewer say nothing about the light
_FIT_ROUNDS = 3
_DARK_SHARE = 0.15  # of the fitted pixels, dropped each round as shade rather than light


def light_field(image: np.ndarray, background: np.ndarray, clearance: int) -> np.ndarray | None:
    """(H, W) float64 brightness field (0-255) fitted to the source's background, or None
    when too little background is left to fit.

    Args:
        image: (H, W, 3) uint8 source.
        background: (H, W) bool the source's background pixels.
        clearance: px around the objects (everything not background) left out of the fit.
    """
    lum = image.astype(np.float64).mean(axis=-1)
    h, w = lum.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    basis = np.stack([np.ones_like(xx), xx / w - 0.5, yy / h - 0.5])  # (3, H, W)
    use = background & ~grow(~background, clearance)
    if use.sum() < _MIN_FIT:
        return None
    a, b = basis[:, use].T, lum[use]
    keep = np.ones(len(b), dtype=bool)
    for _ in range(_FIT_ROUNDS):
        coef, *_ = np.linalg.lstsq(a[keep], b[keep], rcond=None)
        ratio = b / np.maximum(a @ coef, 1.0)
        keep = ratio > np.quantile(ratio, _DARK_SHARE)
    return np.maximum(np.tensordot(coef, basis, axes=1), 1.0)


def light_gains(
    image: np.ndarray,
    background: np.ndarray,
    source_masks: np.ndarray,
    footprints: np.ndarray,
    clearance: int,
) -> np.ndarray:
    """(K,) float64 brightness gain of each object at its new place (1 = unchanged, and for
    an object that did not move or when the background is too small to fit a light field).

    Args:
        image: (H, W, 3) uint8 source.
        background: (H, W) bool the source's background pixels.
        source_masks: (K, H, W) bool each object's source pixels.
        footprints: (K, H, W) bool where each object was pasted.
        clearance: px around the objects left out of the light fit (`light_field`).
    """
    gains = np.ones(len(source_masks))
    moved = [
        k
        for k, (old, new) in enumerate(zip(source_masks, footprints, strict=True))
        if new.any() and old.any() and not np.array_equal(old, new)
    ]
    field = light_field(image, background, clearance) if moved else None
    if field is None:
        return gains
    for k in moved:
        gain = field[footprints[k]].mean() / field[source_masks[k]].mean()
        gains[k] = float(np.clip(gain, *GAIN_LIMITS))
    return gains


def apply_gains(image: np.ndarray, footprints: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 with each object's footprint pixels multiplied by its gain."""
    out = image.astype(np.float64)
    for here, gain in zip(footprints, gains, strict=True):
        out[here] *= gain
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
