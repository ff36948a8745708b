"""Structured backgrounds of world v2: tiles, bricks, stripes and planks.

A smooth fill cannot continue these where an object left: their edges are periodic and
sharp. Periods are at least 8 px and lines at least 1.5 px wide, the finest structure the
64 px model's VAE (4x4 px per latent cell) keeps. Each texture is a pure function of its
name and seed, returned as an albedo (before the scene's illumination) in 0..255.
"""

from __future__ import annotations

import math

import numpy as np

STRUCTURED: tuple[str, ...] = ("tiles", "bricks", "stripes", "planks")
STRUCTURED_MEAN: dict[str, tuple[int, int, int]] = {
    "tiles": (196, 204, 208),
    "bricks": (168, 86, 64),
    "stripes": (222, 206, 160),
    "planks": (164, 118, 74),
}
_SUPER = 4


def _fine_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size * _SUPER) + 0.5) / _SUPER
    return np.meshgrid(c, c)


def _pool(fine: np.ndarray, size: int) -> np.ndarray:
    """(S*4, S*4, C) supersampled values -> (S, S, C) pixel means (anti-aliased edges)."""
    return fine.reshape(size, _SUPER, size, _SUPER, -1).mean(axis=(1, 3))


def _cells(u: np.ndarray, v: np.ndarray, cw: float, ch: float, row_shift: float) -> tuple:
    row = np.floor(v / ch)
    col = np.floor((u + row_shift * (row % 2)) / cw)
    fu = (u + row_shift * (row % 2)) - col * cw
    fv = v - row * ch
    return row, col, fu, fv


def render_structured(name: str, seed: int, size: int = 64) -> np.ndarray:
    """(S, S, 3) float32 albedo of a structured background in 0..255.

    Args:
        name: one of `STRUCTURED`.
        seed: fixes the phase, orientation and per-cell tones.
    """
    rng = np.random.default_rng(seed)
    x, y = _fine_grid(size)
    mean = np.array(STRUCTURED_MEAN[name], dtype=np.float32)
    tones = rng.normal(0.0, 1.0, size=(64, 64)).astype(np.float32)

    def tone(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return tones[row.astype(np.int64) % 64, col.astype(np.int64) % 64]

    if name == "tiles":
        period = float(rng.choice([10.0, 12.0]))
        u, v = x + rng.uniform(0, period), y + rng.uniform(0, period)
        row, col, fu, fv = _cells(u, v, period, period, 0.0)
        grout = (fu < 1.6) | (fv < 1.6)
        face = mean + 7.0 * tone(row, col)[..., None]
        fine = np.where(grout[..., None], mean * 0.72, face)
    elif name == "bricks":
        bw, bh = 14.0, 7.0
        u, v = x + rng.uniform(0, bw), y + rng.uniform(0, bh)
        row, col, fu, fv = _cells(u, v, bw, bh, bw / 2)
        mortar = (fu < 1.6) | (fv < 1.6)
        face = mean + 14.0 * tone(row, col)[..., None]
        fine = np.where(mortar[..., None], np.array([205, 196, 184], np.float32), face)
    elif name == "stripes":
        angle = math.radians(float(rng.choice([0.0, 45.0, 90.0, 135.0])))
        period = float(rng.choice([8.0, 10.0]))
        s = x * math.cos(angle) + y * math.sin(angle) + rng.uniform(0, period)
        dark = (s % period) < period / 2
        second = mean * np.array([0.78, 0.72, 0.62], np.float32)
        fine = np.where(dark[..., None], second, mean)
    elif name == "planks":
        width = float(rng.choice([9.0, 11.0]))
        vertical = bool(rng.random() < 0.5)
        across, along = (x, y) if vertical else (y, x)
        across = across + rng.uniform(0, width)
        plank = np.floor(across / width)
        gap = (across - plank * width) < 1.5
        grain = np.sin(along * 0.9 + 5.0 * tone(plank, plank) + across * 0.6)
        face = mean + 12.0 * tone(plank, plank * 0)[..., None] + 6.0 * grain[..., None]
        fine = np.where(gap[..., None], mean * 0.55, face)
    else:
        raise ValueError(f"unknown structured background {name!r}")
    return _pool(np.clip(fine, 0, 255).astype(np.float32), size)
