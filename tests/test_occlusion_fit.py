"""Placements from painted regions where objects overlap (`scenes.occlusion_fit`)."""

from __future__ import annotations

import numpy as np
import pytest

from layoutedit.scenes.layout_ops import Placement, estimate_placements
from layoutedit.scenes.morphology import bordering, dilate, disk
from layoutedit.scenes.occlusion_fit import (
    amodal_estimate,
    completed_region,
    occlusion_placements,
    placement_errors,
    snap_scale,
    stays_put,
)

SIZE = 64


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    return np.asarray((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)


def _square(x0: int, y0: int, side: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def _labels(masks_back_to_front: list[tuple[int, np.ndarray]], k: int) -> np.ndarray:
    labels = np.full((SIZE, SIZE), k, dtype=np.int16)
    for index, mask in masks_back_to_front:
        labels[mask] = index
    return labels


def _blob(mask: np.ndarray, radius: float = 3.0) -> np.ndarray:
    return dilate(mask, disk(radius))


def test_amodal_estimate_fills_a_bite_a_front_object_takes() -> None:
    back, front = _square(10, 10, 20), _disc(32, 20, 6)
    labels = _labels([(0, back), (1, front)], 2)
    assert (labels == 0).sum() < back.sum() - 20
    whole = amodal_estimate(labels, 0, 2)
    assert (whole & back).sum() / back.sum() > 0.98
    assert not (whole & ~back).any()
    # The front object is not completed by the back one.
    assert (amodal_estimate(labels, 1, 2) == (labels == 1)).all()


def test_a_disc_behind_two_objects_comes_back_round_with_the_ellipse_reading() -> None:
    back = _disc(30, 30, 12)
    left, right = _square(14, 24, 10), _square(36, 16, 14)
    labels = _labels([(0, back), (1, left), (2, right)], 3)
    hull = amodal_estimate(labels, 0, 3)
    round_ = amodal_estimate(labels, 0, 3, ellipse=True)
    # The hull cuts the disc along the two squares' chords; the fitted ellipse does not.
    assert (back & ~hull).sum() >= 15
    assert (back & ~round_).sum() <= 0.2 * (back & ~hull).sum()
    assert (round_ & ~back).sum() <= 6  # a fit, not a blob: nothing much beyond the disc
    # A star-like outline is no ellipse: the hull reading stays.
    star = np.zeros((SIZE, SIZE), dtype=bool)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    angle = np.arctan2(yy - 30, xx - 30)
    star |= np.hypot(yy - 30, xx - 30) <= 8 + 5 * np.cos(5 * angle)
    spiky = _labels([(0, star), (1, _square(30, 20, 12))], 2)
    assert (amodal_estimate(spiky, 0, 2, ellipse=True) == amodal_estimate(spiky, 0, 2)).all()


def test_a_ring_half_hidden_keeps_its_hole_with_the_hole_reading() -> None:
    ring = _disc(30, 30, 12) & ~_disc(30, 30, 6)
    front = _square(30, 10, 20)  # hides the ring's right half, its hole's too
    labels = _labels([(0, ring), (1, front)], 2)
    hole = _disc(30, 30, 6)
    solid = amodal_estimate(labels, 0, 2)
    kept = amodal_estimate(labels, 0, 2, holes=True)
    hidden_hole = hole & front
    assert (solid & hidden_hole).sum() >= 0.9 * hidden_hole.sum()  # painted across
    assert (kept & hidden_hole).sum() <= 0.15 * hidden_hole.sum()
    assert (kept & ring & front).sum() >= (solid & ring & front).sum() - 4  # the ring stays
    # A disc has no hole: nothing changes.
    disc = _labels([(0, _disc(30, 30, 12)), (1, front)], 2)
    assert (amodal_estimate(disc, 0, 2, holes=True) == amodal_estimate(disc, 0, 2)).all()


def test_objects_that_still_fit_their_painted_regions_stay_put() -> None:
    back, front = _disc(24, 30, 10), _disc(36, 30, 8)
    source = _labels([(0, back), (1, front)], 2)
    layout = _labels([(0, _blob(back)), (1, _blob(front))], 2)
    placed = occlusion_placements(source, layout, 2, margin=5.0)
    for p in placed:
        assert (p.dst_cx, p.dst_cy, p.scale) == (p.src_cx, p.src_cy, 1.0)
    # The plain fit reads the cut shapes and moves or scales them.
    plain = estimate_placements(source, layout, 2)
    assert any(
        abs(p.scale - 1.0) > 0.02 or abs(p.dst_cx - p.src_cx) + abs(p.dst_cy - p.src_cy) > 0.5
        for p in plain
    )


def test_a_moved_object_is_not_taken_to_stay() -> None:
    back, front = _disc(24, 30, 10), _disc(44, 30, 8)
    source = _labels([(0, back), (1, front)], 2)
    moved = _disc(24 + 8, 30, 10)
    layout = _labels([(0, _blob(moved)), (1, _blob(front))], 2)
    assert not stays_put(source, layout, 0, 2, margin=5.0)
    assert stays_put(source, layout, 1, 2, margin=5.0)
    placed = occlusion_placements(source, layout, 2, margin=5.0, scale_snap=0.15)
    exact = [Placement(24, 30, 32, 30, 1.0), Placement(44, 30, 44, 30, 1.0)]
    assert max(placement_errors(placed, exact)) < 1.0


def test_a_region_cut_by_a_front_region_is_completed_and_fitted() -> None:
    # Object 0 moves right, behind object 1: the layout gives the overlap to 1.
    back, front = _disc(16, 32, 9), _disc(46, 32, 9)
    source = _labels([(0, back), (1, front)], 2)
    ellipse_region = _disc(32, 32, 11)
    layout = _labels([(0, ellipse_region), (1, _blob(front))], 2)
    completed = completed_region(layout, 0, 2)
    cut = layout == 0
    assert completed.sum() > cut.sum()
    assert (completed & ellipse_region).sum() / ellipse_region.sum() > 0.95
    exact = [Placement(16, 32, 32, 32, 1.0), Placement(46, 32, 46, 32, 1.0)]
    fitted = occlusion_placements(source, layout, 2, margin=5.0, scale_snap=0.15)
    plain = estimate_placements(source, layout, 2)
    assert placement_errors(fitted, exact)[0] < 1.0
    assert placement_errors(plain, exact)[0] > placement_errors(fitted, exact)[0] + 1.0


def test_a_region_with_no_neighbour_is_left_as_painted() -> None:
    layout = _labels([(0, _disc(20, 20, 8)), (1, _disc(46, 46, 8))], 2)
    assert (completed_region(layout, 0, 2) == (layout == 0)).all()


@pytest.mark.parametrize(("scale", "snap", "want"), [(1.1, 0.15, 1.0), (1.2, 0.15, 1.2)])
def test_snap_scale(scale: float, snap: float, want: float) -> None:
    assert snap_scale(Placement(1, 2, 3, 4, scale), snap).scale == want


def test_an_exact_layout_may_scale_an_object_a_painted_one_keeps_it() -> None:
    disc = _disc(32, 32, 16)
    source = _labels([(0, disc)], 1)
    grown = _labels([(0, _disc(32, 32, 19.2))], 1)
    exact = occlusion_placements(source, grown, 1, margin=5.0, painted=False)
    painted = occlusion_placements(source, grown, 1, margin=5.0, painted=True)
    assert exact[0].scale == pytest.approx(1.2, abs=0.03)
    assert painted[0].scale == 1.0


def test_layouts_made_by_operations_are_exact_and_painted_ones_are_not() -> None:
    from layoutedit.scenes.layout_edits import operations_layout
    from layoutedit.scenes.scene import layout_from_labels, scene_from_arrays

    labels = _labels([(0, _disc(20, 20, 8)), (1, _square(36, 36, 14))], 2)
    image = np.full((SIZE, SIZE, 3), 200, dtype=np.uint8)
    scene = scene_from_arrays(
        image, labels, ["red disc", "blue square"], [(255, 0, 0), (0, 0, 255)], (0, 0, 0)
    )
    made = operations_layout(scene, ["move red disc=+6,0"])
    assert made.exact
    painted = layout_from_labels(labels, scene)
    assert not painted.exact
    assert not operations_layout(scene, ["move red disc=+6,0"], base=painted).exact


def test_an_ellipse_drawn_around_a_moved_disc_is_not_read_as_a_bigger_disc() -> None:
    disc = _disc(20, 32, 16)
    source = _labels([(0, disc)], 1)
    drawn = _labels([(0, _disc(44, 32, 18))], 1)  # the disc's outline, 2 px out
    painted = occlusion_placements(source, drawn, 1, margin=5.0, scale_snap=0.15)
    exact = occlusion_placements(source, drawn, 1, margin=5.0, painted=False)
    assert exact[0].scale > 1.1  # read as an exact shape: a disc of radius 18
    assert painted[0].scale == 1.0
    assert placement_errors(painted, [Placement(20, 32, 44, 32, 1.0)])[0] < 1.0


def test_a_brush_region_half_hidden_by_a_front_region_keeps_the_object_size() -> None:
    # A square moves right behind a disc whose region takes half of the square's stroke:
    # the stroke's cut edge says nothing of the square's size.
    back, front = _square(8, 24, 16), _disc(50, 32, 10)
    source = _labels([(0, back), (1, front)], 2)
    moved = _square(30, 24, 16)
    layout = _labels([(0, _blob(moved)), (1, _blob(front))], 2)
    assert (layout == 0).sum() < 0.7 * _blob(moved).sum()
    placed = occlusion_placements(source, layout, 2, margin=5.0, scale_snap=0.15)
    assert placed[0].scale == pytest.approx(1.0, abs=0.08)
    exact = [Placement(16, 32, 38, 32, 1.0), Placement(50, 32, 50, 32, 1.0)]
    assert placement_errors(placed, exact)[0] < 2.0


def test_bordering_reads_four_neighbours_inside_the_frame_only() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[0:2, 0:3] = True
    other = np.zeros((5, 5), dtype=bool)
    other[2, 1] = True  # below (1, 1)
    other[2, 3] = True  # diagonal to (1, 2): not a 4-neighbour
    want = np.zeros((5, 5), dtype=bool)
    want[1, 1] = True
    assert np.array_equal(bordering(mask, other), want)
    # The frame is no neighbour: a mask along it borders nothing of an empty `other`.
    assert not bordering(mask, np.zeros_like(mask)).any()
