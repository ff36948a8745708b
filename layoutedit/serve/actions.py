"""What the app's buttons do, without Gradio: each action takes the shared `ServeContext`, the
tab's `SessionState` and plain values, changes the state and returns a JSON-ready summary
whose `message` is the sentence the page shows (`layoutedit.serve.wording`). Moving boxes
and painting are in `layoutedit.serve.box_actions`.

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

from layoutedit.errors import UserError
from layoutedit.scenes.label_map import BACKGROUND
from layoutedit.serve import wording
from layoutedit.serve.jobs import JobGate
from layoutedit.serve.safety import is_scene_folder, resolve_under
from layoutedit.serve.session import SessionFiles, SessionState, sorted_candidates
from layoutedit.serve.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, read_upload

if TYPE_CHECKING:
    from layoutedit.editing.session import Candidate
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


def _scene_summary(state: SessionState, message: str | None = None) -> dict[str, Any]:
    scene = state.scene
    assert scene is not None
    return {
        "message": message or wording.opened(state.scene_name or "", scene),
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


def rename(ctx: ServeContext, state: SessionState, old: str, new: str) -> dict[str, Any]:
    """Rename an object (its token and so its concept change: learn again after)."""
    from layoutedit.serve.box_actions import object_index

    k = object_index(state, old)
    assert state.scene is not None
    names = list(state.scene.names)
    names[k] = new
    return rename_all(ctx, state, names)


def rename_all(ctx: ServeContext, state: SessionState, names: list[str]) -> dict[str, Any]:
    """Give the objects the names `names` (object order; the objects table edited in place).

    Raises:
        UserError: no scene, a wrong count, an empty, repeated or `background` name.
    """
    from layoutedit.scenes.scene import scene_from_arrays

    scene = state.scene
    if scene is None:
        raise UserError("open a scene or upload a photo first")
    names = [str(n).strip() for n in names]
    if len(names) != len(scene.names):
        raise UserError(f"give {len(scene.names)} names, one per object")
    if any(not n or n.lower() == BACKGROUND for n in names):
        raise UserError("a new name must be non-empty and not `background`")
    if len({n.lower() for n in names}) != len(names):
        raise UserError("two objects cannot have the same name")
    changed = [(a, b) for a, b in zip(scene.names, names, strict=True) if a != b]
    if not changed:
        return _scene_summary(state, "The names are as they were.")
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
    said = wording.listing([f"{a} to {b}" for a, b in changed])
    return _scene_summary(state, f"Renamed {said}; learn again (the words changed).")


def _stop_if_cancelled(gate: JobGate) -> None:
    from layoutedit.editor import Cancelled

    if gate.stop_requested:
        raise Cancelled("cancelled")


Report = Callable[[int, int, str], None]
"""`report(done, total, line)`: a job's progress, `line` a sentence with the time left."""


class _LearnProgress:
    """A `ProgressHook` that reports each stage's progress with the time left and stops the
    learning when the tab cancelled it."""

    def __init__(self, report: Report | None, gate: JobGate, count: int) -> None:
        self.report, self.gate, self.count = report, gate, count
        self.name, self.total, self.done, self.first = "", 0, 0, 0
        self.began, self.stages = time.perf_counter(), 0

    def stage(self, name: str, total: int, done: int) -> None:
        """A stage starts (resumed stages start at `done`)."""
        self.name, self.total, self.done = name, total, done
        self.stages += 1
        self.began, self.first = time.perf_counter(), done
        _stop_if_cancelled(self.gate)

    def step(self, loss: float) -> None:
        """One step done."""
        self.done += 1
        if self.report is not None:
            objects = wording.plural(self.count, "object")
            what = f"learning {objects}, stage {self.stages} ({wording.stage_words(self.name)})"
            # The rate is this run's: a resumed stage's skipped steps took no time now.
            elapsed = time.perf_counter() - self.began
            line = wording.progress_line(
                what, self.done, self.total, elapsed, counted=self.done - self.first
            )
            self.report(self.done, self.total, line)
        _stop_if_cancelled(self.gate)


