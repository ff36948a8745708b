"""Fitting an object's placement to a region painted around its target."""

from __future__ import annotations

import numpy as np
import pytest

from layoutedit.bench.cases import make_cases
from layoutedit.editing.paste import paste_edit
from layoutedit.scenes.layout_ops import Placement, estimate_placements
from layoutedit.scenes.masks import iou
from layoutedit.scenes.morphology import dilate, disk
from layoutedit.scenes.region_fit import (
    CUT_ELLIPSE_IOU,
    Hull,
    box_ellipse,
    drawn_ellipse,
    ellipse_hull,
    ellipse_mask,
    place_in_region,
    signed_distance,
)
from layoutedit.shapes.world import ShapeSpec, exact_mask


def _shape(shape: str, cx: float, cy: float, size: float, side: int = 64) -> np.ndarray:
    return exact_mask(ShapeSpec(shape, (200, 30, 30), "red", "plain", cx, cy, size), side)


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5


def test_signed_distance_is_negative_inside_and_grows_outside() -> None:
    mask = np.zeros((9, 9), dtype=bool)
    mask[3:6, 3:6] = True
    field = signed_distance(mask)
    assert (field[mask] <= 0).all() and (field[~mask] > 0).all()
    assert field[4, 4] < field[3, 3]  # deeper inside
    assert field[4, 8] == pytest.approx(2.5)  # three pixel centres away, less half a pixel


@pytest.mark.parametrize("shape", ["heart", "triangle", "star"])
def test_an_ellipse_drawn_around_a_moved_lopsided_object_gives_its_placement(shape: str) -> None:
    source = _shape(shape, 20.0, 22.0, 20.0)
    target = _shape(shape, 41.0, 38.0, 24.0)  # moved, 1.2x
    drawn = ellipse_hull(target)
    yy, xx = np.mgrid[:64, :64] + 0.5
    a, b = drawn.a + 2.0, drawn.b + 2.0  # the ELLIPSE_MARGIN at 64 px
    region = ((xx - drawn.cx) / a) ** 2 + ((yy - drawn.cy) / b) ** 2 <= 1.0
    cx, cy, scale = place_in_region(source, region)
    tx, ty = _centroid(target)
    assert scale == pytest.approx(1.2, rel=0.06)
    # The region's centroid is the hull's centre, off the centroid of a lopsided shape.
    assert abs(cx - tx) < 1.0 and abs(cy - ty) < 1.0


@pytest.mark.parametrize("shape", ["heart", "triangle", "star"])
def test_an_ellipse_drawn_past_the_frame_gives_its_placement(shape: str) -> None:
    # The object moved to the right edge; the ellipse drawn around it runs past the frame,
    # so its bounding box is the cut one's and the box's ellipse is not the drawn one.
    source = _shape(shape, 16.0, 30.0, 20.0)
    target = _shape(shape, 54.0, 34.0, 20.0)
    hull = ellipse_hull(target)
    drawn = Hull(hull.cx, hull.cy, hull.a + 2.0, hull.b + 2.0)  # the ELLIPSE_MARGIN
    region = ellipse_mask(drawn, (64, 64))
    assert region[:, -1].any() and drawn.cx + drawn.a > 64.5  # cut by the frame
    xs = np.nonzero(region.any(axis=0))[0]
    assert abs((xs.min() + xs.max() + 1) / 2 - drawn.cx) > 1.0  # the box's centre is off
    found = drawn_ellipse(region)
    assert abs(found.cx - drawn.cx) < 0.5 and abs(found.cy - drawn.cy) < 0.5
    assert abs(found.a - drawn.a) < 0.7 and abs(found.b - drawn.b) < 0.7
    cx, cy, scale = place_in_region(source, region)
    tx, ty = _centroid(target)
    assert scale == pytest.approx(1.0, rel=0.06)
    assert abs(cx - tx) < 1.0 and abs(cy - ty) < 1.0


def test_a_brush_stroke_past_the_frame_is_not_taken_for_an_ellipse() -> None:
    # A round stroke around a heart at the top edge: an ellipse through its edge matches
    # it better than 0.95 (the in-frame bar), so a cut region needs `CUT_ELLIPSE_IOU`.
    source = _shape("heart", 22.0, 40.0, 20.0)
    target = _shape("heart", 42.0, 9.0, 20.0)
    region = dilate(target, disk(3.0))
    assert region[0].any()
    assert 0.95 <= iou(ellipse_mask(drawn_ellipse(region), region.shape), region) < CUT_ELLIPSE_IOU
    cx, cy, scale = place_in_region(source, region)
    tx, ty = _centroid(target)
    assert scale == pytest.approx(1.0, rel=0.06)
    assert abs(cx - tx) < 1.0 and abs(cy - ty) < 1.0


def test_an_ellipse_inside_the_frame_is_the_one_in_its_bounding_box() -> None:
    region = ellipse_mask(Hull(30.0, 28.0, 9.0, 6.0), (64, 64))
    assert drawn_ellipse(region) == Hull(30.0, 28.0, 9.0, 6.0)


@pytest.mark.parametrize("shape", ["heart", "triangle", "star"])
def test_a_brush_stroke_around_a_moved_object_gives_its_placement(shape: str) -> None:
    # (Not a square: a square grown by a round brush is much like a larger square grown by
    # a thinner one, and the fit takes the larger; see MARGIN_COST.)
    source = _shape(shape, 22.0, 22.0, 22.0)
    target = _shape(shape, 40.0, 40.0, 17.6)  # moved, 0.8x
    region = dilate(target, disk(3.0))
    assert iou(box_ellipse(region), region) < 0.95  # not taken for an ellipse
    cx, cy, scale = place_in_region(source, region)
    tx, ty = _centroid(target)
    assert scale == pytest.approx(0.8, rel=0.06)
    assert abs(cx - tx) < 1.0 and abs(cy - ty) < 1.0


def test_a_large_label_map_is_fitted_on_a_subsampled_grid_to_the_same_placement() -> None:
    factor = 6  # 384 px: over the fitting grid's side, so the subsampled search runs
    source = _shape("heart", 20.0 * factor, 22.0 * factor, 22.0 * factor, 64 * factor)
    target = _shape("heart", 40.0 * factor, 40.0 * factor, 17.6 * factor, 64 * factor)
    region = dilate(target, disk(3.0 * factor))
    cx, cy, scale = place_in_region(source, region)
    tx, ty = _centroid(target)
    assert scale == pytest.approx(0.8, rel=0.06)
    assert abs(cx - tx) < factor and abs(cy - ty) < factor


def test_fitted_placements_cover_the_targets_better_than_centroid_and_area() -> None:
    """On the painted regions of benchmark scenes (a development seed), objects pasted at
    the fitted placements match the exact targets better than at the region's centroid
    with the area-ratio scale."""
    fitted, naive = [], []
    for case in make_cases(6, seed=2000, layouts_per_scene=2):
        labels = case.source_labels
        for k, chosen in enumerate(estimate_placements(labels, case.layout, case.n_objects)):
            source, region = labels == k, case.layout == k
            rx, ry = _centroid(region)
            area_scale = 0.92 * float(np.sqrt(region.sum() / ellipse_hull(source).area))
            simple = Placement(chosen.src_cx, chosen.src_cy, rx, ry, area_scale)
            for placement, scores in ((chosen, fitted), (simple, naive)):
                _, pasted = paste_edit(case.source.image, source[None], [placement], (0, 0, 0))
                scores.append(iou(pasted[0], case.target_masks[k]))
    assert np.mean(fitted) > np.mean(naive) + 0.03
