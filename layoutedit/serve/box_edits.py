"""Boxes as a person moves them on the picture: pixel rectangles, resizing that keeps an
object's proportions, arrow-key nudges, and undo/redo. Pure numpy, no Gradio.

The page draws each object's box over the source picture (enlarged `factor` times); a drag
comes back as rectangles in the scene's pixels. `box_from_rect` turns one into an
`ObjectBox` (see `layoutedit.serve.boxes`), read against the *base* layout the boxes start
from. A rectangle the same size as before is a move; a new size is a resize, which keeps
the box's proportions unless asked not to, with the edges the person did not drag staying
where they were (drag the bottom-right corner and the top-left one stays put).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from layoutedit.scenes.masks import bounding_box
from layoutedit.serve.boxes import ObjectBox

Rect = tuple[float, float, float, float]
"""(x0, y0, x1, y1) in the scene's pixels, x1 and y1 exclusive."""

UNDO_LIMIT = 100  # box states kept for undo: bounds a tab's memory


def object_rect(base: np.ndarray, k: int, box: ObjectBox) -> Rect | None:
    """Object k's box as a pixel rectangle (None when the base does not show the object).

    Args:
        base: (H, W) label grid the boxes are read against; objects 0..K-1.
        k: the object.
        box: its box.
    """
    bounds = bounding_box(base == k)
    if bounds is None:
        return None
    height, width = base.shape
    x0, y0, x1, y1 = bounds
    half_w, half_h = (x1 - x0) * box.sx / 2, (y1 - y0) * box.sy / 2
    cx, cy = box.cx * width, box.cy * height
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def object_rects(base: np.ndarray, boxes: Sequence[ObjectBox]) -> list[Rect | None]:
    """Every object's rectangle (`object_rect` of each of the K boxes)."""
    return [object_rect(base, k, box) for k, box in enumerate(boxes)]


def _anchored(
    lo: float, hi: float, was_lo: float, was_hi: float, size: float, tol: float
) -> tuple[float, float]:
    """(lo, hi) of a side `size` long: the edge that did not move stays, else the centre."""
    if abs(lo - was_lo) <= tol < abs(hi - was_hi):
        return lo, lo + size
    if abs(hi - was_hi) <= tol < abs(lo - was_lo):
        return hi - size, hi
    mid = (lo + hi) / 2
    return mid - size / 2, mid + size / 2


def box_from_rect(
    base: np.ndarray,
    k: int,
    rect: Rect,
    previous: ObjectBox,
    *,
    keep_proportions: bool = True,
    tolerance: float = 0.5,
) -> ObjectBox:
    """Object k's box after a person moved or resized its rectangle to `rect`.

    Args:
        base: (H, W) label grid the boxes are read against.
        k: the object.
        rect: the new rectangle, scene pixels.
        previous: the box before (its rectangle is what the person started from).
        keep_proportions: a resize scales width and height alike, by the side that changed
            more; else each side follows the rectangle.
        tolerance: px; a side or an edge that moved less than this did not move (the page
            rounds to its own pixels).

    Returns:
        The new box; `previous` itself when nothing moved.
    """
    before = object_rect(base, k, previous)
    if before is None:
        return previous
    height, width = base.shape
    x0, y0, x1, y1 = rect
    bx0, by0, bx1, by1 = before
    new_w, new_h = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
    was_w, was_h = bx1 - bx0, by1 - by0
    resized = abs(new_w - was_w) > tolerance or abs(new_h - was_h) > tolerance
    if not resized:
        moved = max(abs(x0 - bx0), abs(y0 - by0), abs(x1 - bx1), abs(y1 - by1)) > tolerance
        if not moved:
            return previous
        return ObjectBox((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, previous.sx, previous.sy)
    rx, ry = new_w / was_w, new_h / was_h
    if keep_proportions:
        # The side that changed more (in ratio) sets the scale: a side handle changes one.
        ratio = rx if abs(math.log(rx)) >= abs(math.log(ry)) else ry
        rx = ry = ratio
        x0, x1 = _anchored(x0, x1, bx0, bx1, was_w * ratio, tolerance)
        y0, y1 = _anchored(y0, y1, by0, by1, was_h * ratio, tolerance)
    return ObjectBox(
        (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, previous.sx * rx, previous.sy * ry
    )


def nudge_step(size: tuple[int, int]) -> int:
    """Pixels one arrow-key press moves a box: 1/64 of the longer side, at least 1."""
    return max(1, round(max(size) / 64))


def nudged(box: ObjectBox, dx: int, dy: int, size: tuple[int, int]) -> ObjectBox:
    """`box` moved by (dx, dy) steps of `nudge_step` (right and down are positive)."""
    height, width = size
    step = nudge_step(size)
    return ObjectBox(box.cx + dx * step / width, box.cy + dy * step / height, box.sx, box.sy)


@dataclass(frozen=True)
class Snapshot:
    """What undo brings back: the boxes and the painted layout (None: the boxes rule)."""

    boxes: tuple[ObjectBox, ...]
    painted: np.ndarray | None = None


@dataclass
class BoxHistory:
    """Undo and redo of box changes (moves, resizes, nudges, resets, paintings)."""

    undo: list[Snapshot] = field(default_factory=list)
    redo: list[Snapshot] = field(default_factory=list)

    def record(self, before: Snapshot) -> None:
        """A change is about to happen; `before` is what undo returns to. Clears redo."""
        self.undo.append(before)
        del self.undo[:-UNDO_LIMIT]
        self.redo.clear()

    def back(self, now: Snapshot) -> Snapshot | None:
        """The state before the last change (None: nothing to undo); `now` goes to redo."""
        if not self.undo:
            return None
        self.redo.append(now)
        return self.undo.pop()

    def forward(self, now: Snapshot) -> Snapshot | None:
        """The state undo left (None: nothing to redo); `now` goes back to undo."""
        if not self.redo:
            return None
        self.undo.append(now)
        return self.redo.pop()

    def clear(self) -> None:
        """Forget every change (a new scene, or a new base layout)."""
        self.undo.clear()
        self.redo.clear()
