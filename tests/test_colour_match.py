"""Nearest-label colour matching: exact, noisy, JPEG-saved and stray pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from layoutedit.scenes.colour_match import (
    close_pairs,
    colour_distance,
    dilate,
    edge_radius_default,
    format_colours,
    match_colours,
)

SEED_PALETTE = [(251, 216, 1), (75, 254, 1), (251, 1, 1), (254, 254, 254)]

channel = st.integers(0, 255)
rgb = st.tuples(channel, channel, channel)


def test_exact_colours_map_to_their_index() -> None:
    pixels = np.array([[SEED_PALETTE[2], SEED_PALETTE[0]], [SEED_PALETTE[3], SEED_PALETTE[1]]])
    result = match_colours(pixels.astype(np.uint8), SEED_PALETTE, 40)
    assert result.labels.tolist() == [[2, 0], [3, 1]]
    assert result.labels.dtype == np.int16
    assert result.unmatched_count == 0
    assert result.unmatched_colours == ()


def test_far_colours_are_unmatched_but_snapped_to_nearest() -> None:
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[:] = SEED_PALETTE[3]
    pixels[0, 0] = (0, 0, 255)  # blue: far from every label
    pixels[0, 1] = (0, 0, 255)
    pixels[1, 2] = (200, 60, 40)  # nearest is the red plant, but beyond 40
    result = match_colours(pixels, SEED_PALETTE, 40, edge_radius=0)
    assert result.unmatched.tolist() == [[True, True, False], [False, False, True]]
    assert result.unmatched_colours == (((0, 0, 255), 2), ((200, 60, 40), 1))
    assert result.labels[1, 2] == 2
    assert result.unmatched_share == pytest.approx(3 / 6)


def test_ties_go_to_the_earlier_label() -> None:
    pixels = np.full((1, 1, 3), 100, dtype=np.uint8)
    result = match_colours(pixels, [(90, 100, 100), (110, 100, 100)], 40)
    assert result.labels[0, 0] == 0


def test_close_pairs_finds_overlapping_tolerance_spheres() -> None:
    assert close_pairs(SEED_PALETTE, 40) == []
    pairs = close_pairs([(0, 0, 0), (50, 0, 0), (200, 200, 200)], 40)
    assert pairs == [(0, 1, 50.0)]
    # Identical colours clash even at tolerance 0.
    assert close_pairs([(5, 5, 5), (5, 5, 5)], 0) == [(0, 1, 0.0)]


def test_format_colours_limits_the_list() -> None:
    colours = [((i, 0, 0), 10 - i) for i in range(7)]
    text = format_colours(colours, limit=2)
    assert text == "(0, 0, 0) x 10, (1, 0, 0) x 9 and 5 more"


@settings(max_examples=200, deadline=None)
@given(
    palette=st.lists(rgb, min_size=1, max_size=6),
    pixel=rgb,
    tolerance=st.floats(0, 120),
)
def test_labels_are_always_the_nearest_colour(
    palette: list[tuple[int, int, int]], pixel: tuple[int, int, int], tolerance: float
) -> None:
    result = match_colours(np.array([[pixel]], dtype=np.uint8), palette, tolerance)
    dists = [colour_distance(pixel, c) for c in palette]
    assert dists[result.labels[0, 0]] == min(dists)
    assert bool(result.unmatched[0, 0]) == (min(dists) > tolerance)


@settings(max_examples=200, deadline=None)
@given(
    palette=st.lists(rgb, min_size=2, max_size=6, unique=True),
    index=st.integers(0, 5),
    offset=st.tuples(*[st.integers(-40, 40)] * 3),
    tolerance=st.floats(1, 80),
)
def test_pixel_within_tolerance_of_exactly_one_label_maps_to_it(
    palette: list[tuple[int, int, int]],
    index: int,
    offset: tuple[int, int, int],
    tolerance: float,
) -> None:
    index %= len(palette)
    pixel = tuple(int(np.clip(c + o, 0, 255)) for c, o in zip(palette[index], offset, strict=True))
    within = [k for k, c in enumerate(palette) if colour_distance(pixel, c) <= tolerance]  # type: ignore[arg-type]
    assume(within == [index])
    result = match_colours(np.array([[pixel]], dtype=np.uint8), palette, tolerance)
    assert result.labels[0, 0] == index
    assert not result.unmatched[0, 0]


def _blocky_mask(
    rng: np.random.Generator, side: int, palette: list[tuple[int, int, int]]
) -> np.ndarray:
    """Label grid of random rectangles on background (last palette entry), one per object in
    its own horizontal band, so none is cut down to a sliver by another (a 2-pixel strip of
    a JPEG-saved mask is mostly fringe)."""
    labels = np.full((side, side), len(palette) - 1, dtype=np.int16)
    band = side // (len(palette) - 1)
    for k in range(len(palette) - 1):
        h = rng.integers(band // 2, band + 1)
        w = rng.integers(side // 4, side // 2)
        top, left = k * band + rng.integers(0, band - h + 1), rng.integers(0, side - w)
        labels[top : top + h, left : left + w] = k
    return labels


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), noise=st.integers(0, 23))
def test_channel_jitter_within_tolerance_keeps_every_pixel(seed: int, noise: int) -> None:
    # Per-channel noise of at most 23 moves a colour at most sqrt(3) * 23 < 40 away.
    rng = np.random.default_rng(seed)
    labels = _blocky_mask(rng, 48, SEED_PALETTE)
    pixels = np.array(SEED_PALETTE, dtype=np.int32)[labels]
    pixels = pixels + rng.integers(-noise, noise + 1, size=pixels.shape)
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    result = match_colours(pixels, SEED_PALETTE, 40)
    assert result.unmatched_count == 0
    assert np.array_equal(result.labels, labels)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), quality=st.integers(70, 95))
def test_jpeg_saved_masks_keep_every_object(seed: int, quality: int) -> None:
    rng = np.random.default_rng(seed)
    labels = _blocky_mask(rng, 128, SEED_PALETTE)
    pixels = np.array(SEED_PALETTE, dtype=np.uint8)[labels]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    noisy = np.asarray(Image.open(buffer).convert("RGB"))
    result = match_colours(noisy, SEED_PALETTE, 40)
    # JPEG disturbs edges: its fringes are recognised as such, few pixels are left
    # unmatched, and nearly every pixel keeps its label once snapped to the nearest colour.
    assert result.unmatched_share < 0.01
    agree = (result.labels == labels).mean()
    assert agree > 0.98
    for k in range(len(SEED_PALETTE) - 1):
        if (labels == k).any():
            kept = ((result.labels == k) & (labels == k)).sum() / (labels == k).sum()
            assert kept > 0.9


def test_anti_aliased_ramp_between_two_labels_is_an_edge_not_unmatched() -> None:
    # 10 px of yellow, a 4 px linear blend to red, 10 px of red: what a resize leaves.
    yellow, red = np.array(SEED_PALETTE[0], float), np.array(SEED_PALETTE[2], float)
    ts = np.concatenate([np.zeros(10), np.linspace(0.2, 0.8, 4), np.ones(10)])
    row = (yellow[None] * (1 - ts[:, None]) + red[None] * ts[:, None]).round().astype(np.uint8)
    pixels = np.repeat(row[None], 6, axis=0)
    result = match_colours(pixels, SEED_PALETTE, 40)
    assert result.unmatched_count == 0
    assert result.edge[:, 10:14].all() and not result.edge[:, :10].any()
    assert (result.labels[:, :12] == 0).all() and (result.labels[:, 12:] == 2).all()


def test_foreign_colour_blob_is_unmatched_even_at_its_border() -> None:
    pixels = np.zeros((30, 30, 3), dtype=np.uint8)
    pixels[:] = SEED_PALETTE[3]
    pixels[5:15, 5:15] = (10, 100, 200)  # no blend of label colours
    result = match_colours(pixels, SEED_PALETTE, 40)
    assert result.unmatched_count == 100
    assert not result.edge.any()
    assert result.unmatched_colours == (((10, 100, 200), 100),)


def test_large_blob_of_a_blend_colour_is_unmatched_inside() -> None:
    # Orange lies between the yellow and red labels: its border could be a fringe, but a
    # 30 px blob is an object the label map lacks, and its inside is reported.
    pixels = np.zeros((40, 40, 3), dtype=np.uint8)
    pixels[:] = SEED_PALETTE[3]
    pixels[:, :5] = SEED_PALETTE[0]
    pixels[5:35, 5:35] = (251, 108, 1)
    result = match_colours(pixels, SEED_PALETTE, 40)
    assert result.unmatched[20, 20]
    assert result.edge[6, 6]
    assert result.unmatched_count == (30 - 2 * 8) ** 2


def test_edge_radius_zero_turns_fringes_off() -> None:
    pixels = np.zeros((1, 3, 3), dtype=np.uint8)
    pixels[0, 0], pixels[0, 2] = SEED_PALETTE[0], SEED_PALETTE[2]
    pixels[0, 1] = (251, 108, 1)
    assert match_colours(pixels, SEED_PALETTE, 40).unmatched_count == 0
    assert match_colours(pixels, SEED_PALETTE, 40, edge_radius=0).unmatched_count == 1


def test_many_distinct_colours_are_matched_per_colour() -> None:
    # A photo-like image: every pixel a different colour; result must stay consistent.
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    result = match_colours(pixels, SEED_PALETTE, 40)
    pal = np.array(SEED_PALETTE, dtype=np.float64)
    dist = np.sqrt(((pixels[:, :, None, :].astype(np.float64) - pal) ** 2).sum(-1))
    assert np.array_equal(result.labels, dist.argmin(-1))
    beyond = dist.min(-1) > 40
    assert np.array_equal(result.unmatched | result.edge, beyond)
    assert not (result.unmatched & result.edge).any()
    assert sum(n for _, n in result.unmatched_colours) == result.unmatched_count


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        match_colours(np.zeros((4, 4), dtype=np.uint8), SEED_PALETTE, 40)
    with pytest.raises(ValueError):
        match_colours(np.zeros((4, 4, 3), dtype=np.uint8), [], 40)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    radius=st.integers(0, 6),
)
def test_dilate_matches_a_naive_square_dilation(seed: int, h: int, w: int, radius: int) -> None:
    mask = np.random.default_rng(seed).random((h, w)) < 0.1
    naive = np.zeros_like(mask)
    for y, x in zip(*np.nonzero(mask), strict=True):
        naive[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = True
    assert np.array_equal(dilate(mask, radius), naive)


def test_edge_radius_grows_with_large_images() -> None:
    assert edge_radius_default(64, 64) == 8
    assert edge_radius_default(2000, 3000) == 60


def test_upsampled_then_jpeg_saved_mask_is_all_edges_and_matches() -> None:
    # A 32 px mask blown up 25x with bilinear filtering, then saved as JPEG: fringes ~25 px
    # wide, within the 2 % of 800 px = 16 px edge radius of a matched pixel.
    labels = _blocky_mask(np.random.default_rng(3), 32, SEED_PALETTE)
    small = Image.fromarray(np.array(SEED_PALETTE, dtype=np.uint8)[labels])
    buffer = io.BytesIO()
    small.resize((800, 800), Image.BILINEAR).save(buffer, format="JPEG", quality=80)
    result = match_colours(np.asarray(Image.open(buffer).convert("RGB")), SEED_PALETTE, 40)
    assert result.unmatched_share < 0.001
    reference = np.kron(labels, np.ones((25, 25), dtype=np.int16))
    assert (result.labels == reference).mean() > 0.97
