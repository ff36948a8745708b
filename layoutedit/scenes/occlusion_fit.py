"""Placements from painted regions when objects overlap: what another object hides is
neither evidence for nor against a fit.

`region_fit.place_in_region` reads an object's visible source pixels and its whole target
region. Where objects overlap, both are cut: the source shows only the part of a back object
that nothing covers, and the layout gives an overlap to the front object's region. Fitting
the cut shapes pulls the object towards its visible part and shrinks it. Here:

- an object whose visible pixels all lie in painted regions, and whose own region the
  rough region around it at its source place would hold, stays where it is (`stays_put`):
  most objects of a layout edit do not move;
- otherwise the source part is completed where the objects over it may hide it
  (`amodal_estimate`), the region where other regions may hide it (`completed_region`),
  and the completed shapes are fitted;
- a fitted scale within `scale_snap` of 1 is taken as 1: a painted margin says the size
  only to a few per cent, and a size change meant is seldom that small.

Pure numpy, on the label grids of `layout_ops`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layoutedit.scenes.layout_ops import Placement, exact_placement, unplaced
from layoutedit.scenes.masks import centroid, convex_hull_mask, iou
from layoutedit.scenes.morphology import bordering, dilate, disk, fill_holes
from layoutedit.scenes.region_fit import (
    Hull,
    ellipse_hull,
    ellipse_mask,
    ellipse_through,
    place_in_region,
)

OUTSIDE_SHARE = 0.02
"""`stays_put`: share of the object's visible pixels that may fall outside every region
(a painted region's anti-aliased edge)."""

REGION_SLACK = 0.03
"""`stays_put`: share of the object's region that may lie beyond the rough region around
the object at its source place."""

ELLIPSE_FIT_IOU = 0.9
"""`completed_region`: IoU with the region (outside other regions) at which a fitted
ellipse is taken as the region's shape."""

WEAK_ORDER = 3
"""`hull_cuts`: a difference of fewer pixels than this says next to nothing about which of
two objects lies in front (`weakly_ordered`): a few anti-aliased edge pixels. On 400 world
v2 source scenes (seeds 0-399, the 427 pairs where one object hides 3 px or more of the
other) the plain reading (any difference) got 364 right and 31 backwards; 24 of the 31
differ by 1 or 2 px (docs/tuning.md, world v2 round 10)."""

EDGE_INSET = 0.5
"""`amodal_estimate`: px a mask's edge pixels' centres lie inside its outline (half a
pixel), added to an ellipse fitted through them; without it a disc behind two squares came
back 10 of 20 covered pixels short along its rim (tests/test_occlusion_fit.py)."""

MIN_HOLE_EDGE = 8
"""`covered_hole`: fewest of the object's pixels along a visible hole an ellipse is fitted
to."""

HOLE_FIT_IOU = 0.6
"""`covered_hole`: IoU of the fitted hole ellipse (outside the objects over it) with the
hole's visible part at which the ellipse is taken as the hole."""

MIN_FREE_EDGE = 12
"""`completed_region`: fewest free edge pixels (bordering the background) an ellipse is
fitted to."""


def _grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[: shape[0], : shape[1]] + 0.5
    return yy, xx


def hull_region(mask: np.ndarray, margin: float) -> np.ndarray:
    """(H, W) bool the largest rough region a person paints around `mask` (not empty): its
    ellipse hull grown by `margin` px, united with the mask dilated by `margin`."""
    hull = ellipse_hull(mask)
    yy, xx = _grid(mask.shape)
    a, b = hull.a + margin, hull.b + margin
    ellipse = ((xx - hull.cx) / a) ** 2 + ((yy - hull.cy) / b) ** 2 <= 1.0
    return np.asarray(ellipse | dilate(mask, disk(margin)))


def hull_cuts(masks: np.ndarray) -> np.ndarray:
    """(K, K) int: [i, j] how many more of object j's pixels object i's convex hull holds
    than j's hull holds of i's, read from (K, H, W) bool visible masks. Positive when j
    cuts into i (lies over it); antisymmetric."""
    k = masks.shape[0]
    hulls = [convex_hull_mask(m) if m.any() else m for m in masks]
    held = np.array([[int((hulls[i] & masks[j]).sum()) for j in range(k)] for i in range(k)])
    return held - held.T


def in_front(masks: np.ndarray) -> np.ndarray:
    """(K, K) bool: [i, j] when object j lies over object i in the source, read from
    (K, H, W) bool visible masks: i's convex hull holds more of j's pixels than j's hull
    holds of i's (`hull_cuts`; the one in front cuts into the one behind). Two objects
    that neither hull cuts into are left unordered."""
    return hull_cuts(masks) > 0


def touching(masks: np.ndarray) -> np.ndarray:
    """(K, K) bool symmetric: pairs of (K, H, W) bool masks that touch (an 8-neighbour of
    one lies in the other), the diagonal False."""
    k = masks.shape[0]
    out = np.zeros((k, k), dtype=bool)
    for i in range(k):
        near = dilate(masks[i], np.ones((3, 3), dtype=bool))
        for j in range(k):
            if j != i:
                out[i, j] = bool((near & masks[j]).any())
    return out


def weakly_ordered(masks: np.ndarray, cuts: np.ndarray | None = None) -> np.ndarray:
    """(K, K) bool symmetric: pairs whose `hull_cuts` (`cuts`, when the caller has them)
    differ by fewer than `WEAK_ORDER` pixels either way (a few anti-aliased edge pixels; no
    order read), the diagonal False."""
    cuts = hull_cuts(masks) if cuts is None else cuts
    weak = np.abs(cuts) < WEAK_ORDER
    np.fill_diagonal(weak, False)
    return weak


def covering(
    source_labels: np.ndarray, k: int, n_objects: int, over: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) bool pixels of the source objects that lie over object `k`: by `over` ((K, K)
    bool, [i, j] when j lies over i) when the caller read the order, else `in_front`."""
    masks = np.stack([source_labels == j for j in range(n_objects)])
    over = in_front(masks) if over is None else over
    return np.asarray(masks[over[k]].any(axis=0), dtype=bool)


def amodal_estimate(
    source_labels: np.ndarray,
    k: int,
    n_objects: int,
    over: np.ndarray | None = None,
    ellipse: bool = False,
    holes: bool = False,
) -> np.ndarray:
    """(H, W) bool object `k`'s visible pixels plus the pixels of its convex hull that the
    objects in front of it (`covering`, by `over` when given) cover: a bite a front object
    takes out of its outline is filled up to the chord; a part cut off along a straight
    edge stays missing (an underestimate).

    With `ellipse`, an object whose free outline (bordering neither the objects over it nor
    the frame) an ellipse fits (`completed_shape`) gets the covered pixels inside that
    ellipse instead: a disc behind two objects comes back round, not cut at their chords.
    With `holes`, the covered part of a hole that shows (`covered_hole`) is left out: a
    ring's hidden half comes back with its hole, not painted solid across it.
    """
    mask = source_labels == k
    covered = covering(source_labels, k, n_objects, over)
    if ellipse:
        whole = completed_shape(mask, covered, ~mask & ~covered, EDGE_INSET)
    else:
        whole = mask | (convex_hull_mask(mask) & covered)
    if holes:
        whole &= ~covered_hole(mask, covered)
    return whole


def covered_hole(mask: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """(H, W) bool the part of an object's hole (a ring's) that `covered` hides: the
    ellipse fitted through the object's pixels that border the hole's visible part (the
    pixels that neither it nor `covered` holds and that reach the frame only through
    them), less `EDGE_INSET`, inside `covered`. Empty when no hole shows, too little of
    its edge does (`MIN_HOLE_EDGE`), or the ellipse does not match the part that shows
    (IoU under `HOLE_FIT_IOU`: a star's notch closed off by the object over it).

    Args:
        mask: (H, W) bool the object's visible pixels.
        covered: (H, W) bool the pixels of the objects over it.
    """
    empty = np.zeros_like(mask)
    solid = mask | covered
    hole = fill_holes(solid) & ~solid
    if not hole.any():
        return empty
    edge = bordering(mask, hole)
    if edge.sum() < MIN_HOLE_EDGE:
        return empty
    fitted = ellipse_through(edge, centroid(hole))
    if fitted is None or min(fitted.a, fitted.b) <= EDGE_INSET:
        return empty
    fitted = Hull(fitted.cx, fitted.cy, fitted.a - EDGE_INSET, fitted.b - EDGE_INSET)
    ellipse = ellipse_mask(fitted, mask.shape)
    if iou(ellipse & ~covered, hole) < HOLE_FIT_IOU:
        return empty
    return np.asarray(ellipse & covered, dtype=bool)


def completed_shape(
    shape: np.ndarray, others: np.ndarray, free: np.ndarray, inset: float = 0.0
) -> np.ndarray:
    """(H, W) bool `shape` with what `others` may hide of it.

    An axis-aligned ellipse is fitted (least squares) to `shape`'s edge pixels that border
    `free` pixels; the pixels of `others` inside it are added. When too little edge is free
    (`MIN_FREE_EDGE`) or the fit is no ellipse that holds the shape (IoU of the ellipse
    outside `others` with `shape` under `ELLIPSE_FIT_IOU`: a star, a brush stroke), the
    pixels of `others` inside `shape`'s convex hull are added instead.

    Args:
        shape: (H, W) bool the part that shows.
        others: (H, W) bool what may lie over it.
        free: (H, W) bool where its outline is its own (background, objects behind it).
        inset: px the edge pixels' centres lie inside the outline, added to the fitted
            ellipse's axes (`EDGE_INSET` for a mask's outline).
    """
    hull = shape | (convex_hull_mask(shape) & others)
    edge = bordering(shape, free)
    if edge.sum() < MIN_FREE_EDGE:
        return hull
    fitted = ellipse_through(edge, centroid(shape))  # the shape's centroid is inside
    if fitted is None:
        return hull
    if inset:
        fitted = Hull(fitted.cx, fitted.cy, fitted.a + inset, fitted.b + inset)
    ellipse = ellipse_mask(fitted, shape.shape)
    if iou(ellipse & ~others, shape) < ELLIPSE_FIT_IOU:
        return hull
    return shape | (ellipse & others)


def stays_put(
    source_labels: np.ndarray,
    layout_labels: np.ndarray,
    k: int,
    n_objects: int,
    margin: float,
    whole: np.ndarray | None = None,
) -> bool:
    """Whether the layout leaves object `k` where it is, at its size.

    True when at most `OUTSIDE_SHARE` of its visible source pixels fall outside every
    painted region (another object's region may cover it now) and at most `REGION_SLACK` of
    its own region lies beyond `hull_region` of its completed source shape grown by
    `margin` px. A move of a few pixels or a growth leaves region beyond; a shrink leaves
    visible pixels outside. `whole`: (H, W) bool the object's whole source shape when the
    caller has it, else `amodal_estimate`'s.
    """
    visible = source_labels == k
    region = layout_labels == k
    if not visible.any() or not region.any():
        return False
    painted = layout_labels < n_objects
    if (visible & ~painted).sum() > OUTSIDE_SHARE * visible.sum():
        return False
    if whole is None:
        whole = amodal_estimate(source_labels, k, n_objects)
    around = hull_region(whole, margin)
    return bool((region & ~around).sum() <= REGION_SLACK * region.sum())


def completed_region(layout_labels: np.ndarray, k: int, n_objects: int) -> np.ndarray:
    """(H, W) bool object `k`'s painted region with what the other regions may hide of it.

    An axis-aligned ellipse is fitted (least squares) to the region's edge pixels that
    border the background, never to those that border another region; the pixels of other
    regions inside that ellipse are added. When too little edge is free or the fit is no
    ellipse that holds the region (a brush stroke), the pixels of other regions inside the
    region's convex hull are added instead. A region that borders no other stays as it is.
    """
    region = layout_labels == k
    others = (layout_labels < n_objects) & ~region
    if not region.any() or not bordering(region, others).any():
        return region
    return completed_shape(region, others, layout_labels >= n_objects)


def snap_scale(placement: Placement, scale_snap: float) -> Placement:
    """`placement` at scale 1 when its scale is within `scale_snap` (relative) of 1."""
    if abs(placement.scale - 1.0) >= scale_snap:
        return placement
    return Placement(placement.src_cx, placement.src_cy, placement.dst_cx, placement.dst_cy, 1.0)


def occlusion_placements(
    source_labels: np.ndarray,
    layout_labels: np.ndarray,
    n_objects: int,
    margin: float,
    scale_snap: float = 0.0,
    painted: bool = True,
    wholes: np.ndarray | None = None,
) -> list[Placement]:
    """Where each object goes in a painted layout whose objects may overlap.

    Per object: in a layout of exact shapes, a region that is its source shape moved and
    scaled (IoU >= `EXACT_IOU`) places it exactly; else `stays_put` keeps it; else its
    completed source shape is fitted into its completed region
    (`region_fit.place_in_region`) and the scale snapped (`snap_scale`). With `painted`,
    `stays_put` is asked first and no region is read as an exact shape: a brush stroke
    around a round object is that object scaled up (IoU over `EXACT_IOU`), so only a layout
    known to hold exact shapes (made by operations) may scale an object by its region alone.

    Args:
        source_labels, layout_labels: (H, W) label grids (i < K objects, K background).
        n_objects: K.
        margin: px, the widest margin a painted region leaves around its object.
        scale_snap: relative scale change under which the object keeps its size.
        painted: the regions were painted around the objects (False: exact shapes).
        wholes: (K, H, W) bool each object's whole source shape when the caller has them
            (the model's completer), else `amodal_estimate`'s.

    Returns:
        K placements in pixels of the grids (the centre is the completed shape's centroid);
        an object missing from either grid stays put at scale 1.
    """
    out: list[Placement] = []
    for k in range(n_objects):
        src, dst = source_labels == k, layout_labels == k
        if not src.any() or not dst.any():
            out.append(unplaced(src))
            continue
        whole = amodal_estimate(source_labels, k, n_objects) if wholes is None else wholes[k]
        wx, wy = centroid(whole)
        still = stays_put(source_labels, layout_labels, k, n_objects, margin, whole)
        if painted and still:
            out.append(Placement(wx, wy, wx, wy, 1.0))
            continue
        exact = None if painted else exact_placement(src, dst)
        if exact is not None:
            out.append(exact)
            continue
        if still:
            out.append(Placement(wx, wy, wx, wy, 1.0))
            continue
        others = (layout_labels < n_objects) & ~dst
        cx, cy, scale = place_in_region(
            whole, completed_region(layout_labels, k, n_objects), others
        )
        out.append(snap_scale(Placement(wx, wy, cx, cy, scale), scale_snap))
    return out


def placement_errors(estimated: Sequence[Placement], exact: Sequence[Placement]) -> list[float]:
    """Per object, px between where the estimate and the exact placement put the source's
    reference point (each placement's own `src` point, carried by the other's transform)."""
    errors = []
    for e, t in zip(estimated, exact, strict=True):
        # Carry e's reference point by t: its place under t minus its place under e.
        tx = t.dst_cx + (e.src_cx - t.src_cx) * t.scale
        ty = t.dst_cy + (e.src_cy - t.src_cy) * t.scale
        errors.append(float(np.hypot(tx - e.dst_cx, ty - e.dst_cy)))
    return errors
