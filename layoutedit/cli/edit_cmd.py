"""`layoutedit edit`: rearrange a scene's objects to one or more target layouts.

Thin: parses options and prints; one `layoutedit.Editor` loads the model, the concept and
the source's inversion once, edits every layout and saves each result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from layoutedit.cli.common import (
    AppState,
    ConfigOption,
    ImageOption,
    LabelsOption,
    MaskOption,
    OverwriteOption,
    PresetOption,
    SceneArgument,
    check_cache_writable,
    console,
    err_console,
    scene_notes,
    state,
    user_errors,
)
from layoutedit.cli.progress import learning_progress, seeds_progress
from layoutedit.errors import UserError

if TYPE_CHECKING:
    from layoutedit.config import SceneOptions, Settings
    from layoutedit.editing.sharding import Shard
    from layoutedit.editor import Editor
    from layoutedit.output_guard import OutputStage
    from layoutedit.scenes.layout_edits import Operation
    from layoutedit.scenes.scene import Layout, Scene

HELP = """Move a scene's objects to target layouts; writes one PNG per seed, sheet.png, edit.json.

Example:

  layoutedit edit ./scene --layout ./scene/target_layout/layout1.png --seeds 0,8,88

  layoutedit edit ./scene --concept ./concept --preset fast --best --out ./edits

  layoutedit edit --image photo.jpg --mask mask.png --labels labels.json -l layout.png

  layoutedit edit ./scene --move cat=+40,-10 --scale pot=0.8 --swap plant,pot

Layout operations (--move, --scale, --swap, --box, --to-front; repeatable) apply to the
source's masks, or to each --layout given, in the order box, swap, scale, move, to-front;
the layout they make is written as layout.png next to the edit (OUT/operations/).

