"""Layout operations: move, scale, swap, box and to-front, applied to a scene's objects.

Pure numpy, no model. An operation changes the *current state* of the objects (the source's
masks, or the previous step's layout) and the state is drawn into a label grid in the scene's
coding (`layoutedit.scenes.scene`: value `i < K` is object `i`, `K` the background).

    move     cat=+40,-10          shift by pixels (x right, y down), or by fractions of the
             cat=+0.1,-0.05       image's width and height (every number in [-1, 1] with a
                                  decimal point)
    scale    pot=0.8              linear size factor about the object's centroid (> 0)
    swap     plant,pot            exchange the two objects' centroids
    box      cat=0.1,0.2,0.5,0.6  fit the object into the box x0,y0,x1,y1 (fractions or
                                  pixels), keeping its aspect, centred in the box
    to-front cat                  draw the object last (on top of the others)

`apply_operations` applies them in the order given; the CLI orders its flags box, swap,
scale, move, to-front (`FLAG_ORDER`), since a command line does not keep the order of
different flags. An object may not leave the frame: when less than `MIN_IN_FRAME` of its
area would stay inside the image, the operation is refused with a `UserError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from layoutedit.errors import UserError
from layoutedit.scenes.masks import axis_scales, bounding_box, centroid, move_mask

if TYPE_CHECKING:
    from layoutedit.scenes.scene import Layout, Scene

MIN_IN_FRAME = 0.8
"""Share of an object's (transformed) area that must stay inside the image."""

FLAG_ORDER = ("box", "swap", "scale", "move", "to-front")
"""The order in which the CLI applies its operation flags."""

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class Move:
    """Shift an object: `dx` right and `dy` down, in pixels or (`fraction`) image fractions."""

    name: str
    dx: float
    dy: float
    fraction: bool = False

    @property
    def text(self) -> str:
        """The operation as typed: `--move cat=+40,-10`."""
        return f"--move {self.name}={self.dx:+g},{self.dy:+g}"


@dataclass(frozen=True)
class Scale:
    """Scale an object about its centroid by a linear `factor` (> 0)."""

    name: str
    factor: float

    @property
    def text(self) -> str:
        """The operation as typed: `--scale pot=0.8`."""
        return f"--scale {self.name}={self.factor:g}"


@dataclass(frozen=True)
class Swap:
    """Exchange the centroids of two objects."""

    first: str
    second: str

    @property
    def text(self) -> str:
        """The operation as typed: `--swap plant,pot`."""
        return f"--swap {self.first},{self.second}"


@dataclass(frozen=True)
class Box:
    """Fit an object into the box (x0, y0, x1, y1), pixels or (`fraction`) image fractions.

    `stretch`: fill the box's width and height both (the object's proportions change);
    by default the object keeps its proportions and fits inside the box.
    """

    name: str
    x0: float
    y0: float
    x1: float
    y1: float
    fraction: bool = False
    stretch: bool = False

    @property
    def text(self) -> str:
        """The operation as typed: `--box cat=0.1,0.2,0.5,0.6`."""
        return f"--box {self.name}={self.x0:g},{self.y0:g},{self.x1:g},{self.y1:g}"


@dataclass(frozen=True)
class ToFront:
    """Draw an object on top of the others."""

    name: str

    @property
    def text(self) -> str:
        """The operation as typed: `--to-front cat`."""
        return f"--to-front {self.name}"


Operation = Move | Scale | Swap | Box | ToFront


# --- parsing -------------------------------------------------------------------------------


