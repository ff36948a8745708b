"""Benchmark cases: deterministic, in frame, seeds apart from tests and training, rough
regions that hold the exact target masks; and the paste reference edit."""

from __future__ import annotations

import numpy as np
import pytest

from layoutedit.bench.cases import (
    CASE_SEED_BASE,
    SCALE_RANGE,
    Case,
    make_cases,
    rough_region,
)
from layoutedit.editing.paste import background_mean, paste_edit
from layoutedit.shapes.dataset import TRAIN_SEED_BASE
from layoutedit.shapes.world import moved, shape_coverage


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return make_cases(3, seed=0, layouts_per_scene=3)


def test_cases_are_deterministic_and_seed_dependent(cases: list[Case]) -> None:
    again = make_cases(3, seed=0, layouts_per_scene=3)
    assert [c.case_id for c in again] == [c.case_id for c in cases]
    for a, b in zip(cases, again, strict=True):
        assert np.array_equal(a.layout, b.layout)
        assert np.array_equal(a.truth.image, b.truth.image)
    other = make_cases(3, seed=1, layouts_per_scene=3)
    assert {c.scene_seed for c in other}.isdisjoint({c.scene_seed for c in cases})
    assert not np.array_equal(other[0].source.image, cases[0].source.image)


def test_cases_use_their_own_seed_range(cases: list[Case]) -> None:
    for case in cases:
        assert CASE_SEED_BASE <= case.scene_seed < TRAIN_SEED_BASE
        assert case.n_objects in (2, 3)
    assert len(cases) == 9
    assert len({c.scene_seed for c in cases}) == 3


def test_targets_are_in_frame_and_transformed(cases: list[Case]) -> None:
    size = 64
    for case in cases:
        changed = 0
        for src, tgt in zip(case.source.objects, case.truth.objects, strict=True):
            if src == tgt:
                continue
            changed += 1
            # In frame: the coverage inside the frame equals the coverage of the same shape
            # drawn in the middle of a canvas three times as large.
            inside = shape_coverage(tgt, size).sum()
            whole = shape_coverage(moved(tgt, tgt.cx + size, tgt.cy + size), 3 * size).sum()
            assert inside == pytest.approx(whole)
            scale = tgt.size / src.size
            assert SCALE_RANGE[0] - 1e-9 <= scale <= SCALE_RANGE[1] + 1e-9
            assert (src.shape, src.colour, src.pattern) == (tgt.shape, tgt.colour, tgt.pattern)
        assert changed >= 1
        assert case.truth.background_seed == case.source.background_seed
        assert case.truth.background == case.source.background


def test_kinds(cases: list[Case]) -> None:
    assert {c.kind for c in cases} == {"move", "swap", "scale"}
    for case in cases:
        scales = [p.scale for p in case.placements]
        if case.kind == "scale":
            assert sum(abs(s - 1) > 1e-9 for s in scales) == 1
        else:
            assert all(s == 1.0 for s in scales)
        if case.kind == "swap":
            moved_ids = [
                i
                for i, p in enumerate(case.placements)
                if (p.src_cx, p.src_cy) != (p.dst_cx, p.dst_cy)
            ]
            assert len(moved_ids) == 2
            a, b = (case.placements[i] for i in moved_ids)
            # Each lands near the other's old place (whole-pixel jitter of at most 3 px,
            # or a nudge back into frame).
            assert abs(a.dst_cx - b.src_cx) <= 12 and abs(b.dst_cy - a.src_cy) <= 12


def test_rough_region_holds_the_exact_mask_and_is_not_it(cases: list[Case]) -> None:
    for case in cases:
        regions, target = case.region_masks, case.target_masks
        assert case.layout.min() >= 0 and case.layout.max() == case.n_objects
        for k in range(case.n_objects):
            assert not (target[k] & ~regions[k]).any()
            assert regions[k].sum() > target[k].sum()  # rough, not the shape itself
        assert (regions.sum(axis=0) <= 1).all()


def test_rough_region_kinds_on_a_square() -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:20, 12:26] = True  # 10 rows x 14 columns
    rng = np.random.default_rng(0)
    for kind in ("ellipse", "blob"):
        region = rough_region(mask, 14.0, kind, rng)
        assert region[mask].all()
        # Corners are rounded off: the region is not a dilated rectangle of the same reach.
        assert region.sum() < (region.any(axis=1).sum() * region.any(axis=0).sum())


def test_paste_moves_pixels_exactly_for_whole_pixel_moves(cases: list[Case]) -> None:
    hole_pixels = 0
    for case in cases:
        fill = background_mean(case.source.image, case.source_labels, case.n_objects)
        image, pasted = paste_edit(case.source.image, case.source.masks, case.placements, fill)
        for k, p in enumerate(case.placements):
            if p.scale != 1.0:
                continue
            dx, dy = p.dst_cx - p.src_cx, p.dst_cy - p.src_cy
            assert abs(dx - round(dx)) < 1e-9 and abs(dy - round(dy)) < 1e-9
            # The pasted mask is the visible source mask shifted by (dx, dy).
            shifted = np.roll(case.source.masks[k], (round(dy), round(dx)), axis=(0, 1))
            assert np.array_equal(pasted[k], shifted)
            assert np.array_equal(image[pasted[k]], case.source.image[case.source.masks[k]])
        # Holes left behind are the background's mean colour.
        holes = case.source.masks.any(axis=0) & ~pasted.any(axis=0)
        hole_pixels += int(holes.sum())
        if holes.any():
            assert np.abs(image[holes].astype(float) - fill).max() <= 0.5
    assert hole_pixels > 0


def test_paste_without_moves_is_the_source_on_its_objects() -> None:
    case = make_cases(1, seed=2, layouts_per_scene=1)[0]
    same = [type(p)(p.src_cx, p.src_cy, p.src_cx, p.src_cy, 1.0) for p in case.placements]
    fill = background_mean(case.source.image, case.source_labels, case.n_objects)
    image, pasted = paste_edit(case.source.image, case.source.masks, same, fill)
    assert np.array_equal(pasted, case.source.masks)
    assert np.array_equal(image[pasted.any(axis=0)], case.source.image[pasted.any(axis=0)])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_cases(0)
    with pytest.raises(ValueError):
        make_cases(1, seed=-1)
