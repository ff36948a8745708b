"""Edit scripts: a sequence of layouts for one scene, run with one learn and one inversion.

A script is a TOML file (`layoutedit run script.toml`); paths in it are relative to it:

    scene = "scene"                # a scene folder
    out = "run-out"                # optional; default ./layoutedit-out/<script name>
    preset = "fast"                # optional, as --preset
    seeds = [0]                    # optional; default the preset's edit seeds

    [edit]                         # optional settings, as in a --config file
    steps = 25

    [[step]]                       # a layout file ...
    layout = "scene/target_layout/layout1.png"

    [[step]]                       # ... or operations on the previous step's layout
    move = ["cat=+40,-10"]
    scale = ["pot=0.8"]

    [[step]]                       # ... in the order given, with `ops`
    ops = ["swap plant,pot", "to-front cat"]

A step with `layout` and operations applies them to that file. The first step's operations
start from the source's masks; every later step's from the previous step's layout, with the
parts of objects a step hid kept (`layout_edits.ObjectState`).

`load_script` checks the whole script (keys, files, every step's operations) before any
model work; a bad step is a `UserError` naming its number. `run_script` then learns the
scene once, inverts it once, and edits every step, writing

    step-01/ ... step-NN/    what `edit` writes per layout (+ layout.png)
    summary.json             per step: the layout, best seed and loss, seconds, UNet evaluations
    sheet.png                the source and every step's layout and best edit
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from layoutedit.config import Settings, read_toml, resolve_settings
from layoutedit.editing.sharding import Shard
from layoutedit.errors import UserError
from layoutedit.output_guard import OutputStage, check_name
from layoutedit.scenes.layout_edits import (
    FLAG_ORDER,
    ObjectState,
    Operation,
    apply_operations,
    parse_operation,
    parse_step,
)
from layoutedit.scenes.scene import Layout, Scene, load_layout, load_scene

if TYPE_CHECKING:
    from layoutedit.editor import Editor, EditOutcome
    from layoutedit.learning.concept_store import ObtainedConcept
    from layoutedit.learning.training import ProgressHook

SUMMARY_FILE = "summary.json"
MAX_FRAMES = 1000
"""In-between frames per step: more is a typo (each frame is a whole edit)."""
SHEET_FILE = "sheet.png"
_TOP_KEYS = {"scene", "out", "preset", "seeds", "frames", "step", "scene_options", "learn", "edit"}
_STEP_KEYS = {"layout", "ops", "name", *(k.replace("-", "_") for k in FLAG_ORDER)}


@dataclass(frozen=True)
class ScriptStep:
    """One step: its layout and how it was made."""

    number: int
    """1-based."""
    name: str
    """Output folder name, `step-01` (or `step-01-<name>` when the step names itself)."""
    layout: Layout
    operations: tuple[Operation, ...]
    source: str
    """What the step said: a layout file and/or its operations, as typed."""
    state: ObjectState
    """The objects after this step (full masks and draw order), for in-between frames."""


@dataclass(frozen=True)
class Script:
    """A checked edit script."""

    path: Path
    scene_dir: Path
    out: Path
    settings: Settings
    steps: tuple[ScriptStep, ...]
    scene: Scene
    """The scene as read without a model (the run reads it again against the model)."""
    frames: int = 0
    """In-between frames per step for an animation (0: no animation)."""


def _strings(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UserError(f"{where}: `{key}` must be a string or a list of strings")


def step_operations(table: dict[str, Any], where: str) -> list[Operation]:
    """The operations of one step table (`move`, `scale`, `swap`, `box`, `to_front`, `ops`):
    flag keys in the CLI's order, then `ops` in the order given. Also read by batch
    manifests, whose edits take a step's keys.

    Raises:
        UserError: a value that is not a string or a list of strings, or a bad operation.
    """
    ops: list[Operation] = []
    for kind in FLAG_ORDER:  # flag keys in the CLI's order, then `ops` in the given order
        key = kind.replace("-", "_")
        for text in _strings(table.get(key, []), where, key):
            ops.append(parse_operation(kind, text))
    ops.extend(parse_step(text) for text in _strings(table.get("ops", []), where, "ops"))
    return ops


def _in_step(number: int, exc: UserError, path: Path) -> UserError:
    line = exc.line()
    prefix = f"step {number}: "
    return UserError(line if line.startswith(prefix) else prefix + line, path=path)


def _table(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    """The TOML table `data[key]` (empty when absent); UserError naming the key otherwise."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UserError(
            f"`{key}` must be a table ([{key}] with `name = value` lines), got {value!r}",
            path=path,
        )
    return dict(value)