def _numbers(
    text: str, count: int, flag: str, example: str, typed: str
) -> tuple[list[float], bool]:
    """`"+40,-10"` -> ([40.0, -10.0], fraction?): fractions when every number lies in [-1, 1]
    and one is written with a decimal point. `typed` is the whole value as the user wrote
    it (`cat=+40,-10`), which an error quotes."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != count or not all(_NUMBER.match(p) for p in parts):
        raise UserError(
            f"{flag} {typed!r}: give {count} numbers separated by commas, e.g. {example}"
        )
    values = [float(p) for p in parts]
    fraction = any("." in p for p in parts) and all(abs(v) <= 1 for v in values)
    return values, fraction


def _name_value(text: str, flag: str, example: str) -> tuple[str, str]:
    name, sep, value = text.rpartition("=")
    if not sep or not name.strip() or not value.strip():
        raise UserError(f"{flag} {text!r}: write NAME=VALUES, e.g. {example}")
    return name.strip(), value.strip()


def parse_operation(flag: str, text: str) -> Operation:
    """One operation from its flag (`move`, `scale`, `swap`, `box`, `to-front`; a leading
    `--` is allowed) and its value (`cat=+40,-10`).

    Raises:
        UserError: an unknown flag, malformed numbers, or a scale <= 0.
    """
    kind = flag.removeprefix("--").replace("_", "-")
    shown = f"--{kind}"
    if kind == "move":
        name, value = _name_value(text, shown, "cat=+40,-10")
        (dx, dy), fraction = _numbers(value, 2, shown, "cat=+40,-10 or cat=+0.1,-0.05", text)
        return Move(name, dx, dy, fraction)
    if kind == "scale":
        name, value = _name_value(text, shown, "pot=0.8")
        if not _NUMBER.match(value):
            raise UserError(f"{shown} {text!r}: the factor must be a number, e.g. pot=0.8")
        factor = float(value)
        if factor <= 0:
            raise UserError(f"{shown} {text!r}: the factor must be greater than 0")
        return Scale(name, factor)
    if kind == "swap":
        first, sep, second = text.partition(",")
        if not sep or not first.strip() or not second.strip() or "," in second:
            raise UserError(f"{shown} {text!r}: name two objects, e.g. plant,pot")
        return Swap(first.strip(), second.strip())
    if kind == "box":
        name, value = _name_value(text, shown, "cat=0.1,0.2,0.5,0.6")
        (x0, y0, x1, y1), fraction = _numbers(value, 4, shown, "cat=0.1,0.2,0.5,0.6", text)
        if x1 <= x0 or y1 <= y0:
            raise UserError(f"{shown} {text!r}: the box needs x0 < x1 and y0 < y1")
        return Box(name, x0, y0, x1, y1, fraction)
    if kind == "to-front":
        if not text.strip():
            raise UserError(f"{shown}: name an object")
        return ToFront(text.strip())
    raise UserError(f"unknown layout operation {flag!r}; use one of {', '.join(FLAG_ORDER)}")


def parse_flags(
    *,
    move: Sequence[str] = (),
    scale: Sequence[str] = (),
    swap: Sequence[str] = (),
    box: Sequence[str] = (),
    to_front: Sequence[str] = (),
) -> list[Operation]:
    """The CLI's operation flags as operations, in `FLAG_ORDER` (each flag's values in the
    order given)."""
    given = {"box": box, "swap": swap, "scale": scale, "move": move, "to-front": to_front}
    return [parse_operation(kind, text) for kind in FLAG_ORDER for text in given[kind]]


def parse_step(text: str) -> Operation:
    """`"move cat=+40,-10"` (a script's form: the flag name, a space, the value)."""
    flag, _, value = text.strip().partition(" ")
    return parse_operation(flag, value.strip())


# --- the objects' state --------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectState:
    """Every object's full mask and the order they are drawn in.

    Attributes:
        masks: (K, H, W) bool, one mask per object (parts hidden by others included once an
            operation has moved them; from a label grid, only the visible parts).
        order: object indices, drawn first to last (the last is on top).
        names: the K object names.
    """

    masks: np.ndarray
    order: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: np.ndarray, names: Sequence[str]) -> ObjectState:
        """The state of a label grid (objects drawn in object order)."""
        ks = np.arange(len(names), dtype=labels.dtype)[:, None, None]
        return cls(labels[None] == ks, tuple(range(len(names))), tuple(names))

    def labels(self) -> np.ndarray:
        """(H, W) int16 label grid: objects drawn in `order` over the background (K)."""
        out = np.full(self.masks.shape[1:], len(self.names), dtype=np.int16)
        for k in self.order:
            out[self.masks[k]] = k
        return out


def _index(state: ObjectState, name: str, op: Operation) -> int:
    if name in state.names:
        return state.names.index(name)
    folded = [n.lower() for n in state.names]
    if name.lower() in folded:
        return folded.index(name.lower())
    raise UserError(f"{op.text}: the scene has no object {name!r}; it has {', '.join(state.names)}")


def _place(
    state: ObjectState,
    k: int,
    scale: float | tuple[float, float],
    target: tuple[float, float],
    op: Operation,
    centre: tuple[float, float] | None = None,
) -> ObjectState:
    """Object k scaled by `scale` (one factor, or x and y factors) about `centre` (default
    its centroid) and moved there to `target`; refused when too much of it would leave the
    image."""
    mask = state.masks[k]
    if not mask.any():
        raise UserError(f"{op.text}: object {state.names[k]!r} is not visible in this layout")
    centre = centre or centroid(mask)
    moved = move_mask(mask, scale, centre, target)
    sx, sy = axis_scales(scale)
    expected = float(mask.sum()) * sx * sy
    kept = float(moved.sum()) / expected if expected > 0 else 0.0
    name = state.names[k]
    if not moved.any() and min(sx, sy) < 1:
        raise UserError(f"{op.text}: {name!r} would become too small to draw")
    if kept < MIN_IN_FRAME:
        raise UserError(
            f"{name} pushed out of frame by {op.text} (only {100 * min(kept, 1):.0f} % of it "
            "would stay in the image)"
        )
    masks = state.masks.copy()
    masks[k] = moved
    return replace(state, masks=masks)


