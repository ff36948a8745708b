"""Find the shadows objects cast in the source, take them away, and cast them again.

A person paints the object, not its shadow, so cut-and-paste leaves the shadow behind (a
ghost) and gives the object none at its new place. Around each object, the source's
background is compared with an estimate of the same background without the object and its
shadow (`paste.fill_holes` over the band): where it is darker, by more than texture
explains, the object casts a shadow. Dividing by that darkening removes the ghost and keeps
the texture; the darkening, moved with its object, is cast at the new place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layoutedit.editing.compositing import gaussian_blur
from layoutedit.editing.paste import fill_holes, grow, warp_objects
from layoutedit.editing.texture_fill import repeat_fill
from layoutedit.scenes.layout_ops import Placement

MIN_DARKENING = 0.08  # weaker darkening is texture, not shadow
MAX_DARKENING = 0.8


def observed_darkening(
    image: np.ndarray, objects: np.ndarray, band_px: int, repeat: bool
) -> np.ndarray:
    """(H, W) float64 1 - brightness over the background estimated without the objects and
    their shadows (inside `band_px` of an object; 0 elsewhere). Negative: brighter.

    Args:
        image: (H, W, 3) uint8 source.
        objects: (H, W) bool every object's pixels.
        band_px: how far from an object a shadow may reach, px.
        repeat: estimate the background under the band by its repeat (`shadow_darkening`).
    """
    band = grow(objects, band_px)
    estimate = repeat_fill(image, band, ~band) if repeat else fill_holes(image, band)
    lum = image.astype(np.float64).mean(axis=-1)
    base = np.maximum(estimate.mean(axis=-1), 1.0)
    return np.where(band, np.clip(1.0 - lum / base, -1.0, 1.0), 0.0)


def shadow_darkening(
    image: np.ndarray,
    source_masks: np.ndarray,
    band_px: int,
    rim_px: int,
    repeat: bool = False,
) -> np.ndarray:
    """(K, H, W) float64 each object's estimated shadow darkening (0 none .. MAX).

    Args:
        image: (H, W, 3) uint8 source.
        source_masks: (K, H, W) bool each object's source pixels.
        band_px: how far from an object its shadow may reach, px.
        rim_px: the anti-aliased rim around an object that is neither object nor shadow.
        repeat: estimate the background under the band by its repeat where it has one
            (`texture_fill.repeat_fill`): a smooth estimate reads a repeating pattern's
            dark parts (mortar, a dark stripe) as shadow.
    """
    objects = np.asarray(source_masks.any(axis=0), dtype=bool)
    near = grow(objects, band_px) & ~grow(objects, rim_px)
    observed = observed_darkening(image, objects, band_px, repeat)
    dark = np.clip(observed, 0.0, MAX_DARKENING) * near
    dark = gaussian_blur(dark, 0.7)
    dark[dark < MIN_DARKENING] = 0.0
    # Each darkened pixel belongs to the nearest object (by growing them one pixel a time).
    out = np.zeros(source_masks.shape, dtype=np.float64)
    owner = np.full(objects.shape, -1)
    for radius in range(1, band_px + 1):
        for k, mask in enumerate(source_masks):
            reach = grow(mask, radius) & (owner < 0) & (dark > 0)
            owner[reach] = k
    for k in range(len(source_masks)):
        out[k] = np.where(owner == k, dark, 0.0)
    return out


def remove_shadows(image: np.ndarray, darkening: np.ndarray, which: Sequence[int]) -> np.ndarray:
    """(H, W, 3) uint8 with the shadows of objects `which` lifted (divided out)."""
    dark = np.zeros(image.shape[:2])
    if which:
        dark = np.clip(darkening[list(which)].sum(axis=0), 0.0, MAX_DARKENING)
    out = image.astype(np.float64) / (1.0 - dark)[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def cast_shadows(
    image: np.ndarray,
    darkening: np.ndarray,
    placements: Sequence[Placement],
    footprints: np.ndarray,
    which: Sequence[int],
    order: Sequence[int] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 with each object of `which`'s shadow moved with it and cast on
    everything but the objects drawn over it (its own footprint and those in front)."""
    if not which:
        return image
    k = len(placements)
    carriers = np.zeros((k, *image.shape[:2]), dtype=bool)
    values = np.zeros((*image.shape[:2], 1))
    out = image.astype(np.float64)
    for i in which:
        carriers[:] = False
        carriers[i] = darkening[i] > 0
        values[..., 0] = darkening[i]
        moved, _ = warp_objects(values, carriers, placements, None)
        dark = np.clip(moved[..., 0], 0.0, MAX_DARKENING)
        seq = list(range(k)) if order is None else list(order)
        front = seq[seq.index(i) :] if i in seq else [i]
        lit = footprints[front].any(axis=0)
        out *= np.where(lit, 1.0, 1.0 - dark)[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
