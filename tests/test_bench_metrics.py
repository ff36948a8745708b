"""Benchmark metrics on hand-made masks: every expected value is worked out from the
construction (areas, colours), not copied from a run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from layoutedit.bench.metrics import (
    PSNR_CAP_DB,
    background_psnr,
    colour_error,
    in_region_share,
    iou,
    layout_iou,
    mean_colour,
    object_psnr,
    psnr,
    shape_iou,
    vacated_psnr,
)
from layoutedit.scenes.morphology import (
    components,
    dilate,
    disk,
    fill_small_holes,
    largest_component,
    remove_small,
)


def square(top: int, left: int, side: int, size: int = 40) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


def test_iou_of_offset_squares() -> None:
    # Two 10x10 squares, the second shifted 3 right and 4 down: overlap 7 x 6.
    a, b = square(5, 5, 10), square(9, 8, 10)
    inter = 7 * 6
    union = 100 + 100 - inter
    assert iou(a, b) == pytest.approx(inter / union)
    assert iou(a, a) == 1.0
    assert iou(a, square(30, 30, 5)) == 0.0
    assert iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0


def test_layout_iou_is_the_mean_over_objects() -> None:
    target = np.stack([square(0, 0, 10), square(20, 20, 10)])
    # Object 0 found exactly; object 1 found as its left half only (50 of 100 pixels).
    found = np.stack([square(0, 0, 10), square(20, 20, 10) & (np.arange(40) < 25)[None, :]])
    assert layout_iou(found, target) == pytest.approx((1.0 + 50 / 100) / 2)


def test_in_region_share() -> None:
    found = np.stack([square(10, 10, 10), np.zeros((40, 40), bool)])
    # Region holds columns 10..15 of the found square: 6 of its 10 columns.
    region = np.zeros((40, 40), bool)
    region[:, :16] = True
    regions = np.stack([region, np.ones((40, 40), bool)])
    # Object 1 was not found at all: it scores 0, not "all inside".
    assert in_region_share(found, regions) == pytest.approx((60 / 100 + 0.0) / 2)
    assert in_region_share(found[:1], np.ones((1, 40, 40), bool)) == 1.0


def test_colour_error() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image[:4, :4] = (100, 50, 20)
    image[4:, :4] = (120, 50, 20)  # mean over the left half: (110, 50, 20)
    found = np.zeros((1, 8, 8), bool)
    found[0, :, :4] = True
    # Source (113, 54, 20): difference (3, 4, 0) -> distance 5.
    assert colour_error(image, found, [(113, 54, 20)]) == pytest.approx(5.0)
    # Nothing found: the fallback region (right half, black) is measured instead.
    none = np.zeros((1, 8, 8), bool)
    fallback = np.zeros((1, 8, 8), bool)
    fallback[0, :, 4:] = True
    assert colour_error(image, none, [(6, 8, 0)], fallback=fallback) == pytest.approx(10.0)
    assert colour_error(image, none, [(6, 8, 0)]) == pytest.approx(255 * math.sqrt(3))


def test_shape_iou_ignores_place_and_scale() -> None:
    small, big = square(2, 3, 8), square(15, 12, 20)
    assert shape_iou(small, big) == 1.0
    # A 10x10 square missing its top-right 5x5 quarter keeps its 10x10 box; resized to 20
    # (an exact 2x), three quarters of the box remain: IoU with the full square is 0.75.
    ell = square(0, 0, 10)
    ell[:5, 5:10] = False
    assert shape_iou(ell, square(20, 20, 10), side=20) == pytest.approx(0.75)
    assert shape_iou(np.zeros((40, 40), bool), big) == 0.0


def test_psnr_and_background_psnr() -> None:
    source = np.full((10, 10, 3), 100, np.uint8)
    shifted = source + 5  # every value off by 5 -> MSE 25
    assert psnr(shifted, source) == pytest.approx(10 * math.log10(255**2 / 25))
    assert psnr(source, source) == PSNR_CAP_DB
    # Labels: object 0 in the source on the left columns, in the target on the right ones;
    # K = 1 is the background. Only columns 3..6 are background in both.
    src_labels = np.ones((10, 10), np.int16)
    src_labels[:, :3] = 0
    tgt_labels = np.ones((10, 10), np.int16)
    tgt_labels[:, 7:] = 0
    output = source.copy()
    output[:, 3:7] += 10  # background in both: off by 10 -> MSE 100
    output[:, :3] = 0  # object pixels may change freely
    output[:, 7:] = 255
    expected = 10 * math.log10(255**2 / 100)
    assert background_psnr(output, source, src_labels, tgt_labels, 1) == pytest.approx(expected)


def test_morphology_functions() -> None:
    assert disk(1).sum() == 5  # the centre and its 4 neighbours
    dot = np.zeros((9, 9), bool)
    dot[4, 4] = True
    assert dilate(dot, disk(2)).sum() == disk(2).sum()
    # Two squares of 9 and 4 pixels, plus a speck of 1.
    m = square(0, 0, 3, size=12) | square(6, 6, 2, size=12)
    m[10, 0] = True
    _, n = components(m)
    assert n == 3
    assert remove_small(m, 2).sum() == 9 + 4
    assert largest_component(m).sum() == 9
    # A 1-pixel hole is filled; a 4x4 hole (a ring) is kept.
    ring = square(2, 2, 8, size=12) & ~square(4, 4, 4, size=12)
    pin = square(2, 2, 5, size=12)
    pin[4, 4] = False
    assert fill_small_holes(pin, 2).sum() == 25
    assert fill_small_holes(ring, 2).sum() == 64 - 16


def test_vacated_psnr_sees_a_trace_where_the_object_was() -> None:
    truth = np.full((16, 16, 3), 128, dtype=np.uint8)
    source_labels = np.ones((16, 16), dtype=np.int16)  # K = 1: background
    source_labels[2:6, 2:6] = 0  # the object was here
    target_labels = np.ones((16, 16), dtype=np.int16)
    target_labels[10:14, 10:14] = 0  # and went here
    clean = truth.copy()
    traced = truth.copy()
    traced[3:5, 3:5] = (200, 40, 40)  # a red trace where it was
    assert vacated_psnr(clean, truth, source_labels, target_labels, 1) == PSNR_CAP_DB
    assert vacated_psnr(traced, truth, source_labels, target_labels, 1) < 30
    # The trace is outside the background that both share, which does not see it.
    assert background_psnr(traced, truth, source_labels, target_labels, 1) == PSNR_CAP_DB
    assert np.isnan(vacated_psnr(clean, truth, source_labels, source_labels, 1))


def test_object_psnr_sees_a_smoothed_pattern_that_the_mean_colour_hides() -> None:
    truth = np.full((16, 16, 3), 128, dtype=np.uint8)
    labels = np.ones((16, 16), dtype=np.int16)  # K = 1: background
    labels[4:12, 4:12] = 0
    truth[4:12:2, 4:12] = (200, 40, 40)  # red and dark stripes, one row each
    truth[5:12:2, 4:12] = (100, 20, 20)
    smoothed = truth.copy()
    smoothed[4:12, 4:12] = (150, 30, 30)  # the stripes' mean: the same mean colour
    inside = labels == 0
    assert np.allclose(mean_colour(smoothed, inside), mean_colour(truth, inside))
    assert object_psnr(truth, truth, labels, 1) == PSNR_CAP_DB
    assert object_psnr(smoothed, truth, labels, 1) < 25
    # The rim is left out: a wrong outline ring does not count, a wrong inside does.
    rimmed = truth.copy()
    rimmed[4, 4:12] = rimmed[11, 4:12] = rimmed[4:12, 4] = rimmed[4:12, 11] = (0, 255, 0)
    assert object_psnr(rimmed, truth, labels, 1) == PSNR_CAP_DB
    assert np.isnan(object_psnr(truth, truth, np.ones((16, 16), dtype=np.int16), 1))