def apply_operation(state: ObjectState, op: Operation) -> ObjectState:
    """One operation on the objects' state (see the module docstring).

    Raises:
        UserError: an unknown object, or an object pushed out of the frame.
    """
    height, width = state.masks.shape[1:]
    if isinstance(op, Move):
        k = _index(state, op.name, op)
        dx, dy = (op.dx * width, op.dy * height) if op.fraction else (op.dx, op.dy)
        cx, cy = centroid(state.masks[k]) if state.masks[k].any() else (0.0, 0.0)
        return _place(state, k, 1.0, (cx + dx, cy + dy), op)
    if isinstance(op, Scale):
        k = _index(state, op.name, op)
        if op.factor <= 0:
            raise UserError(f"{op.text}: the factor must be greater than 0")
        target = centroid(state.masks[k]) if state.masks[k].any() else (0.0, 0.0)
        return _place(state, k, op.factor, target, op)
    if isinstance(op, Swap):
        a, b = _index(state, op.first, op), _index(state, op.second, op)
        if a == b:
            raise UserError(f"{op.text}: name two different objects")
        for k in (a, b):
            if not state.masks[k].any():
                raise UserError(f"{op.text}: {state.names[k]!r} is not visible in this layout")
        ca, cb = centroid(state.masks[a]), centroid(state.masks[b])
        return _place(_place(state, a, 1.0, cb, op), b, 1.0, ca, op)
    if isinstance(op, Box):
        k = _index(state, op.name, op)
        x0, y0, x1, y1 = (
            (op.x0 * width, op.y0 * height, op.x1 * width, op.y1 * height)
            if op.fraction
            else (op.x0, op.y0, op.x1, op.y1)
        )
        bounds = bounding_box(state.masks[k])
        if bounds is None:
            raise UserError(f"{op.text}: {state.names[k]!r} is not visible in this layout")
        bx0, by0, bx1, by1 = bounds
        sx, sy = (x1 - x0) / (bx1 - bx0), (y1 - y0) / (by1 - by0)
        if min(sx, sy) <= 0:
            raise UserError(f"{op.text}: the box needs x0 < x1 and y0 < y1")
        # The bounding box's centre goes to the box's centre.
        centre = ((bx0 + bx1) / 2, (by0 + by1) / 2)
        factor: float | tuple[float, float] = (sx, sy) if op.stretch else min(sx, sy)
        return _place(state, k, factor, ((x0 + x1) / 2, (y0 + y1) / 2), op, centre=centre)
    if isinstance(op, ToFront):
        k = _index(state, op.name, op)
        return replace(state, order=(*(i for i in state.order if i != k), k))
    raise TypeError(f"not a layout operation: {op!r}")


def apply_operations(
    labels: np.ndarray,
    names: Sequence[str],
    operations: Sequence[Operation],
    state: ObjectState | None = None,
) -> tuple[np.ndarray, ObjectState]:
    """Apply operations to a label grid (or to a `state` carried over from earlier steps).

    Args:
        labels: (H, W) label grid in the scene's coding (used when `state` is None).
        names: the K object names, label order.
        operations: applied one after another.
        state: the objects' state after earlier operations (keeps parts a step hid).

    Returns:
        The new (H, W) int16 label grid and the state behind it.

    Raises:
        UserError: an operation names an unknown object, pushes one out of the frame, or
            leaves an object hidden behind the others.
    """
    state = state if state is not None else ObjectState.from_labels(labels, names)
    for op in operations:
        state = apply_operation(state, op)
    grid = state.labels()
    counts = np.bincount(grid.ravel(), minlength=len(names) + 1)
    for k, name in enumerate(state.names):
        if counts[k] == 0:
            what = " ".join(op.text for op in operations)
            raise UserError(
                f"{name} would be hidden behind the other objects after {what}; "
                f"move it elsewhere or add --to-front {name}"
            )
    return grid, state


def operations_layout(
    scene: Scene, operations: Sequence[Operation | str], base: Layout | None = None
) -> Layout:
    """The layout that `operations` (objects, or strings such as `"move cat=+40,-10"`) make
    from `base` (default: the source's masks). The Layout keeps `base`'s path."""
    from layoutedit.scenes.scene import Layout

    ops = [parse_step(op) if isinstance(op, str) else op for op in operations]
    start = base.labels if base is not None else scene.labels
    grid, _ = apply_operations(start, scene.names, ops)
    return Layout(path=base.path if base is not None else None, labels=grid, exact=base is None)
