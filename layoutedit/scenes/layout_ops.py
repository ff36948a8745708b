"""Where each object goes in a layout: its move from the source, its placement (centre and
scale) for the paste start, and the order objects are pasted in.

Label grids use the coding of `layoutedit.scenes.scene` (value `i < K` is object `i`, `K` the
background). The grid geometry these build on (padding, resizing, region masks) is
`layoutedit.scenes.grids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from layoutedit.scenes.masks import centroid, iou, move_mask
from layoutedit.scenes.region_fit import PAINTED_FILL, ellipse_hull, place_in_region

if TYPE_CHECKING:
    from layoutedit.scenes.scene import Layout, Scene


@dataclass(frozen=True)
class ObjectMove:
    """How one object differs between the source mask and a target layout.

    Positions are centroids in pixels of the source image (x right, y down).
    """

    name: str
    token: str
    source_area: int
    layout_area: int
    source_centre: tuple[float, float]
    layout_centre: tuple[float, float]

    @property
    def dx(self) -> float:
        """Horizontal centroid shift in pixels (positive = right)."""
        return self.layout_centre[0] - self.source_centre[0]

    @property
    def dy(self) -> float:
        """Vertical centroid shift in pixels (positive = down)."""
        return self.layout_centre[1] - self.source_centre[1]

    @property
    def scale(self) -> float:
        """Linear size change: sqrt(layout area / source area)."""
        return float(np.sqrt(self.layout_area / self.source_area)) if self.source_area else 0.0


def object_moves(scene: Scene, layout: Layout) -> list[ObjectMove]:
    """Centroid shift and size change of every object from `scene` to `layout`, object order."""
    moves = []
    for k, obj in enumerate(scene.objects):
        src = scene.labels == k
        lay = layout.labels == k
        moves.append(
            ObjectMove(
                name=obj.name,
                token=obj.token,
                source_area=int(src.sum()),
                layout_area=int(lay.sum()),
                source_centre=centroid(src),
                layout_centre=centroid(lay),
            )
        )
    return moves


@dataclass(frozen=True)
class Placement:
    """Where one object goes: its source centre, its target centre (px) and its scale."""

    src_cx: float
    src_cy: float
    dst_cx: float
    dst_cy: float
    scale: float


EXACT_IOU = 0.97
"""A target region that the source mask, moved and scaled, covers at least this well is
taken as the object's exact new shape (a layout made by operations), not a painted one.
High, because a blob painted around a round object is much like the object scaled up: at
0.85 the development cases' scales came out 1.27x too large, at 0.97 1.02x."""


def ellipse_hull_area(mask: np.ndarray) -> float:
    """Area (px) of the smallest axis-aligned ellipse, centred on the bounding box and with
    its aspect, that holds every pixel of `mask` ((H, W) bool, not empty)."""
    return ellipse_hull(mask).area


def paint_order(
    source_labels: np.ndarray, layout_labels: np.ndarray, placements: Sequence[Placement]
) -> list[int]:
    """The order to paste the objects in (back to front) so that the layout's overlaps win.

    Where two placed objects overlap, the layout says which is in front: the one whose
    region holds the overlap (`to-front`, or a painted layout). Objects are sorted by how
    many overlap pixels the layout gives them, fewest first; without overlaps the source's
    drawing order stays.

    Args:
        source_labels, layout_labels: (H, W) label grids (i < K objects, K background).
        placements: K placements (`estimate_placements`).

    Returns:
        The K object indices, back to front.
    """
    k = len(placements)
    placed = [warp_mask(source_labels == i, p) for i, p in enumerate(placements)]
    covered = np.sum(placed, axis=0)  # (H, W) how many objects land on each pixel
    owned = [int((placed[i] & (covered > 1) & (layout_labels == i)).sum()) for i in range(k)]
    return sorted(range(k), key=lambda i: (owned[i], i))


def warp_mask(mask: np.ndarray, placement: Placement) -> np.ndarray:
    """(H, W) bool `mask` moved and scaled as `placement` says (nearest neighbour)."""
    return move_mask(
        mask,
        placement.scale,
        (placement.src_cx, placement.src_cy),
        (placement.dst_cx, placement.dst_cy),
    )


def unplaced(src: np.ndarray) -> Placement:
    """An object missing from the source or the layout: it stays (at its centroid, or at the
    origin when it has no pixel) at scale 1."""
    cx, cy = centroid(src) if src.any() else (0.0, 0.0)
    return Placement(cx, cy, cx, cy, 1.0)


def exact_placement(src: np.ndarray, dst: np.ndarray) -> Placement | None:
    """The placement that moves and scales `src` onto `dst` ((H, W) bool, both not empty)
    when `dst` is that shape (IoU >= `EXACT_IOU`), else None: centroid to centroid at the
    square root of the area ratio."""
    (sx, sy), (dx, dy) = centroid(src), centroid(dst)
    exact = Placement(sx, sy, dx, dy, float(np.sqrt(dst.sum() / src.sum())))
    return exact if iou(warp_mask(src, exact), dst) >= EXACT_IOU else None


def snap_still(placement: Placement, tolerance_px: float) -> Placement:
    """`placement`, or no move at all when it moves the object by under `tolerance_px` and
    scales it by under 5 % (`EditConfig.still_tolerance`)."""
    p = placement
    if (
        np.hypot(p.dst_cx - p.src_cx, p.dst_cy - p.src_cy) < tolerance_px
        and abs(p.scale - 1.0) < 0.05
    ):
        return Placement(p.src_cx, p.src_cy, p.src_cx, p.src_cy, 1.0)
    return p


def estimate_placements(
    source_labels: np.ndarray, layout_labels: np.ndarray, n_objects: int, fit: bool = True
) -> list[Placement]:
    """Where each object of the source goes in a target layout: centre and scale.

    When the region is the object's own shape moved and scaled (IoU >= `EXACT_IOU`), the
    centroid goes to the region's centroid at the square root of the area ratio; a region
    painted around the target is fitted by `region_fit.place_in_region` (with `fit`), or
    the centroid goes to the region's centroid, scaled by `PAINTED_FILL` times the square
    root of the region's area over the object's ellipse hull's (the earlier estimate).

    Args:
        source_labels, layout_labels: (H, W) label grids (i < K objects, K background).
        n_objects: K.

    Returns:
        K placements in pixels of the grids; an object missing from either grid stays put
        at scale 1.
    """
    out = []
    for k in range(n_objects):
        src, dst = source_labels == k, layout_labels == k
        if not src.any() or not dst.any():
            out.append(unplaced(src))
            continue
        exact = exact_placement(src, dst)
        if exact is not None:
            out.append(exact)
            continue
        (sx, sy), (dx, dy) = centroid(src), centroid(dst)
        if fit:
            cx, cy, scale = place_in_region(src, dst)
            out.append(Placement(sx, sy, cx, cy, scale))
        else:
            scale = PAINTED_FILL * float(np.sqrt(dst.sum() / ellipse_hull_area(src)))
            out.append(Placement(sx, sy, dx, dy, scale))
    return out