def learn(ctx: ServeContext, state: SessionState, report: Report | None = None) -> dict[str, Any]:
    """Learn the tab's scene (at once when cached); `report` gets each step's progress."""
    from layoutedit.editor import Cancelled

    if state.scene is None:
        raise UserError("open a scene or upload a photo first")
    count = len(state.scene.objects)
    began = time.perf_counter()
    with ctx.gate.job(state.id):
        try:
            obtained = ctx.editor.obtain(
                state.scene, progress=_LearnProgress(report, ctx.gate, count)
            )
        except Cancelled:
            summary: dict[str, Any] = {"learned": False, "cancelled": True}
            return {"message": wording.learned(summary, count), **summary}
    summary = {
        "learned": True,
        "cached": obtained.cached,
        "concept": obtained.key[:12],
        "seconds": round(time.perf_counter() - began, 2),
    }
    return {"message": wording.learned(summary, count), **summary}


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
    ctx: ServeContext, state: SessionState, seeds: str, report: Report | None = None
) -> dict[str, Any]:
    """Edit the tab's scene to its target layout, once per seed (learning first if needed)."""
    from layoutedit.editor import Cancelled
    from layoutedit.serve.session import HistoryItem

    chosen = parse_seeds(seeds)
    target = state.target()
    scene = state.scene
    assert scene is not None
    began = [0.0]

    def on_progress(what: str, done: int, total: int) -> None:
        if what == "steps":
            if done <= 1:
                began[0] = time.perf_counter()
            if report is not None:
                what_runs = f"editing {wording.plural(len(chosen), 'seed')}"
                elapsed = time.perf_counter() - began[0]
                line = wording.progress_line(what_runs, done, total, elapsed, counted=done - 1)
                report(done, total, line)
        _stop_if_cancelled(ctx.gate)

    learning = _LearnProgress(report, ctx.gate, len(scene.objects))
    with ctx.gate.job(state.id):
        try:
            outcome = ctx.editor.edit(
                scene, target, seeds=chosen, progress=on_progress, learn_progress=learning
            )
        except Cancelled:
            return {"message": "Edit cancelled.", "edited": False, "cancelled": True}
    state.result = outcome
    state.edits += 1
    ranked = sorted_candidates(outcome)
    best = ranked[0]
    state.history.append(
        HistoryItem(best.image, outcome.layout.labels, best.seed, best.loss, best.seconds)
    )
    state.chosen, state.after = 0, best.image
    return {
        "message": wording.edited(state.edits, ranked, outcome.seconds, outcome.reused_session),
        "edited": True,
        "edit": state.edits,
        "candidates": [
            {
                "seed": c.seed,
                "loss": round(c.loss, 5),
                "layout_score": None if c.layout_score is None else round(c.layout_score, 4),
                "seconds": round(c.seconds, 2),
            }
            for c in ranked
        ],
        "reused_session": outcome.reused_session,
        "inversion_unet_evaluations": outcome.unet_evaluations.get("inversion", {}).get("total", 0),
        "concept": (outcome.concept_id or "")[:12],
        "seconds": round(outcome.seconds, 2),
    }


def _candidate(state: SessionState, index: int) -> Candidate:
    if state.result is None:
        raise UserError("edit first, then pick a result")
    ranked = sorted_candidates(state.result)
    if not 0 <= int(index) < len(ranked):
        raise UserError(f"no candidate {int(index) + 1} in the last edit")
    return ranked[int(index)]


def choose(state: SessionState, index: int) -> dict[str, Any]:
    """Show candidate `index` (0 = best) of the last edit before/after."""
    picked = _candidate(state, index)
    state.chosen, state.after = int(index), picked.image
    return {
        "message": f"Showing {wording.caption(int(index) + 1, picked)}.",
        "chosen": int(index),
        "seed": picked.seed,
    }


def continue_from(state: SessionState, index: int | None = None) -> dict[str, Any]:
    """Continue from candidate `index` (default the one shown; 0 = best) of the last edit:
    its layout becomes where the boxes start."""
    index = state.chosen if index is None else int(index)
    picked = _candidate(state, index)
    state.continue_from()
    last = state.history[-1]
    last.image, last.seed, last.loss, last.seconds = (
        picked.image,
        picked.seed,
        picked.loss,
        picked.seconds,
    )
    state.chosen, state.after = index, picked.image
    return {
        "message": f"Continuing from seed {picked.seed}: the boxes start from its layout.",
        "continued": True,
        "seed": picked.seed,
        "history": len(state.history),
    }


def return_to(state: SessionState, index: int) -> dict[str, Any]:
    """Go back to a point of the history strip: 0 is the source, i the i-th edit. Its layout
    becomes where the boxes start (the history itself is kept)."""
    from layoutedit.serve.boxes import boxes_of

    if state.scene is None:
        raise UserError("open a scene or upload a photo first")
    index = int(index)
    if not 0 <= index <= len(state.history):
        raise UserError(f"the history has no point {index}")
    if index == 0:
        state.base, state.after = state.scene.labels.copy(), None
        said = "Back to the source: the boxes start from its layout."
    else:
        item = state.history[index - 1]
        state.base, state.after = item.layout.copy(), item.image
        said = f"Back to edit {index} (seed {item.seed}): the boxes start from its layout."
    state.boxes = boxes_of(state.base, len(state.scene.objects))
    state.painted = None
    state.changes.clear()
    return {"message": said, "returned_to": index}


def downloads(ctx: ServeContext, state: SessionState) -> list[Path]:
    """The last edit's files: best image, layout map, contact sheet, and the history GIF."""
    if state.result is None or state.scene is None:
        raise UserError("edit first: there is nothing to download yet")
    files = ctx.files(state)
    paths = state.result.save(files.path(f"edit-{state.edits}"), layout_png=True)
    gif = files.history_gif(state.scene.image, state.history)
    return [paths["best"], paths["layout"], paths["sheet"], gif]
