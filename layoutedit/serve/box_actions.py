"""What the box and painting controls do, without Gradio: drag, resize, nudge, pick, undo,
redo, reset, set a box by numbers, use a painted layout. Each action changes the tab's
`SessionState` and returns a JSON-ready summary with a `message` sentence, like
`layoutedit.serve.actions`; every change can be undone. A change that would push an object
out of the frame (or hide it) is refused with a `UserError` and leaves the boxes as they
were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from layoutedit.errors import UserError
from layoutedit.serve import wording
from layoutedit.serve.box_edits import Rect, Snapshot, box_from_rect, nudged
from layoutedit.serve.boxes import ObjectBox, boxes_of, labels_from_painting
from layoutedit.serve.session import SessionState


def _scene_of(state: SessionState) -> tuple[Any, np.ndarray]:
    if state.scene is None or state.base is None:
        raise UserError("open a scene or upload a photo first")
    return state.scene, state.base


def _boxes_summary(state: SessionState, message: str) -> dict[str, Any]:
    assert state.scene is not None
    return {
        "message": message,
        "boxes": {n: vars(b) for n, b in zip(state.scene.names, state.boxes, strict=True)},
        "selected": state.scene.names[state.selected],
        "can_undo": bool(state.changes.undo),
        "can_redo": bool(state.changes.redo),
    }


def _apply(state: SessionState, boxes: list[ObjectBox]) -> None:
    """Make `boxes` the tab's boxes (undoable), or refuse them and keep the old ones."""
    before = state.snapshot()
    state.boxes, state.painted = boxes, None
    try:
        state.target()  # refuses a box that pushes its object out of the frame or hides it
    except UserError:
        state.restore(before)
        raise
    state.changes.record(before)


def object_index(state: SessionState, name: str) -> int:
    """Index of the object called `name` in the tab's scene."""
    scene, _ = _scene_of(state)
    if name in scene.names:
        return int(scene.names.index(name))
    raise UserError(f"the scene has no object {name!r}; it has {', '.join(scene.names)}")


def set_box(state: SessionState, name: str, cx: float, cy: float, scale: float) -> dict[str, Any]:
    """Move object `name`'s box: centre as fractions of the image, linear scale."""
    k = object_index(state, name)
    boxes = list(state.boxes)
    boxes[k] = ObjectBox.scaled(float(cx), float(cy), float(scale))
    _apply(state, boxes)
    state.selected = k
    return _boxes_summary(state, wording.moved(name, boxes[k]))


def move_rects(
    state: SessionState,
    rects: Mapping[str, Rect],
    *,
    keep_proportions: bool = True,
    tolerance: float = 0.5,
) -> dict[str, Any] | None:
    """The boxes as the page has them after a drag: object name -> rectangle (scene px).

    Names the scene lacks are ignored (a box drawn anew) and objects left out keep their box
    (a box deleted on the page), so the page can only move and resize.

    Returns:
        The summary, or None when no box changed (a click, or the page showing the state).
    """
    scene, base = _scene_of(state)
    boxes = list(state.boxes)
    changed: list[int] = []
    for k, name in enumerate(scene.names):
        if name not in rects:
            continue
        new = box_from_rect(
            base, k, rects[name], boxes[k], keep_proportions=keep_proportions, tolerance=tolerance
        )
        if new != boxes[k]:
            boxes[k] = new
            changed.append(k)
    if not changed:
        return None
    _apply(state, boxes)
    state.selected = changed[-1]
    if len(changed) == 1:
        message = wording.moved(scene.names[changed[0]], boxes[changed[0]])
    else:
        message = f"Moved {wording.listing([scene.names[k] for k in changed])}. Edit when ready."
    return _boxes_summary(state, message)


def select(state: SessionState, name: str) -> dict[str, Any]:
    """Pick the object the arrow keys move."""
    state.selected = object_index(state, name)
    return _boxes_summary(state, f"{name} picked: the arrow keys nudge its box.")


def nudge(state: SessionState, dx: int, dy: int) -> dict[str, Any]:
    """Move the picked object's box by (dx, dy) arrow steps (right and down positive)."""
    scene, _ = _scene_of(state)
    k = state.selected
    boxes = list(state.boxes)
    boxes[k] = nudged(boxes[k], int(dx), int(dy), scene.size)
    _apply(state, boxes)
    return _boxes_summary(state, wording.moved(scene.names[k], boxes[k]))


def undo(state: SessionState) -> dict[str, Any]:
    """Back to the boxes (or painting) before the last change."""
    return _travel(state, state.changes.back, "undo", "Undone.")


def redo(state: SessionState) -> dict[str, Any]:
    """Forward again to the change undo took back."""
    return _travel(state, state.changes.forward, "redo", "Redone.")


def _travel(
    state: SessionState, step: Callable[[Snapshot], Snapshot | None], verb: str, done: str
) -> dict[str, Any]:
    """One step through the change history (`step` takes the present, gives the other)."""
    _scene_of(state)
    other = step(state.snapshot())
    if other is None:
        raise UserError(f"nothing to {verb}")
    state.restore(other)
    return _boxes_summary(state, done)


def reset(state: SessionState) -> dict[str, Any]:
    """Every box back where its object is in the base layout (undo brings them back)."""
    scene, base = _scene_of(state)
    _apply(state, boxes_of(base, len(scene.objects)))
    return _boxes_summary(state, "Every box is back where its object is.")


def use_painting(state: SessionState, painted: np.ndarray) -> dict[str, Any]:
    """Take a painted map (the layout preview painted in the objects' colours) as the target."""
    from layoutedit.scenes.scene import layout_from_labels

    scene, _ = _scene_of(state)
    labels = labels_from_painting(painted, scene.palette, scene.size)
    layout_from_labels(labels, scene)  # every object must still be there
    before = state.snapshot()
    state.painted = labels
    state.changes.record(before)
    return {
        "message": "The painted layout is the target now (moving a box goes back to boxes).",
        "painted": True,
    }
