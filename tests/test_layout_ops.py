"""Square padding, nearest resizing, region and blend masks, object moves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutedit.scenes.grids import (
    PadBox,
    blend_mask,
    region_masks,
    resize_labels,
    resize_nearest,
    square_pad,
    unpad,
)
from layoutedit.scenes.layout_ops import object_moves
from layoutedit.scenes.scene import layout_from_labels, scene_from_arrays

PALETTE = [(255, 0, 0), (0, 255, 0)]
BG = (255, 255, 255)


def test_square_pad_centres_a_wide_image_and_replicates_edges() -> None:
    image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    padded, box = square_pad(image, None)
    assert padded.shape == (4, 4, 3)
    assert box == PadBox(top=1, left=0, height=2, width=4)
    assert np.array_equal(padded[1:3], image)
    assert np.array_equal(padded[0], image[0])  # edge-replicated
    assert np.array_equal(padded[3], image[1])


def test_square_pad_labels_with_background_on_a_tall_grid() -> None:
    labels = np.zeros((5, 2), dtype=np.int16)
    padded, box = square_pad(labels, 7)
    assert padded.shape == (5, 5)
    assert padded.dtype == np.int16
    assert box == PadBox(top=0, left=1, height=5, width=2)
    assert (padded[:, 0] == 7).all() and (padded[:, 3:] == 7).all()
    assert (padded[:, 1:3] == 0).all()


def test_square_pad_with_per_channel_fill() -> None:
    padded, _ = square_pad(np.zeros((1, 3, 3), dtype=np.uint8), (1, 2, 3))
    assert padded[0, 0].tolist() == [1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), factor=st.sampled_from([1, 2, 4]))
def test_unpad_inverts_square_pad_at_any_multiple(h: int, w: int, factor: int) -> None:
    image = np.random.default_rng(h * 100 + w).integers(0, 255, (h, w, 3), dtype=np.uint8)
    padded, box = square_pad(image, None)
    assert np.array_equal(unpad(padded, box), image)
    # A model output at another resolution of the same square crops to the scaled box.
    big = resize_nearest(padded, box.side * factor, box.side * factor)
    cropped = unpad(big, box)
    assert cropped.shape[:2] == (h * factor, w * factor)


def test_resize_labels_nearest_keeps_values_and_dtype() -> None:
    labels = np.array([[0, 1], [2, 3]], dtype=np.int64)
    big = resize_labels(labels, 4)
    assert big.dtype == np.int16
    assert big.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    assert resize_labels(big, 2).tolist() == labels.tolist()


def test_resize_labels_needs_pad_value_for_non_square() -> None:
    with pytest.raises(ValueError):
        resize_labels(np.zeros((2, 4), dtype=np.int16), 4)
    out = resize_labels(np.zeros((2, 4), dtype=np.int16), 4, pad_value=9)
    assert out[0].tolist() == [9, 9, 9, 9] and out[1].tolist() == [0, 0, 0, 0]


def test_region_masks_one_hot_without_background() -> None:
    labels = np.array([[0, 1], [2, 2]], dtype=np.int16)  # K = 2, background = 2
    masks = region_masks(labels, 2, 2)
    assert masks.shape == (2, 2, 2) and masks.dtype == np.float32
    assert masks[0].tolist() == [[1, 0], [0, 0]]
    assert masks[1].tolist() == [[0, 1], [0, 0]]


def test_blend_mask_is_background_in_both() -> None:
    source = np.array([[0, 2], [2, 2]], dtype=np.int16)
    layout = np.array([[2, 2], [1, 2]], dtype=np.int16)
    mask = blend_mask(source, layout, background_index=2, side=2)
    assert mask.tolist() == [[False, True], [False, True]]


def test_object_moves_measures_centroid_shift_and_scale() -> None:
    labels = np.full((20, 40), 2, dtype=np.int16)
    labels[0:4, 0:4] = 0  # 4x4 square, centre (2, 2)
    labels[10:12, 30:32] = 1
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    scene = scene_from_arrays(image, labels, ["box", "dot"], PALETTE, BG)
    target = np.full((20, 40), 2, dtype=np.int16)
    target[10:18, 20:28] = 0  # moved to centre (24, 14), twice the side
    target[10:12, 30:32] = 1  # unchanged
    moves = object_moves(scene, layout_from_labels(target, scene))
    box, dot = moves
    assert (box.name, box.token) == ("box", "<box>")
    assert (box.dx, box.dy) == pytest.approx((22.0, 12.0))
    assert box.scale == pytest.approx(2.0)
    assert (box.source_area, box.layout_area) == (16, 64)
    assert (dot.dx, dot.dy, dot.scale) == pytest.approx((0.0, 0.0, 1.0))