Each layout's outputs go to OUT/<layout-stem>/ (OUT defaults to ./layoutedit-out/<scene>,
named after the scene folder, or with --image after the image's folder).
"""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def parse_seeds(text: str | None) -> tuple[int, ...] | None:
    """`"0,8,88"` -> (0, 8, 88); None stays None.

    Raises:
        UserError: not a comma-separated list of integers.
    """
    if text is None:
        return None
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(
            f"--seeds {text!r}: give integers separated by commas, e.g. 0,8,88"
        ) from None
    if not seeds:
        raise UserError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r} repeats a seed")
    return seeds


def layout_files(given: list[Path], scene: Scene) -> list[Path]:
    """Expand --layout values (files or folders of images); default: the scene's layouts.

    Raises:
        UserError: a path that does not exist, an empty folder, no layouts at all, or two
            layouts with the same file stem (their outputs would collide).
    """
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError("layout folder holds no images", path=path)
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise UserError("layout not found", path=path)
    if not given:
        files = list(scene.layout_paths)
    if not files:
        raise UserError(
            "no target layouts: pass --layout FILE (or a folder), or add target_layout/*.png "
            "to the scene folder",
            path=scene.image_path.parent if scene.image_path else None,
        )
    stems = [p.stem for p in files]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise UserError(f"two layouts named {clash[0]!r}: their outputs would overwrite each other")
    return files


def scene_arguments(
    scene_dir: Path | None, image: Path | None, mask: Path | None, labels: Path | None
) -> str:
    """The scene as `layoutedit learn` arguments: `SCENE`, `--image X --mask Y --labels Z`
    or both (files override the folder's), for messages that name the learn command."""
    parts = [str(scene_dir)] if scene_dir is not None else []
    for flag, path in (("--image", image), ("--mask", mask), ("--labels", labels)):
        if path is not None:
            parts.append(f"{flag} {path}")
    return " ".join(parts)


def default_out_root(scene_dir: Path | None, image: Path | None) -> Path:
    """`./layoutedit-out/<name>`: the scene folder's name, else the image's folder's name."""
    folder = scene_dir if scene_dir is not None else image.parent if image else Path()
    return Path("layoutedit-out") / (folder.resolve().name or "scene")


def check_concept_folder(concept_dir: Path | None, use_concept: bool) -> None:
    """Read `--concept DIR` before the model loads, so a bad folder fails fast."""
    if use_concept and concept_dir is not None:
        from layoutedit.learning.concept import Concept

        Concept.load(concept_dir)


def ensure_concept(
    app: AppState, editor: Editor, scene: Scene, *, scene_arg: str, no_learn: bool
) -> None:
    """Learn the scene now (with progress bars) unless its concept is cached; `--no-learn`
    turns a missing concept into exit 2 naming the learn command (`scene_arg`: the scene as
    `learn` arguments, see `scene_arguments`)."""
    if editor.cached_concept(scene) is not None:
        return
    key = editor.learn_key(scene)
    if no_learn:
        raise UserError(
            f"no learned concept for this scene and these settings (key {key[:12]}); run "
            f"`layoutedit learn {scene_arg}` with the same --model, --preset and --config "
            "first, or leave out --no-learn to learn it now"
        )
    chatty = not (app.quiet or app.json)
    if chatty:
        err_console.print(f"no cached concept for this scene: learning it (key {key[:12]})")
    with learning_progress(chatty) as progress:
        editor.learn(scene, progress=progress)


def choose_edit_memory(editor: Any, scene: Scene, *, quiet: bool) -> None:
    """On CUDA, switch the editor's edits to low memory when the normal mode's planned peak
    does not fit the free GPU memory (`planning.auto_edit_memory`); nothing on the CPU."""
    if editor.backend.device.type != "cuda":
        return
    from layoutedit.planning.auto_edit_memory import edit_memory_choice

    edit = editor.settings.edit
    name = editor.backend.name
    choice = edit_memory_choice(editor.model, edit, len(scene.objects), name, editor.cache_dir)
    if choice is None or not choice.low_memory:
        return
    update = {"edit": edit.model_copy(update={"low_memory": True})}
    editor.settings = editor.settings.model_copy(update=update)
    if not quiet:
        err_console.print(choice.reason, highlight=False)


def make_editor(app: AppState, settings: Settings, expected_edits: int = 1) -> Editor:
    """The CLI's Editor: global options, resolved settings, notices on stderr;
    `expected_edits` as `Editor` takes it (how many edits the command will make)."""
    from layoutedit.editor import Editor

    return Editor(
        model=app.model,
        backend=app.backend,
        cache_dir=app.cache_dir,
        settings=settings,
        report=lambda line: err_console.print(line, highlight=False),
        expected_edits=expected_edits,
    )


OPERATIONS_STEM = "operations"
"""Output folder of an edit made from operation flags alone (no --layout)."""


def plan_targets(
    scene: Scene, layouts: list[Path], operations: Sequence[Operation], options: SceneOptions
) -> list[tuple[str, Layout]]:
    """(output stem, layout) of every target: the operations on the source's masks when no
    --layout is given, else each --layout (file or folder) with the operations on top.
    Model-free, so that bad layouts and operations fail before the model loads."""
    from layoutedit.scenes.layout_edits import operations_layout
    from layoutedit.scenes.scene import load_layout

    if operations and not layouts:
        return [(OPERATIONS_STEM, operations_layout(scene, operations))]
    from layoutedit.output_guard import check_name

    targets = []
    for path in layout_files(layouts, scene):
        # The stem names the output folder: one plain name (a file `...png` has stem `..`).
        check_name(path.stem, "layout name")
        loaded = load_layout(path, scene, options)
        if operations:
            loaded = operations_layout(scene, operations, base=loaded)
        targets.append((path.stem, loaded))
    return targets


def run_edit(
    app: AppState,
    scene_dir: Path | None,
    layouts: list[Path],
    out: Path | None,
    concept_dir: Path | None,
    no_learn: bool,
    settings_overrides: dict[str, Any],
    preset: str | None,
    config_file: Path | None,
    *,
    image: Path | None = None,
    mask: Path | None = None,
    labels: Path | None = None,
    operations: Sequence[Operation] = (),
    shard: Shard | None = None,
    overwrite: bool = False,
    stage: OutputStage | None = None,
) -> list[dict[str, Any]]:
    """The whole command, callable without the CLI. Returns one summary per layout.

    The scene is a folder (`scene_dir`), its three files (`image`, `mask`, `labels`), or a
    folder with some of its files replaced. `operations` are applied to each --layout, or,
    without --layout, to the source's masks (outputs in OUT/operations/). One `Editor`
    prepares the model, the concept and the source's inversion once for all layouts.
    `shard` (`accelerate launch -m layoutedit edit ...`): edit only this process's share of
    the layouts (every N-th); the files are those a single process writes.

    The output root (`out`, default `default_out_root`) is checked before any work and the
    layouts' folders are written into it together at the end (`layoutedit.output_guard`;
    `overwrite` lets it hold files layoutedit did not write). With `stage`, the folders go
    into `stage.path / out` instead and the caller commits (the demo's one output folder).
    Summaries name the final paths.
    """
    from layoutedit.config import resolve_settings
    from layoutedit.output_guard import check_output, staged_output
    from layoutedit.scenes.scene import load_scene

    out_root = out if out is not None else default_out_root(scene_dir, image)
    if stage is None:
        check_output(out_root, overwrite=overwrite, cache_dir=app.cache_dir)
    check_cache_writable(app.cache_dir)
    settings = resolve_settings(preset, config_file, {"edit": settings_overrides}, model=app.model)
    cfg = settings.edit
    check_concept_folder(concept_dir, cfg.use_concept)
    # Scene, layouts and operations are checked without the model first, so that a bad
    # input fails at once; `editor.scene` then reads it against the model's latent grid.
    preview = load_scene(scene_dir, image=image, mask=mask, labels=labels, options=settings.scene)
    targets = plan_targets(preview, layouts, operations, settings.scene)
    if shard is not None:
        targets = [targets[i] for i in shard.mine(len(targets))]
    editor = make_editor(app, settings, expected_edits=len(targets))
    scene = editor.scene(scene_dir, image=image, mask=mask, labels=labels)
    scene_notes(app, scene, editor.model)  # its warnings, a too long prompt, the model's note
    editor.check_edit_models()  # a setting the model cannot take fails before learning
    if settings_overrides.get("low_memory") is None:  # neither --low-memory nor --no-low-memory
        choose_edit_memory(editor, scene, quiet=app.quiet or app.json)
    for warning in [w for _, lay in targets for w in lay.warnings]:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if cfg.use_concept and concept_dir is None:
        ensure_concept(
            app,
            editor,
            scene,
            scene_arg=scene_arguments(scene_dir, image, mask, labels),
            no_learn=no_learn,
        )
    extra = {"scene": str(scene_dir) if scene_dir is not None else None}
    if stage is not None:
        root = stage.staged(out_root)
        return _edit_targets(app, editor, scene, targets, root, extra, operations, concept_dir)
    with staged_output(out_root, overwrite=overwrite) as own:
        summaries = _edit_targets(
            app, editor, scene, targets, own.path, extra, operations, concept_dir
        )
    for summary in summaries:  # the folders' final names
        for key in ("out", "layout_map"):
            if key in summary:
                summary[key] = str(own.final(Path(summary[key])))
    if not (app.quiet or app.json):
        for summary, (stem, layout) in zip(summaries, targets, strict=True):
            name = layout.path.name if layout.path is not None else stem
            console.print(
                f"{name}: best seed {summary['best_seed']} "
                f"(attention loss {summary['best_loss']:.3f}) -> {summary['out']}",
                highlight=False,
            )
    return summaries


def _edit_targets(
    app: AppState,
    editor: Editor,
    scene: Scene,
    targets: list[tuple[str, Layout]],
    root: Path,
    extra: dict[str, Any],
    operations: Sequence[Operation],
    concept_dir: Path | None,
) -> list[dict[str, Any]]:
    """Edit every target and save each into `root / stem` (a staging folder); summaries
    name those staged paths."""
    texts = [op.text for op in operations]
    cfg = editor.settings.edit
    summaries = []
    chatty = not (app.quiet or app.json)
    for stem, layout in targets:
        name = layout.path.name if layout.path is not None else stem
        with seeds_progress(name, len(cfg.seeds), chatty) as advance:

            def per_seed(what: str, done: int, total: int) -> None:
                if what == "seeds":
                    advance(what, done, total)

            result = editor.edit(scene, layout, concept=concept_dir, progress=per_seed)
        result.operations = tuple(texts)
        paths = result.save(root / stem, best=cfg.best, extra=extra, layout_png=bool(texts) or None)
        summary = {**result.summary(), "out": str(paths["folder"])}
        if operations:
            summary["layout_map"] = str(paths["layout"])
        summaries.append(summary)
    return summaries


MoveOption = Annotated[
    list[str] | None,
    typer.Option(
        "--move",
        metavar="NAME=DX,DY",
        help="Move an object: pixels (cat=+40,-10) or image fractions (cat=+0.1,-0.05).",
    ),
]
ScaleOption = Annotated[
    list[str] | None,
    typer.Option("--scale", metavar="NAME=F", help="Scale an object about its centre: pot=0.8."),
]
SwapOption = Annotated[
    list[str] | None,
    typer.Option("--swap", metavar="A,B", help="Exchange two objects' centres: plant,pot."),
]
BoxOption = Annotated[
    list[str] | None,
    typer.Option(
        "--box",
        metavar="NAME=X0,Y0,X1,Y1",
        help="Fit an object into a box, keeping its aspect: cat=0.1,0.2,0.5,0.6 (fractions or px).",
    ),
]
ToFrontOption = Annotated[
    list[str] | None,
    typer.Option("--to-front", metavar="NAME", help="Draw an object over the others."),
]
"""The layout-operation flags of edit and inspect (`layoutedit.scenes.layout_edits`)."""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("edit", help=HELP)
    @user_errors
    def edit_command(
        ctx: typer.Context,
        scene: SceneArgument = None,
        image: ImageOption = None,
        mask: MaskOption = None,
        labels: LabelsOption = None,
        layout: Annotated[
            list[Path] | None,
            typer.Option("--layout", "-l", help="Target layout image or folder (repeatable)."),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Output root; default ./layoutedit-out/<scene>."),
        ] = None,
        concept: Annotated[
            Path | None, typer.Option("--concept", help="Concept folder written by learn.")
        ] = None,
        no_concept: Annotated[
            bool, typer.Option("--no-concept", help="Edit with the plain object words.")
        ] = False,
        no_learn: Annotated[
            bool, typer.Option("--no-learn", help="Fail instead of learning a missing concept.")
        ] = False,
        seeds: Annotated[
            str | None, typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,8,88.")
        ] = None,
        best: Annotated[
            bool | None,
            typer.Option("--best/--all", help="Keep only the lowest-loss candidate."),
        ] = None,
        steps: Annotated[int | None, typer.Option("--steps", help="DDIM steps.")] = None,
        guidance_scale: Annotated[
            float | None, typer.Option("--guidance-scale", help="Classifier-free guidance.")
        ] = None,
        scale_factor: Annotated[
            float | None,
            typer.Option("--scale-factor", help="Attention guidance step size; 0 = off."),
        ] = None,
        blend_steps: Annotated[
            int | None,
            typer.Option("--blend-steps", help="Steps that keep the source background; 0 = off."),
        ] = None,
        attention_res: Annotated[
            int | None,
            typer.Option("--attention-res", help="Attention grid side; default latent/4."),
        ] = None,
        init: Annotated[
            str | None,
            typer.Option(
                "--init",
                metavar="noise|paste",
                help="Where sampling starts: noise (published) or paste (the source objects "
                "cut and pasted into their regions, so they keep their look).",
            ),
        ] = None,
        paste_strength: Annotated[
            float | None,
            typer.Option(
                "--paste-strength",
                help="With --init paste: the share of the steps run from the pasted image "
                "(0-1; 1 = from pure noise).",
            ),
        ] = None,
        object_detail: Annotated[
            float | None,
            typer.Option(
                "--object-detail",
                help="With --init paste: the share (0-1) of each object's fine detail taken "
                "from its source pixels, moved with it (patterns, texture); its colour and "
                "shading stay the model's. 0 = published.",
            ),
        ] = None,
        low_memory: Annotated[
            bool | None,
            typer.Option(
                "--low-memory/--no-low-memory",
                help="Gradient checkpointing in the guidance pass and an image larger than "
                "512 px decoded tile by tile (what an edit at 1024 px needs on a small GPU). "
                "Default: the settings' edit.low_memory, switched on (one line says so) on "
                "CUDA when the planned peak plus 1 GiB exceeds the free GPU memory.",
                show_default=False,
            ),
        ] = None,
        move: MoveOption = None,
        scale: ScaleOption = None,
        swap: SwapOption = None,
        box: BoxOption = None,
        to_front: ToFrontOption = None,
        preset: PresetOption = None,
        config: ConfigOption = None,
        overwrite: OverwriteOption = False,
    ) -> None:
        from layoutedit.editing.sharding import claim_shard
        from layoutedit.logs import configure_library_logging
        from layoutedit.scenes.layout_edits import parse_flags

        app_state = state(ctx)
        configure_library_logging(app_state.verbose)
        overrides: dict[str, Any] = {
            "seeds": parse_seeds(seeds),
            "best": best,
            "steps": steps,
            "guidance_scale": guidance_scale,
            "scale_factor": scale_factor,
            "blend_steps": blend_steps,
            "attention_res": attention_res,
            "init": init,
            "paste_strength": paste_strength,
            "object_detail": object_detail,
            "use_concept": False if no_concept else None,
            "low_memory": low_memory,
        }
        if no_concept and concept is not None:
            raise UserError("--concept and --no-concept exclude each other")
        try:  # under `accelerate launch`, this process's share of the layouts
            shard = claim_shard()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        operations = parse_flags(
            move=move or [],
            scale=scale or [],
            swap=swap or [],
            box=box or [],
            to_front=to_front or [],
        )
        summaries = run_edit(
            app_state,
            scene,
            layout or [],
            out,
            concept,
            no_learn,
            overrides,
            preset,
            config,
            image=image,
            mask=mask,
            labels=labels,
            operations=operations,
            shard=shard,
            overwrite=overwrite,
        )
        if app_state.json:
            app_state.emit_json(summaries)
