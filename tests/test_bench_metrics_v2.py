"""World v2's bench metrics on constructed images: a perfect output scores the cap or zero,
a blur or a flat fill cannot fake a texture, a ghost shadow and a missing one cost, a halo
along a pasted edge shows in the seam error. No model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from layoutedit.bench import metrics_v2 as v2
from layoutedit.bench.metrics import PSNR_CAP_DB
from layoutedit.scenes.layout_ops import Placement
from layoutedit.shapes.lighting import gaussian_blur
from layoutedit.shapes.world_v2 import background_albedo

SIZE = 64


def texture(name: str, seed: int) -> np.ndarray:
    """(S, S, 3) uint8 background of the world."""
    return np.clip(background_albedo(name, seed, SIZE), 0, 255).round().astype(np.uint8)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    channels = [gaussian_blur(image[..., c].astype(np.float32), sigma) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).round().astype(np.uint8)


def square(top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


HOLE = square(20, 18, 24)


def test_a_perfect_output_scores_the_cap_and_zero() -> None:
    truth = texture("bricks", 3)
    assert v2.image_psnr(truth, truth) == PSNR_CAP_DB
    assert v2.texture_distance(truth, truth, HOLE) == 0.0
    assert v2.seam_error(truth, truth, v2.seam_band(HOLE[None])) == 0.0
    assert v2.shadow_psnr(truth, truth, HOLE) == PSNR_CAP_DB
    assert v2.revealed_psnr(truth, truth, HOLE) == PSNR_CAP_DB
    empty = np.zeros_like(HOLE)
    assert math.isnan(v2.texture_distance(truth, truth, empty))
    assert math.isnan(v2.seam_error(truth, truth, empty))


@pytest.mark.parametrize("name", ["tiles", "bricks", "stripes", "planks", "grass"])
def test_a_blur_or_a_flat_fill_scores_farther_than_the_texture_moved(name: str) -> None:
    """The same texture a few pixels off (what a model that continues the pattern paints)
    keeps its local gradient histograms; a blur or a smooth fill loses them, though their
    PSNR is often the higher (a blur is the mean of a misaligned texture's guesses)."""
    for seed in (3, 4, 5):
        truth = texture(name, seed)
        shifted = max(
            v2.texture_distance(np.roll(truth, 2, axis=1), truth, HOLE),
            v2.texture_distance(np.roll(truth, 3, axis=0), truth, HOLE),
        )
        for sigma in (1.0, 1.5, 2.5):
            assert v2.texture_distance(blurred(truth, sigma), truth, HOLE) > shifted
        flat = truth.copy()
        flat[HOLE] = truth[HOLE].mean(axis=0).round()
        assert v2.texture_distance(flat, truth, HOLE) > shifted + 0.1


def test_texture_distance_is_local() -> None:
    """Each 8 px cell compares its own histograms: moving the texture's halves into each
    other's place (same global histogram) still costs."""
    truth = texture("tiles", 3)
    rows = np.zeros_like(truth)
    rows[:, :32], rows[:, 32:] = truth[:, :32], 255 - truth[:, 32:]  # two different halves
    swapped = np.concatenate([rows[:, 32:], rows[:, :32]], axis=1)
    whole = np.ones((SIZE, SIZE), dtype=bool)
    assert v2.texture_distance(swapped, rows, whole) > 0.05
    assert v2.texture_distance(swapped, rows, whole, cell=SIZE) < 0.05


def test_gradient_codes_flat_and_edges() -> None:
    flat = np.full((8, 8, 3), 120, dtype=np.uint8)
    assert (v2.gradient_codes(flat) == 0).all()
    step = flat.copy()
    step[:, 4:] = 220  # a vertical edge of 100 levels: strong horizontal gradient
    codes = v2.gradient_codes(step)
    assert (codes[:, [3, 4]] == 1 + 4 * v2.ORIENTATION_BINS).all()  # top band, angle 0
    assert (codes[:, :3] == 0).all() and (codes[:, 5:] == 0).all()
    assert codes.max() < v2.TEXTURE_BINS


def test_a_ghost_shadow_and_a_missing_one_lower_shadow_psnr() -> None:
    """An object moves right by 20 px; its shadow (3 px down-right, strength 0.5) moves with
    it. A paste that keeps the old shadow and casts no new one scores far below the truth."""
    background = np.full((SIZE, SIZE, 3), 200.0)
    old_obj, new_obj = square(10, 10, 12), square(10, 30, 12)

    def shade(obj: np.ndarray) -> np.ndarray:
        shifted = np.roll(np.roll(obj, 3, axis=0), 3, axis=1).astype(np.float32)
        return 0.5 * gaussian_blur(shifted, 1.0)

    def draw(obj: np.ndarray, shadow: np.ndarray) -> np.ndarray:
        img = background * (1 - shadow[..., None])
        img[obj] = (40, 80, 160)
        return img.round().astype(np.uint8)

    old_shadow, new_shadow = shade(old_obj), shade(new_obj)
    source, truth = draw(old_obj, old_shadow), draw(new_obj, new_shadow)
    ghost = source.copy()
    ghost[old_obj] = 200  # object cut out, hole filled, shadow left where it was
    ghost[new_obj] = (40, 80, 160)
    region = v2.shadow_region(old_shadow[None], new_shadow[None], 0.5, old_obj, new_obj)
    assert not (region & new_obj).any() and not (region & old_obj).any()
    assert (region & (new_shadow > 0.25)).sum() > 20  # the new shadow's core is in
    assert (region & (old_shadow > 0.25) & ~old_obj).sum() > 20  # the old one's visible part
    assert v2.shadow_psnr(truth, truth, region) == PSNR_CAP_DB
    assert v2.shadow_psnr(ghost, truth, region) < 20.0
    # Moving the shadow with the object fixes it: the same paste, shadow redrawn.
    fixed = draw(new_obj, new_shadow)
    assert v2.shadow_psnr(fixed, truth, region) > v2.shadow_psnr(ghost, truth, region) + 20
    keep = v2.unshadowed_background(
        np.where(old_obj, 0, 1), np.where(new_obj, 0, 1), 1, old_shadow[None], new_shadow[None], 0.5
    )
    assert not (keep & region).any() and keep[50:, :].all()


def test_revealed_pixels_follow_the_object() -> None:
    """A back square half hidden by a front one; the back square moves 20 px right and the
    pixels the source hid land 20 px right, where the target shows them."""
    back, front = square(10, 10, 12), square(10, 16, 12)
    amodal = np.stack([back, front])
    visible = np.stack([back & ~front, front])
    placements = [Placement(16, 16, 36, 16, 1.0), Placement(22, 16, 22, 16, 1.0)]
    hidden = v2.hidden_moved(amodal, visible, placements)
    assert hidden[1].sum() == 0
    assert np.array_equal(hidden[0], np.roll(back & front, 20, axis=1))
    target = np.stack([np.roll(back, 20, axis=1), front])
    revealed = v2.revealed_mask(hidden, target)
    assert revealed.sum() == (back & front).sum() == 6 * 12


def test_seam_band_and_error() -> None:
    obj = square(20, 20, 10)
    band = v2.seam_band(obj[None])
    assert band.sum() == 12 * 12 - 8 * 8  # one pixel in, one out, all round
    truth = np.full((SIZE, SIZE, 3), 100, dtype=np.uint8)
    halo = truth.copy()
    halo[band & ~obj] = 160  # a 1 px halo of the old background around the object
    assert v2.seam_error(halo, truth, band) == pytest.approx(60.0 * (12 * 12 - 100) / band.sum())