def load_script(
    path: Path, *, model: str | None = None, preset: str | None = None, frames: int | None = None
) -> Script:
    """Read and check a whole edit script, without a model.

    Args:
        path: the TOML file.
        model: the `--model` value (picks the default preset).
        preset: a `--preset` that overrides the script's.
        frames: a `--frames` that overrides the script's `frames`.

    Raises:
        UserError: a bad key or value, a missing file, or a step whose layout or operations
            fail (`script.toml: step 3: pot pushed out of frame by --move pot=+900,+0`).
    """
    path = Path(path)
    data = read_toml(path, what="edit script")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise UserError(
            f"unknown key {unknown[0]!r} in the edit script; use {', '.join(sorted(_TOP_KEYS))}",
            path=path,
        )
    base = path.parent
    if not isinstance(data.get("scene"), str):
        raise UserError('the edit script needs `scene = "FOLDER"`', path=path)
    scene_dir = base / data["scene"]
    if "out" in data and (not isinstance(data["out"], str) or not data["out"].strip()):
        raise UserError(f"`out` must be a folder name, got {data['out']!r}", path=path)
    out = base / data["out"] if "out" in data else None
    overrides: dict[str, dict[str, Any]] = {
        "scene": _table(data, "scene_options", path),
        "learn": _table(data, "learn", path),
        "edit": _table(data, "edit", path),
    }
    if "seeds" in data:
        overrides["edit"]["seeds"] = data["seeds"]
    if "refinement" in overrides["edit"]:
        from layoutedit.config import normalise_edit_section

        normalise_edit_section(overrides["edit"], path)
    chosen = preset or data.get("preset")
    if chosen is not None and not isinstance(chosen, str):
        raise UserError("`preset` must be a string", path=path)
    try:
        settings = resolve_settings(chosen, None, overrides, model=model)
    except UserError as exc:
        raise UserError(exc.message, path=path) from None
    scene = load_scene(scene_dir, options=settings.scene)
    tables = data.get("step")
    if not isinstance(tables, list) or not tables:
        raise UserError("the edit script has no [[step]] tables", path=path)

    steps: list[ScriptStep] = []
    labels, state = scene.labels, ObjectState.from_labels(scene.labels, scene.names)
    exact = True  # only operations from the source's masks so far: exact shapes
    for number, table in enumerate(tables, start=1):
        where = f"step {number}"
        try:
            if not isinstance(table, dict):
                raise UserError("must be a table ([[step]])")
            bad = sorted(set(table) - _STEP_KEYS)
            if bad:
                raise UserError(f"unknown key {bad[0]!r}; use {', '.join(sorted(_STEP_KEYS))}")
            ops = step_operations(table, where)
            file: Path | None = None
            if "layout" in table:
                if not isinstance(table["layout"], str):
                    raise UserError("`layout` must be a file name")
                file = base / table["layout"]
                if not file.is_file():
                    raise UserError("layout not found", path=file)
                loaded = load_layout(file, scene, settings.scene)
                labels, exact = loaded.labels, False
                state = ObjectState.from_labels(labels, scene.names)
            elif not ops:
                raise UserError("give a `layout` file or operations (move, scale, swap, ...)")
            if ops:
                labels, state = apply_operations(labels, scene.names, ops, state=state)
        except UserError as exc:
            raise _in_step(number, exc, path) from None
        label = table.get("name")
        if label is not None and not isinstance(label, str):
            raise _in_step(number, UserError("`name` must be a string"), path)
        name = f"step-{number:02d}" + (f"-{label}" if label else "")
        try:  # the step's output folder: one name under `out`, never a path out of it
            check_name(name, "step name")
        except UserError as exc:
            raise _in_step(number, exc, path) from None
        said = " ".join([*([str(file)] if file else []), *(op.text for op in ops)])
        layout = Layout(file, labels.copy(), exact=exact)
        steps.append(ScriptStep(number, name, layout, tuple(ops), said, state))
    if out is None:
        out = Path("layoutedit-out") / path.stem
    frames = data.get("frames", 0) if frames is None else frames
    if not isinstance(frames, int) or isinstance(frames, bool) or not 0 <= frames <= MAX_FRAMES:
        raise UserError(f"`frames` must be a whole number from 0 to {MAX_FRAMES}", path=path)
    return Script(path, scene_dir, out, settings, tuple(steps), scene, frames)


def _record(step: ScriptStep, result: EditOutcome, folder: Path) -> dict[str, Any]:
    best = result.best()
    return {
        "step": step.number,
        "folder": str(folder),
        "layout": step.source,
        "operations": [op.text for op in step.operations],
        "best_seed": best.seed,
        "best_loss": round(best.loss, 6),
        "seconds": round(result.seconds, 3),
        "reused_session": result.reused_session,
        "unet_evaluations": result.unet_evaluations,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }


