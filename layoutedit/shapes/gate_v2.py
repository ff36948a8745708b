"""World v2's additions to the quality gate: do generated scenes cast shadows on the side
away from their light, and do their backgrounds keep their texture?

A caption does not name the light, so each generated image is judged by its own light: a
plane fitted to its background's brightness points towards the light (the illumination is a
ramp), and an object's shadow must lie on the other side. The texture check compares the
gradient energy of generated backgrounds with that of true scenes of the same captions
(structured backgrounds only): a model that paints them flat scores near 0, a true one 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layoutedit.editing.paste import grow

MIN_SLOPE = 0.15  # brightness units per px below which an image shows no clear light
PROBE_PX = 3.5  # how far beside an object its shadow (or its lit side) is probed
SHADOW_RATIO = 0.88  # darker than this against the lit side: a shadow


def _shift(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return np.roll(np.roll(mask, round(dy), axis=0), round(dx), axis=1)


def _plane(image: np.ndarray, background: np.ndarray) -> np.ndarray | None:
    """(3,) coefficients (a, bx, by) of lum = a + bx x + by y fitted to the background."""
    ys, xs = np.nonzero(background)
    if len(ys) < 50:
        return None
    lum = image[ys, xs].astype(np.float64).mean(axis=-1)
    a = np.stack([np.ones_like(xs, dtype=np.float64), xs, ys], axis=1)
    coef, *_ = np.linalg.lstsq(a, lum, rcond=None)
    return np.asarray(coef)


def light_direction(image: np.ndarray, background: np.ndarray) -> tuple[float, float] | None:
    """Unit (dx, dy) towards the light from a plane fitted to the background's brightness,
    or None when the slope is too small to tell (`MIN_SLOPE` per px)."""
    coef = _plane(image, background)
    if coef is None:
        return None
    norm = float(np.hypot(coef[1], coef[2]))
    if norm < MIN_SLOPE:
        return None
    return float(coef[1] / norm), float(coef[2] / norm)


def shadow_sides(image: np.ndarray, components: Sequence[np.ndarray]) -> list[bool]:
    """Per object component (H, W) bool: whether the background just beside it, away from
    the image's light, is darker than on the light's side once the light's ramp is divided
    out. Empty when the light is unclear."""
    objects = np.any(np.stack(components), axis=0) if components else np.zeros(image.shape[:2])
    background = ~grow(objects.astype(bool), 1)
    direction = light_direction(image, background)
    coef = _plane(image, background)
    if direction is None or coef is None:
        return []
    dx, dy = direction
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    ramp = np.maximum(coef[0] + coef[1] * xx + coef[2] * yy, 1.0)
    lum = image.astype(np.float64).mean(axis=-1) / ramp
    out = []
    for comp in components:
        if comp.sum() < 10:
            continue
        away = _shift(comp, -dx * PROBE_PX, -dy * PROBE_PX) & background
        towards = _shift(comp, dx * PROBE_PX, dy * PROBE_PX) & background
        if away.sum() < 4 or towards.sum() < 4:
            continue
        out.append(bool(lum[away].mean() < SHADOW_RATIO * lum[towards].mean()))
    return out


def gradient_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute brightness gradient (0-255 per px) over `mask`'s pixels."""
    lum = image.astype(np.float64).mean(axis=-1)
    gx = np.abs(np.diff(lum, axis=1, append=lum[:, -1:]))
    gy = np.abs(np.diff(lum, axis=0, append=lum[-1:, :]))
    return float((gx + gy)[mask].mean()) if mask.any() else 0.0
