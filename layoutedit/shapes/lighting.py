"""Light in world v2: one direction per scene, a smooth illumination field, cast shadows.

The light comes from `Light.angle` (degrees, image axes: 0 = from the right, 90 = from
below, y grows downwards). The illumination field is a linear ramp along that direction,
brighter towards the light, that multiplies every pixel (background, objects and their
patterns), so an object moved towards the light comes out brighter. Each object casts a
soft shadow: its own coverage shifted away from the light by `Light.offset` px and blurred,
darkening what was drawn before it (the background and objects behind it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Light:
    """One scene's light.

    angle: where the light comes from, degrees (0 = right, 90 = below; image y downwards).
    gain: the illumination field's slope: 1 +- gain from the far side to the near side.
    offset: shadow displacement away from the light, px.
    softness: Gaussian blur of the shadow, px (standard deviation).
    strength: darkening at the shadow's core (0 none, 1 black).
    """

    angle: float
    gain: float
    offset: float
    softness: float
    strength: float

    @property
    def direction(self) -> tuple[float, float]:
        """Unit vector (dx, dy) pointing towards the light."""
        a = math.radians(self.angle)
        return math.cos(a), math.sin(a)

    @property
    def shadow_shift(self) -> tuple[float, float]:
        """(dx, dy) px from an object to its shadow."""
        dx, dy = self.direction
        return -dx * self.offset, -dy * self.offset


def sample_light(rng: np.random.Generator) -> Light:
    """A random light: any direction, a visible ramp and a soft, clear shadow."""
    return Light(
        angle=float(rng.uniform(0.0, 360.0)),
        gain=float(rng.uniform(0.15, 0.25)),
        offset=float(rng.uniform(2.5, 4.0)),
        softness=float(rng.uniform(0.8, 1.3)),
        strength=float(rng.uniform(0.4, 0.55)),
    )


def illumination(light: Light, size: int = 64) -> np.ndarray:
    """(S, S) float32 multiplicative illumination, 1 - gain .. 1 + gain across the frame."""
    c = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) / (size / 2)
    x, y = np.meshgrid(c, c)
    dx, dy = light.direction
    ramp = np.clip(x * dx + y * dy, -1.0, 1.0)
    return (1.0 + light.gain * ramp).astype(np.float32)


def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3 * sigma))
    i = np.arange(size, dtype=np.float32)
    d = i[:, None] - i[None, :]
    k = np.exp(-0.5 * (d / sigma) ** 2) * (np.abs(d) <= radius)
    k /= np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).sum()
    return k.astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """(S, S) float image blurred by a separable Gaussian of `sigma` px (zero outside)."""
    if sigma <= 0:
        return image.astype(np.float32)
    k = _blur_matrix(image.shape[0], sigma)
    return (k @ image.astype(np.float32) @ k.T).astype(np.float32)


def shadow_alpha(shifted_coverage: np.ndarray, light: Light) -> np.ndarray:
    """(S, S) float32 darkening 0..strength from an object's coverage moved by the shadow
    shift (`Light.shadow_shift`)."""
    return (light.strength * gaussian_blur(shifted_coverage, light.softness)).astype(np.float32)
