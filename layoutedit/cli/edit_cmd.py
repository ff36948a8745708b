"""`layoutedit edit`: rearrange a scene's objects to one or more target layouts.

Thin: parses options, loads the model, concept and scene once, then hands every layout to
`layoutedit.editing.EditSession` and every result to `layoutedit.outputs.write_edit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from layoutedit.backend import get_backend
from layoutedit.cli.common import (
    AppState,
    ConfigOption,
    ImageOption,
    LabelsOption,
    MaskOption,
    PresetOption,
    SceneArgument,
    console,
    err_console,
    state,
    user_errors,
)
from layoutedit.cli.progress import learning_progress, seeds_progress
from layoutedit.errors import UserError

if TYPE_CHECKING:
    from layoutedit.concept import Concept
    from layoutedit.config import Settings
    from layoutedit.editing import EditResult
    from layoutedit.model_loading import LoadedModel
    from layoutedit.scene import Scene
    from layoutedit_cache import ConceptCache

HELP = """Move a scene's objects to target layouts; writes one PNG per seed, sheet.png, edit.json.

Example:

  layoutedit edit ./scene --layout ./scene/target_layout/layout1.png --seeds 0,8,88

  layoutedit edit ./scene --concept ./concept --preset fast --best --out ./edits

  layoutedit edit --image photo.jpg --mask mask.png --labels labels.json -l layout.png

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


def concept_from_folder(concept_dir: Path | None, use_concept: bool) -> Concept | None:
    """The concept of `--concept DIR` (read before the model loads, so a bad folder fails
    fast), or None."""
    if not use_concept or concept_dir is None:
        return None
    from layoutedit.concept import Concept

    return Concept.load(concept_dir)


def resolve_concept(
    app: AppState,
    model: LoadedModel,
    scene: Scene,
    settings: Settings,
    cache: ConceptCache,
    *,
    scene_arg: str,
    from_folder: Concept | None,
    concept_dir: Path | None,
    no_learn: bool,
) -> tuple[Concept | None, str]:
    """The concept to edit with and the concept key its inversion is cached under.

    Without --concept, the concept comes from the cache under the key `learn` would use
    with the same settings; when missing it is learned now (`--no-learn`: exit 2 naming the
    learn command). `--no-concept` and `--concept DIR` key the inversion by the scene and a
    stand-in for the concept (see `layoutedit.inversion_cache`). `scene_arg` names the scene
    as `learn` arguments (`scene_arguments`) in the `--no-learn` message.
    """
    from layoutedit.inversion_cache import file_digest, scene_concept_key

    if not settings.edit.use_concept:
        return None, scene_concept_key(model.fingerprint, scene, {"concept": "none"})
    if from_folder is not None and concept_dir is not None:
        from layoutedit.concept import TENSORS_FILE

        digest = file_digest(concept_dir / TENSORS_FILE)
        return from_folder, scene_concept_key(
            model.fingerprint, scene, {"concept_file_sha256": digest}
        )

    from layoutedit.concept_store import cached_concept, obtain_concept, scene_learn_key

    key = scene_learn_key(model, scene, settings.learn)
    concept = cached_concept(cache, key)
    if concept is not None:
        return concept, key
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
        obtained = obtain_concept(
            model,
            scene,
            settings.learn,
            cache,
            backend=get_backend(app.backend),
            progress=progress,
        )
    return obtained.concept, obtained.key


def _summary(result: EditResult, folder: Path) -> dict[str, Any]:
    best = result.best()
    return {
        "layout": str(result.layout.path) if result.layout.path else None,
        "out": str(folder),
        "best_seed": best.seed,
        "best_loss": round(best.loss, 6),
        "losses": {str(c.seed): round(c.loss, 6) for c in result.candidates},
        "unet_evaluations": result.unet_evaluations,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }


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
) -> list[dict[str, Any]]:
    """The whole command, callable without the CLI. Returns one summary per layout.

    The scene is a folder (`scene_dir`), its three files (`image`, `mask`, `labels`), or a
    folder with some of its files replaced. The model, the concept and the source's
    inversion are prepared once for all layouts.
    """
    from layoutedit.config import resolve_settings
    from layoutedit.editing import EditSession
    from layoutedit.inversion_cache import cached_inversion
    from layoutedit.model_loading import load_model
    from layoutedit.outputs import write_edit
    from layoutedit.scene import load_layout, load_scene
    from layoutedit_cache import ConceptCache

    settings = resolve_settings(preset, config_file, {"edit": settings_overrides}, model=app.model)
    cfg = settings.edit
    from_folder = concept_from_folder(concept_dir, cfg.use_concept)
    backend = get_backend(app.backend)
    # fp32 first: a concept learned here trains in fp32; cast to the backend's dtype after.
    model = load_model(app.model, device=backend.device, cache_dir=app.cache_dir)
    scene = load_scene(
        scene_dir,
        image=image,
        mask=mask,
        labels=labels,
        options=settings.scene,
        latent_size=model.latent_size,
    )
    loaded = [load_layout(p, scene, settings.scene) for p in layout_files(layouts, scene)]
    for warning in [*scene.warnings, *(w for lay in loaded for w in lay.warnings)]:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    out_root = out if out is not None else default_out_root(scene_dir, image)

    with ConceptCache(app.cache_dir, report=lambda line: err_console.print(line)) as cache:
        concept, concept_key = resolve_concept(
            app,
            model,
            scene,
            settings,
            cache,
            scene_arg=scene_arguments(scene_dir, image, mask, labels),
            from_folder=from_folder,
            concept_dir=concept_dir,
            no_learn=no_learn,
        )
        for module in (model.unet, model.vae, model.text_encoder):
            if module.dtype != backend.dtype:
                module.to(backend.dtype)
        session = EditSession(model, scene, cfg, backend, concept=concept)
        if cfg.blend_steps > 0:
            cached_inversion(session, cache, concept_key)

    concept_id = str(concept_dir) if from_folder is not None else concept_key
    scene_record: dict[str, Any] = {"scene": str(scene_dir) if scene_dir is not None else None}
    if image is not None or mask is not None or labels is not None:
        scene_record["scene_files"] = {
            "image": str(scene.image_path),
            "mask": str(scene.mask_path),
            "labels": str(scene.labels_path),
        }
    summaries = []
    chatty = not (app.quiet or app.json)
    for layout in loaded:
        assert layout.path is not None
        with seeds_progress(layout.path.name, len(cfg.seeds), chatty) as advance:
            session.progress = advance
            result = session.edit(layout)
        folder = write_edit(
            result,
            scene,
            out_root / layout.path.stem,
            best=cfg.best,
            concept_id=concept_id if concept is not None else None,
            extra={
                **scene_record,
                "model": {"spec": model.spec, "fingerprint": model.fingerprint},
            },
        )
        summary = _summary(result, folder)
        summaries.append(summary)
        if not app.quiet and not app.json:
            console.print(
                f"{layout.path.name}: best seed {summary['best_seed']} "
                f"(attention loss {summary['best_loss']:.3f}) -> {folder}",
                highlight=False,
            )
    return summaries


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
        preset: PresetOption = None,
        config: ConfigOption = None,
    ) -> None:
        from layoutedit.logs import configure_library_logging

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
            "use_concept": False if no_concept else None,
        }
        if no_concept and concept is not None:
            raise UserError("--concept and --no-concept exclude each other")
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
        )
        if app_state.json:
            app_state.emit_json(summaries)
