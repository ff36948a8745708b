"""What the page shows for one tab's state: every event of the app answers with `render`'s
tuple, one value per component in `VIEW` order (Gradio updates where a component keeps some
of its own settings). Images go out as files named by their content (`SessionFiles.shown`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layoutedit.errors import UserError
from layoutedit.serve import wording
from layoutedit.serve.box_edits import object_rects
from layoutedit.serve.boxes import upscale_labels
from layoutedit.serve.session import SessionState, enlarge, sorted_candidates

if TYPE_CHECKING:
    from layoutedit.serve.actions import ServeContext

PREVIEW_SIDE = 320  # px: small scenes are shown enlarged (nearest)
HISTORY_SIDE = 96  # px: the history strip's pictures

VIEW = (
    "state",
    "details",
    "status",
    "objects",
    "picked",
    "boxes",
    "preview",
    "painter",
    "compare",
    "candidates",
    "history",
)
"""The components every event updates, in the order `render` returns them."""

WELCOME = (
    "Open a scene (or upload a photo and name its objects), drag the boxes on the picture "
    "to where the objects should go, then Edit."
)


def display_factor(size: tuple[int, int]) -> int:
    """How many times the source is enlarged on the page (whole factor, nearest)."""
    return max(1, -(-PREVIEW_SIDE // max(size)))


def annotator_value(ctx: ServeContext, state: SessionState) -> dict[str, Any] | None:
    """The source enlarged, with each object's box (page pixels) labelled by its name and
    drawn in its layout colour; None without a scene."""
    scene, base = state.scene, state.base
    if scene is None or base is None:
        return None
    factor = display_factor(scene.size)
    boxes = []
    for obj, rect in zip(scene.objects, object_rects(base, state.boxes), strict=True):
        if rect is None:
            continue
        x0, y0, x1, y1 = (round(v * factor) for v in rect)
        boxes.append(
            {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, "label": obj.name, "color": obj.colour}
        )
    image = ctx.files(state).shown(enlarge(scene.image, PREVIEW_SIDE))
    return {"image": image, "boxes": boxes}


def page_rects(value: Any, size: tuple[int, int]) -> dict[str, tuple[float, ...]]:
    """The box editor's boxes, as it sends them (not preprocessed), as object name ->
    rectangle in scene pixels (x0, y0, x1, y1).

    Why not preprocessed: the editor's preprocessing re-encodes its picture into Gradio's
    cache on every release, truncating and rewriting the very file the page may be
    downloading (see `SessionFiles.shown`); only the boxes are needed here. A box's
    coordinates are in its picture's pixels times its `scaleFactor`.
    """
    if not value:
        return {}
    boxes = value.get("boxes") if isinstance(value, dict) else getattr(value, "boxes", None)
    factor = display_factor(size)
    out: dict[str, tuple[float, ...]] = {}
    for box in boxes or []:
        label = str(box.get("label") or "")
        scale = float(box.get("scaleFactor") or 1.0) * factor
        if label and label not in out:
            out[label] = tuple(float(box[key]) / scale for key in ("xmin", "ymin", "xmax", "ymax"))
    return out


def render(ctx: ServeContext, state: SessionState, summary: dict[str, Any]) -> tuple[Any, ...]:
    """The page for `state` after an action whose summary is `summary`."""
    import gradio as gr

    details = {k: v for k, v in summary.items() if k != "message"}
    message = str(summary.get("message") or WELCOME)
    scene = state.scene
    if scene is None:
        return (
            state,
            details,
            message,
            [],
            gr.update(choices=[], value=None),
            None,
            None,
            None,
            None,
            [],
            [],
        )
    files = ctx.files(state)
    try:
        target = state.target()
    except UserError as exc:  # only a base an edit left behind can get here
        message += f" (the layout cannot be drawn: {exc.line()})"
        target = state.base if state.base is not None else scene.labels
    preview = files.shown(upscale_labels(target, scene.palette, PREVIEW_SIDE))
    colours: list[str | tuple[str, float]] = [wording.hex_colour(c) for c in scene.palette]
    painter = gr.update(
        value=preview,
        brush=gr.Brush(colors=colours, default_color=colours[0], color_mode="fixed"),
    )
    source = files.shown(enlarge(scene.image, PREVIEW_SIDE))
    compare = None
    if state.after is not None:
        compare = (source, files.shown(enlarge(state.after, PREVIEW_SIDE)))
    candidates = []
    if state.result is not None:
        candidates = [
            (files.shown(enlarge(c.image, PREVIEW_SIDE)), wording.caption(i + 1, c))
            for i, c in enumerate(sorted_candidates(state.result))
        ]
    history = [(files.shown(enlarge(scene.image, HISTORY_SIDE)), "source")]
    history += [
        (files.shown(enlarge(h.image, HISTORY_SIDE)), f"edit {i + 1} · seed {h.seed}")
        for i, h in enumerate(state.history)
    ]
    names = list(scene.names)
    return (
        state,
        details,
        message,
        wording.object_rows(scene),
        gr.update(choices=names, value=names[state.selected]),
        annotator_value(ctx, state),
        preview,
        painter,
        compare,
        candidates,
        history,
    )