def sequence_sheet(
    scene: Scene, steps: Sequence[ScriptStep], images: Sequence[np.ndarray]
) -> np.ndarray:
    """(H, W, 3) uint8: row 1 the source mask and every step's layout, row 2 the source and
    every step's best edit."""
    from PIL import Image, ImageDraw, ImageFont

    from layoutedit.editing.outputs import colour_labels

    tile, caption, gap = 160, 16, 6

    def cell(image: np.ndarray, text: str, nearest: bool) -> Image.Image:
        out = Image.new("RGB", (tile, tile + caption), (255, 255, 255))
        resample = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
        out.paste(Image.fromarray(image).resize((tile, tile), resample), (0, 0))
        ImageDraw.Draw(out).text((2, tile + 2), text, fill=(0, 0, 0), font=ImageFont.load_default())
        return out

    top = [cell(colour_labels(scene.labels, scene.palette), "source mask", True)]
    top += [cell(colour_labels(s.layout.labels, scene.palette), s.name, True) for s in steps]
    bottom = [cell(scene.image, "source", False)]
    bottom += [cell(img, f"{s.name} edit", False) for s, img in zip(steps, images, strict=True)]
    width = len(top) * (tile + gap) + gap
    sheet = Image.new("RGB", (width, 2 * (tile + caption + gap) + gap), (255, 255, 255))
    for row, cells in enumerate((top, bottom)):
        for col, c in enumerate(cells):
            sheet.paste(c, (gap + col * (tile + gap), gap + row * (tile + caption + gap)))
    return np.asarray(sheet)


def _learned(obtained: ObtainedConcept | None, seconds: float) -> dict[str, Any] | None:
    """The summary's `learn` record: key, whether cached, seconds and UNet evaluations spent
    by this run (none when the concept came from the cache)."""
    if obtained is None:
        return None
    return {
        "key": obtained.key,
        "cached": obtained.cached,
        "seconds": round(seconds, 3),
        "unet_evaluations": {} if obtained.cached else obtained.concept.meta.get("unet_evals"),
    }


def _prepare(
    script: Script, editor: Editor, learn_progress: ProgressHook | None
) -> tuple[Scene, dict[str, Any] | None]:
    """The scene read against the model, and its concept learned or found (once)."""
    scene = editor.scene(script.scene_dir)
    began = time.perf_counter()
    use_concept = script.settings.edit.use_concept
    obtained = editor.obtain(scene, progress=learn_progress) if use_concept else None
    return scene, _learned(obtained, time.perf_counter() - began)


def _partial(shard: Shard, key: str, records: list[dict[str, Any]], began: float) -> dict[str, Any]:
    """What a process other than rank 0 returns: its own records."""
    return {
        "rank": shard.rank,
        "partial": True,
        key: records,
        "seconds": round(time.perf_counter() - began, 3),
    }


def _stage(script: Script, overwrite: bool) -> OutputStage:
    """This process's staging folder for `script.out` (`layoutedit.output_guard`)."""
    return OutputStage(script.out, overwrite=overwrite)


