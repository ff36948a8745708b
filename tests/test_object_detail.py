"""Detail transfer: each object's fine detail comes from its source pixels, moved with it."""

from __future__ import annotations

import numpy as np

from layoutedit.editing.detail import moved_detail, source_detail, transfer_detail
from layoutedit.editing.paste import paste_edit
from layoutedit.scenes.layout_ops import Placement

SIZE = 48


def _striped_scene() -> tuple[np.ndarray, np.ndarray]:
    """A gray image with one square object of 2-pixel red/dark-red stripes at (8..20, 8..20)."""
    image = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    masks = np.zeros((1, SIZE, SIZE), dtype=bool)
    masks[0, 8:20, 8:20] = True
    rows = np.arange(8, 20)
    image[8:20, 8:20] = np.where(
        ((rows // 2) % 2 == 0)[:, None, None], (220, 40, 40), (140, 20, 20)
    )
    return image, masks


MOVE = Placement(src_cx=14.0, src_cy=14.0, dst_cx=32.0, dst_cy=30.0, scale=1.0)


def _washed_out_edit(image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object pasted at MOVE, with its stripes flattened to their mean: what a model
    that kept the colour but lost the pattern would give."""
    pasted, footprints = paste_edit(image, masks, [MOVE], None)
    edit = pasted.copy()
    edit[footprints[0]] = pasted[footprints[0]].mean(axis=0).round().astype(np.uint8)
    return edit, footprints


def _error(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float))[where].mean())


def test_a_flat_object_has_no_detail_and_nothing_outside_objects_does() -> None:
    image, masks = _striped_scene()
    image[8:20, 8:20] = (200, 100, 50)
    detail = source_detail(image, masks, sigma=1.5)
    assert np.abs(detail).max() < 1e-6


def test_the_pattern_lost_in_the_edit_comes_back_where_the_object_went() -> None:
    image, masks = _striped_scene()
    edit, footprints = _washed_out_edit(image, masks)
    pasted, _ = paste_edit(image, masks, [MOVE], None)  # the pattern, moved: the truth here
    out = transfer_detail(edit, image, masks, [MOVE], None, sigma=1.5)
    inside = footprints[0]
    assert _error(out, pasted, inside) < 0.25 * _error(edit, pasted, inside)
    # Nothing outside the object's footprint changes.
    assert np.array_equal(out[~inside], edit[~inside])


def test_the_edits_coarse_colour_is_kept() -> None:
    image, masks = _striped_scene()
    edit, footprints = _washed_out_edit(image, masks)
    inside = footprints[0]
    # The model harmonised the object to a bluer shade: the detail must not undo that.
    edit[inside] = np.clip(edit[inside].astype(int) + np.array([0, 0, 60]), 0, 255).astype(np.uint8)
    out = transfer_detail(edit, image, masks, [MOVE], None, sigma=1.5)
    shift = out[inside].astype(float).mean(axis=0) - edit[inside].astype(float).mean(axis=0)
    assert np.abs(shift).max() < 2.0
    assert out[inside].std(axis=0).max() > 10  # and the stripes are there


def test_half_strength_lands_between_and_zero_changes_nothing() -> None:
    image, masks = _striped_scene()
    edit, footprints = _washed_out_edit(image, masks)
    pasted, _ = paste_edit(image, masks, [MOVE], None)
    inside = footprints[0]
    full = transfer_detail(edit, image, masks, [MOVE], None, sigma=1.5)
    half = transfer_detail(edit, image, masks, [MOVE], None, sigma=1.5, strength=0.5)
    assert (
        _error(full, pasted, inside) < _error(half, pasted, inside) < _error(edit, pasted, inside)
    )
    assert np.array_equal(transfer_detail(edit, image, masks, [MOVE], None, 1.5, 0.0), edit)


def test_a_shrunk_pattern_is_filtered_instead_of_aliasing() -> None:
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    masks = np.zeros((1, 64, 64), dtype=bool)
    masks[0, 4:44, 4:44] = True
    columns = np.arange(4, 44)
    # 1-pixel stripes: finer than any shrunk copy's pixels can hold.
    image[4:44, 4:44] = np.where((columns % 2 == 0)[None, :, None], (170, 170, 170), (90, 90, 90))
    amplitude = {}
    for scale in (1.0, 0.35):
        p = Placement(src_cx=24.0, src_cy=24.0, dst_cx=32.0, dst_cy=32.0, scale=scale)
        detail, footprints = moved_detail(image, masks, [p], None, sigma=2.0)
        amplitude[scale] = float(detail[footprints[0]].std())
    assert amplitude[1.0] > 30  # the stripes move whole at scale 1
    assert amplitude[0.35] < 0.25 * amplitude[1.0]  # not a moire of full strength
