"""What the app's buttons do, without Gradio: each action takes the shared `ServeContext`, the
tab's `SessionState` and plain values, changes the state and returns a JSON-ready summary.

Work on the model (opening a scene checks it against the model, learning, editing) runs
inside `JobGate.job`, one job at a time. Every user mistake is a `UserError`; the Gradio
wiring (`layoutedit.serve.ui`) shows its line. Nothing here reads a file outside the root
folder or the tab's own folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from layoutedit.errors import UserError
from layoutedit.scenes.label_map import BACKGROUND
from layoutedit.serve.boxes import ObjectBox, labels_from_painting
from layoutedit.serve.jobs import JobGate
from layoutedit.serve.safety import is_scene_folder, resolve_under
from layoutedit.serve.session import SessionFiles, SessionState, sorted_candidates
from layoutedit.serve.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, read_upload

if TYPE_CHECKING:
    from layoutedit.editor import Editor

MAX_SEEDS = 8  # seeds per edit: bounds one request's work


@dataclass
class ServeContext:
    """What every tab shares: the editor (one model), the job gate and the folders."""

    editor: Editor
    root: Path
    """Scenes are read from under this folder only."""
    work_root: Path
    """Each tab's uploads and downloads go in a folder of its own under this one."""
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_upload_pixels: int = MAX_UPLOAD_PIXELS
    gate: JobGate = field(init=False)

    def __post_init__(self) -> None:
        self.gate = JobGate(self.editor.cancel)

    def files(self, state: SessionState) -> SessionFiles:
        """The tab's own folder."""
        return SessionFiles(self.work_root, state.id)


def _scene_summary(state: SessionState) -> dict[str, Any]:
    scene = state.scene
    assert scene is not None
    return {
        "scene": state.scene_name,
        "size": list(scene.size),
        "objects": [
            {"name": o.name, "colour": list(o.colour), "share": round(o.share, 4)}
            for o in scene.objects
        ],
        "prompt": scene.prompt,
    }


def open_scene(ctx: ServeContext, state: SessionState, name: str) -> dict[str, Any]:
    """Open the scene folder `name` (relative to the root)."""
    folder = resolve_under(ctx.root, name)
    if not folder.is_dir() or not is_scene_folder(folder):
        raise UserError(f"{name!r} is not a scene folder (mask.png and semantic_dict.json)")
    with ctx.gate.job(state.id):
        scene = ctx.editor.scene(folder)
    state.set_scene(name, scene)
    return _scene_summary(state)


def open_upload(
    ctx: ServeContext, state: SessionState, upload: Path, objects: str
) -> dict[str, Any]:
    """Mask an uploaded photo by colour clusters and open it as a scene of the tab."""
    from layoutedit.masking import mask_scene
    from layoutedit.masking.naming import parse_objects

    names = parse_objects(objects)
    image = read_upload(upload, max_bytes=ctx.max_upload_bytes, max_pixels=ctx.max_upload_pixels)
    state.uploads += 1
    folder = ctx.files(state).path(f"upload-{state.uploads}")
    mask_scene(image, names, folder, overwrite=True)
    with ctx.gate.job(state.id):
        scene = ctx.editor.scene(folder)
    state.set_scene(f"upload {state.uploads}", scene)
    return _scene_summary(state)


def object_index(state: SessionState, name: str) -> int:
    """Index of the object called `name` in the tab's scene."""
    if state.scene is None:
        raise UserError("open a scene or upload a photo first")
    if name in state.scene.names:
        return state.scene.names.index(name)
    raise UserError(f"the scene has no object {name!r}; it has {', '.join(state.scene.names)}")


def rename(ctx: ServeContext, state: SessionState, old: str, new: str) -> dict[str, Any]:
    """Rename an object (its token and so its concept change: learn again after)."""
    from layoutedit.scenes.scene import scene_from_arrays

    k = object_index(state, old)
    scene = state.scene
    assert scene is not None
    new = new.strip()
    if not new or new.lower() == BACKGROUND:
        raise UserError("a new name must be non-empty and not `background`")
    names = list(scene.names)
    names[k] = new
    renamed = scene_from_arrays(
        scene.image,
        scene.labels,
        names,
        [o.colour for o in scene.objects],
        scene.background_colour,
        ctx.editor.settings.scene,
        image_path=scene.image_path,
        mask_path=scene.mask_path,
        labels_path=scene.labels_path,
    )
    state.scene, state.result = renamed, None
    return _scene_summary(state)


def _stop_if_cancelled(gate: JobGate) -> None:
    from layoutedit.editor import Cancelled

    if gate.stop_requested:
        raise Cancelled("cancelled")


class _LearnProgress:
    """A `ProgressHook` that forwards (done, total, text) to a callback and stops the
    learning when the tab cancelled it."""

    def __init__(self, report: Callable[[int, int, str], None] | None, gate: JobGate) -> None:
        self.report, self.gate, self.name, self.total, self.done = report, gate, "", 0, 0

    def stage(self, name: str, total: int, done: int) -> None:
        """A stage starts."""
        self.name, self.total, self.done = name, total, done
        _stop_if_cancelled(self.gate)

    def step(self, loss: float) -> None:
        """One step done."""
        self.done += 1
        if self.report is not None:
            self.report(self.done, self.total, f"{self.name}: loss {loss:.4f}")
        _stop_if_cancelled(self.gate)