def _finish(
    stage: OutputStage, shard: Shard, records: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """Every process's records on rank 0, with the other processes' staged files moved into
    rank 0's staging folder; None on the other ranks, whose staging folder rank 0 takes over
    (they leave it in place)."""
    gathered = shard.gather((str(stage.path), records))
    if gathered is None:
        return None
    for other, _ in gathered[1:]:
        stage.adopt(Path(other))
    return [r for _, part in gathered for r in part]


def run_script(
    script: Script,
    editor: Editor,
    *,
    learn_progress: ProgressHook | None = None,
    on_step: Callable[[ScriptStep, dict[str, Any]], None] | None = None,
    shard: Shard | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run a checked script with `editor` (made with `script.settings`).

    Args:
        script: from `load_script`.
        editor: the editor (its model, concepts and inversions are reused).
        learn_progress: progress of learning the scene (when it is not cached).
        on_step: called after each step this process runs, with the step and its record.
        shard: this process's share of the steps (`layoutedit.editing.sharding`); default all.
        overwrite: `script.out` may hold files layoutedit did not write (the caller has
            checked it with `output_guard.check_output` before any work).

    Returns:
        The summary (also written to `summary.json`); on a process other than rank 0, only
        its own step records (`partial: True`). Every file is staged and moved into
        `script.out` at the end (by rank 0): an error or an interrupt leaves it as it was.
    """
    from layoutedit.atomic import write_json_atomic, write_png_atomic
    from layoutedit.editing.outputs import seed_file

    shard = shard or Shard()
    began = time.perf_counter()
    scene, learned = _prepare(script, editor, learn_progress)
    stage = _stage(script, overwrite)
    try:
        records = []
        for index in shard.mine(len(script.steps)):
            step = script.steps[index]
            result = editor.edit(scene, step.layout)
            result.operations = tuple(op.text for op in step.operations)
            result.save(stage.unit(step.name), best=script.settings.edit.best, layout_png=True)
            record = _record(step, result, script.out / step.name)
            records.append(record)
            if on_step is not None:
                on_step(step, record)
        gathered = _finish(stage, shard, records)
        if gathered is None:
            return _partial(shard, "steps", records, began)
        records = sorted(gathered, key=lambda r: r["step"])
        images = [
            read_rgb(stage.staged(Path(r["folder"])) / seed_file(r["best_seed"])) for r in records
        ]
        write_png_atomic(stage.path / SHEET_FILE, sequence_sheet(scene, script.steps, images))
        summary = {
            "script": str(script.path),
            "scene": str(script.scene_dir),
            "out": str(script.out),
            "sheet": str(script.out / SHEET_FILE),
            "processes": shard.world,
            "learn": learned,
            "steps": records,
            "seconds": round(time.perf_counter() - began, 3),
        }
        write_json_atomic(stage.path / SUMMARY_FILE, summary)
        stage.commit()
    except BaseException:
        stage.discard()
        raise
    return summary


def run_animation(
    script: Script,
    editor: Editor,
    *,
    learn_progress: ProgressHook | None = None,
    on_frame: Callable[[int, int, dict[str, Any]], None] | None = None,
    shard: Shard | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Animate a checked script: `script.frames` in-between layouts per step (from the
    source's masks to step 1, then step to step), each edited with the first seed.

    Writes `OUT/animation/frame-001.png ...`, `animation.gif` (and `.mp4` with
    imageio-ffmpeg), `sheet.png` (the steps' keyframes) and `summary.json` with the flicker
    figures (`layoutedit.editing.animation.flicker`), all staged and moved into OUT at the
    end, as `run_script` does: an interrupted animation leaves no frames behind.

    Args:
        script, editor, learn_progress, shard, overwrite: as for `run_script` (a shard
            splits frames).
        on_frame: called after each frame with (frame number, frame count, its record).
    """
    from layoutedit.atomic import write_json_atomic, write_png_atomic
    from layoutedit.editing.animation import flicker, frame_file, in_between, write_animation

    shard = shard or Shard()
    began = time.perf_counter()
    scene, learned = _prepare(script, editor, learn_progress)
    grids: list[np.ndarray] = []
    previous = ObjectState.from_labels(scene.labels, scene.names)
    for step in script.steps:
        grids.extend(in_between(previous, step.state, script.frames))
        previous = step.state
    seed = script.settings.edit.seeds[0]
    stage = _stage(script, overwrite)
    try:
        folder = stage.unit("animation")
        records: list[dict[str, Any]] = []
        for index in shard.mine(len(grids)):
            result = editor.edit(scene, Layout(None, grids[index]), seeds=[seed])
            write_png_atomic(folder / frame_file(index + 1), result.best().image)
            record = {
                "frame": index + 1,
                "seed": seed,
                "loss": round(result.best().loss, 6),
                "seconds": round(result.seconds, 3),
                "unet_evaluations": result.unet_evaluations,
            }
            records.append(record)
            if on_frame is not None:
                on_frame(index + 1, len(grids), record)
        gathered = _finish(stage, shard, records)
        if gathered is None:
            return _partial(shard, "frames", records, began)
        records = sorted(gathered, key=lambda r: r["frame"])
        images = [read_rgb(folder / frame_file(n)) for n in range(1, len(grids) + 1)]
        files = write_animation(images, folder, pngs=False)
        keyframes = [images[script.frames * i - 1] for i in range(1, len(script.steps) + 1)]
        write_png_atomic(stage.path / SHEET_FILE, sequence_sheet(scene, script.steps, keyframes))
        summary = {
            "script": str(script.path),
            "scene": str(script.scene_dir),
            "out": str(script.out),
            "sheet": str(script.out / SHEET_FILE),
            "files": {k: str(stage.final(v)) for k, v in files.items()},
            "processes": shard.world,
            "learn": learned,
            "frames": records,
            "flicker": flicker(images, grids, scene.names),
            "seconds": round(time.perf_counter() - began, 3),
        }
        write_json_atomic(stage.path / SUMMARY_FILE, summary)
        stage.commit()
    except BaseException:
        stage.discard()
        raise
    return summary


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of a PNG this run wrote."""
    from PIL import Image

    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))
