"""Filling a hole in a repeating background by its repeat (`editing.texture_fill`)."""

from __future__ import annotations

import numpy as np

from layoutedit.editing.paste import fill_holes
from layoutedit.editing.texture_fill import (
    GRAIN_OUTLIER,
    fine_grain,
    floor_grain,
    floor_grain_rms,
    grain_level,
    lattice,
    repeat_fill,
)


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    err = float(np.mean((a.astype(np.float64) - b.astype(np.float64))[where] ** 2))
    return 10 * np.log10(255.0**2 / max(err, 1e-9))


def _bricks(h: int, w: int) -> np.ndarray:
    """(H, W) float in [0, 1]: rows of 8 px bricks 14 px long, each row offset by 7."""
    yy, xx = np.mgrid[:h, :w]
    row = yy // 8
    xs = (xx + 7 * (row % 2)) % 14
    mortar = (yy % 8 == 0) | (xs == 0)
    return np.where(mortar, 0.3, 0.8)


def _lit(pattern: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 the pattern in a warm colour under a left-to-right light ramp."""
    w = pattern.shape[1]
    light = np.linspace(0.8, 1.15, w)[None, :]
    rgb = pattern[..., None] * np.array([230.0, 150.0, 110.0]) * light[..., None]
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


def test_a_hole_in_bricks_under_uneven_light_is_filled_by_the_repeat() -> None:
    truth = _lit(_bricks(64, 80))  # not square on purpose
    holes = np.zeros((64, 80), dtype=bool)
    holes[20:38, 30:50] = True
    known = ~holes
    damaged = truth.copy()
    damaged[holes] = 0
    repeated = repeat_fill(damaged, holes, known)
    smooth = fill_holes(damaged, holes)
    assert _psnr(repeated, truth, holes) > 30.0
    assert _psnr(repeated, truth, holes) > _psnr(smooth, truth, holes) + 8.0
    assert (repeated[~holes] == truth[~holes]).all()


def test_the_lattice_found_is_a_true_period_of_the_pattern() -> None:
    pattern = _bricks(64, 64)
    found = lattice(pattern, np.ones(pattern.shape, dtype=bool))
    assert found is not None
    for shift in (found.first, found.second):
        assert shift is not None
        dx, dy = shift
        a = pattern[max(0, -dy) : 64 - max(0, dy), max(0, -dx) : 64 - max(0, dx)]
        b = pattern[max(0, dy) : 64 - max(0, -dy), max(0, dx) : 64 - max(0, -dx)]
        assert np.array_equal(a, b)


def test_a_background_that_does_not_repeat_keeps_the_smooth_fill() -> None:
    rng = np.random.default_rng(3)
    noise = rng.uniform(0.3, 0.9, size=(48, 48))
    assert lattice(noise, np.ones(noise.shape, dtype=bool)) is None
    image = _lit(noise)
    holes = np.zeros((48, 48), dtype=bool)
    holes[10:20, 10:20] = True
    out = repeat_fill(image, holes, ~holes)
    assert np.allclose(out[holes], fill_holes(image, holes)[holes])


def test_shadows_are_read_against_the_repeat_not_a_blur_of_it() -> None:
    from layoutedit.editing.shadows import shadow_darkening

    image = _lit(_bricks(64, 64))
    obj = np.zeros((1, 64, 64), dtype=bool)
    obj[0, 24:40, 24:40] = True
    image[obj[0]] = (40, 160, 60)
    smooth = shadow_darkening(image, obj, band_px=10, rim_px=1)
    repeated = shadow_darkening(image, obj, band_px=10, rim_px=1, repeat=True)
    # No shadow was drawn: the mortar is no shadow (the smooth estimate reads much of it so).
    assert smooth.sum() > 50.0
    assert repeated.sum() < 0.5 * smooth.sum()
    # A real shadow to the object's right is still found.
    shadowed = image.copy()
    shadowed[24:40, 40:46] = (shadowed[24:40, 40:46] * 0.6).astype(np.uint8)
    found = shadow_darkening(shadowed, obj, band_px=10, rim_px=1, repeat=True)
    assert found[0, 28:36, 41:45].mean() > 0.3


def test_a_hole_in_thin_dark_lines_under_a_light_ramp_comes_back_at_the_right_tone() -> None:
    # Light tiles with 1 px dark grout every 8 px, lit by a left-to-right ramp; a hole the
    # size of a tile and a half.
    ramp = np.linspace(0.8, 1.2, 64)[None, :, None]
    tiles = np.full((64, 64, 3), 200.0)
    tiles[::8] = 70.0
    tiles[:, ::8] = 70.0
    truth = np.clip(tiles * ramp, 0, 255).astype(np.uint8)
    holes = np.zeros((64, 64), dtype=bool)
    holes[26:38, 30:42] = True
    filled = repeat_fill(truth, holes, ~holes)
    error = np.abs(filled[holes] - truth[holes].astype(np.float64))
    assert error.mean() < 2.0


def test_grain_is_told_from_a_plain_or_a_repeating_background() -> None:
    rng = np.random.default_rng(4)
    known = np.ones((48, 48), dtype=bool)
    known[10:20, 10:20] = False  # a hole: its pixels and their neighbours are not read
    plain = _lit(np.full((48, 48), 0.6))
    grass = np.clip(plain.astype(np.float64) + rng.normal(0, 6, (48, 48, 1)), 0, 255)
    grass = grass.round().astype(np.uint8)
    assert grain_level(plain, known) < 0.5
    assert 4.0 < grain_level(grass, known) < 7.0  # 6 levels of noise less its local mean
    assert floor_grain_rms(grass, known) == grain_level(grass, known)
    assert floor_grain_rms(plain, known) == 0  # the smooth fill is right there
    assert floor_grain_rms(_lit(_bricks(48, 48)), known) == 0  # the repeat is right there
    # The grain holds the noise, not the light ramp under it.
    assert np.abs(fine_grain(plain)).max() < 2.0
    assert np.abs(fine_grain(grass)).std() > 3.0


def test_the_models_grain_keeps_the_floors_grain_and_drops_a_painted_edge() -> None:
    # A sand-like floor's grain and, across it, the bright rim of a ghost the model painted.
    rng = np.random.default_rng(3)
    floor = np.clip(180 + rng.normal(0, 5, (32, 32, 1)), 0, 255).repeat(3, axis=-1)
    painted = floor.copy()
    painted[:, 15] += 60  # a one-pixel line
    level = grain_level(floor.astype(np.uint8), np.ones((32, 32), dtype=bool))
    grain = fine_grain(painted.astype(np.uint8))
    kept = floor_grain(grain, level)
    line = np.abs(grain[:, 15].mean(axis=-1)) > GRAIN_OUTLIER * level
    assert line.mean() > 0.9  # the premise: the line stands out of the grain
    assert np.abs(kept[:, 15].mean(axis=-1)).max() <= GRAIN_OUTLIER * level
    away = np.ones((32, 32), dtype=bool)
    away[:, 13:18] = False  # the line's blur reaches two pixels
    assert (kept[away] != grain[away]).mean() < 0.01  # the floor's own grain stays