def learn(
    ctx: ServeContext,
    state: SessionState,
    report: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Learn the tab's scene (at once when cached). `report(done, total, text)` per step."""
    from layoutedit.editor import Cancelled

    if state.scene is None:
        raise UserError("open a scene or upload a photo first")
    began = time.perf_counter()
    with ctx.gate.job(state.id):
        try:
            obtained = ctx.editor.obtain(state.scene, progress=_LearnProgress(report, ctx.gate))
        except Cancelled:
            return {"learned": False, "cancelled": True}
    return {
        "learned": True,
        "cached": obtained.cached,
        "concept": obtained.key[:12],
        "seconds": round(time.perf_counter() - began, 2),
    }


def set_box(state: SessionState, name: str, cx: float, cy: float, scale: float) -> dict[str, Any]:
    """Move object `name`'s box (centre as fractions of the image, linear scale)."""
    k = object_index(state, name)
    previous = list(state.boxes)
    state.boxes[k] = ObjectBox(float(cx), float(cy), float(scale))
    state.painted = None
    try:
        state.target()  # refuse a box that pushes the object out of the frame
    except UserError:
        state.boxes = previous
        raise
    return {"boxes": {n: vars(b) for n, b in zip(state.scene.names, state.boxes, strict=True)}}  # type: ignore[union-attr]


def use_painting(state: SessionState, painted: np.ndarray) -> dict[str, Any]:
    """Take a painted map (the layout preview painted in the objects' colours) as the target."""
    from layoutedit.scenes.scene import layout_from_labels

    if state.scene is None:
        raise UserError("open a scene or upload a photo first")
    labels = labels_from_painting(painted, state.scene.palette, state.scene.size)
    layout_from_labels(labels, state.scene)  # every object must still be there
    state.painted = labels
    return {"painted": True}


def parse_seeds(text: str) -> list[int]:
    """`"0, 8,88"` -> [0, 8, 88]; at most MAX_SEEDS distinct non-negative integers."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        seeds = list(dict.fromkeys(int(p) for p in parts))
    except ValueError:
        raise UserError(f"seeds are whole numbers separated by commas, not {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(seeds) > MAX_SEEDS:
        raise UserError(f"give 1 to {MAX_SEEDS} non-negative seeds, e.g. 0,8,88")
    return seeds


def edit(
    ctx: ServeContext,
    state: SessionState,
    seeds: str,
    report: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Edit the tab's scene to its target layout, once per seed (learning first if needed)."""
    from layoutedit.editor import Cancelled

    chosen = parse_seeds(seeds)
    target = state.target()
    scene = state.scene
    assert scene is not None

    def on_progress(what: str, done: int, total: int) -> None:
        if report is not None and what == "steps":
            report(done, total, f"sampling step {done}/{total}")
        _stop_if_cancelled(ctx.gate)

    with ctx.gate.job(state.id):
        try:
            outcome = ctx.editor.edit(scene, target, seeds=chosen, progress=on_progress)
        except Cancelled:
            return {"edited": False, "cancelled": True}
    state.result = outcome
    state.edits += 1
    from layoutedit.serve.session import HistoryItem

    best = outcome.best()
    state.history.append(
        HistoryItem(best.image, outcome.layout.labels, best.seed, best.loss, best.seconds)
    )
    return {
        "edited": True,
        "edit": state.edits,
        "candidates": [
            {"seed": c.seed, "loss": round(c.loss, 5), "seconds": round(c.seconds, 2)}
            for c in sorted_candidates(outcome)
        ],
        "reused_session": outcome.reused_session,
        "inversion_unet_evaluations": outcome.unet_evaluations.get("inversion", {}).get("total", 0),
        "concept": (outcome.concept_id or "")[:12],
        "seconds": round(outcome.seconds, 2),
    }


def continue_from(state: SessionState, index: int) -> dict[str, Any]:
    """Continue from candidate `index` (0 = best) of the last edit."""
    if state.result is None:
        raise UserError("edit first, then continue from a result")
    ranked = sorted_candidates(state.result)
    if not 0 <= int(index) < len(ranked):
        raise UserError(f"no candidate {int(index) + 1} in the last edit")
    chosen = ranked[int(index)]
    state.continue_from()
    last = state.history[-1]
    last.image, last.seed, last.loss, last.seconds = (
        chosen.image,
        chosen.seed,
        chosen.loss,
        chosen.seconds,
    )
    return {"continued": True, "seed": chosen.seed, "history": len(state.history)}


def downloads(ctx: ServeContext, state: SessionState) -> list[Path]:
    """The last edit's files: best image, layout map, contact sheet, and the history GIF."""
    if state.result is None or state.scene is None:
        raise UserError("edit first: there is nothing to download yet")
    files = ctx.files(state)
    paths = state.result.save(files.path(f"edit-{state.edits}"), layout_png=True)
    gif = files.history_gif(state.scene.image, state.history)
    return [paths["best"], paths["layout"], paths["sheet"], gif]
