"""Re-light a moved object from the light around its new place.

Under uneven light an object moved from the dark side to the bright side must come out
brighter; pasted or colour-matched to its source pixels it keeps the light of where it was.
The background around a place says how much light falls there: the gain of an object is
the mean brightness of the source's background in a ring around its new footprint over
the same around its old place. The ring starts a few pixels out, past the object's own
shadow and anti-aliased rim.
"""

from __future__ import annotations

import numpy as np

from layoutedit.editing.paste import grow

GAIN_LIMITS = (0.6, 1.6)
_MIN_RING = 8  # pixels: fewer say nothing about the light there


def ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    """(H, W) bool pixels between `inner` and `outer` px from `mask` (square distance)."""
    return grow(mask, outer) & ~grow(mask, inner)


def light_gains(
    image: np.ndarray,
    background: np.ndarray,
    source_masks: np.ndarray,
    footprints: np.ndarray,
    inner: int,
    outer: int,
) -> np.ndarray:
    """(K,) float64 brightness gain of each object at its new place (1 = unchanged).

    Args:
        image: (H, W, 3) uint8 source.
        background: (H, W) bool the source's background pixels.
        source_masks: (K, H, W) bool each object's source pixels.
        footprints: (K, H, W) bool where each object was pasted.
        inner, outer: the ring's distances from the object, px.
    """
    lum = image.astype(np.float64).mean(axis=-1)
    gains = np.ones(len(source_masks))
    for k, (old, new) in enumerate(zip(source_masks, footprints, strict=True)):
        if not new.any() or np.array_equal(old, new):
            continue
        before = ring(old, inner, outer) & background
        after = ring(new, inner, outer) & background
        if before.sum() < _MIN_RING or after.sum() < _MIN_RING:
            continue
        gain = lum[after].mean() / max(lum[before].mean(), 1.0)
        gains[k] = float(np.clip(gain, *GAIN_LIMITS))
    return gains


def apply_gains(image: np.ndarray, footprints: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 with each object's footprint pixels multiplied by its gain."""
    out = image.astype(np.float64)
    for here, gain in zip(footprints, gains, strict=True):
        out[here] *= gain
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
