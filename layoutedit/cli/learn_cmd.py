"""`layoutedit learn`: learn a scene's objects once (Stage 1), into the concept cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from layoutedit.cli.common import AppState, console, err_console, state, user_errors

HELP = """Learn the objects of one scene: masked textual inversion of every object, then the
cross-attention key/value fine-tune. The result is cached (keyed by model, scene and
settings), so `layoutedit edit` on the same scene reuses it; an interrupted run resumes
from its last checkpoint.

Example: layoutedit learn ./scene --preset fast --out ./scene-concept
"""


class RichProgress:
    """Rich progress bars with the running loss, one per learning stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def stage(self, name: str, total: int, done: int) -> None:
        """Start a bar for a stage."""
        if self.task is not None:
            self.progress.update(self.task, visible=True)
        self.task = self.progress.add_task(name, total=max(total, 1), completed=done, loss="")

    def step(self, loss: float) -> None:
        """Advance the bar and show the step's loss."""
        if self.task is not None:
            self.progress.update(self.task, advance=1, loss=f"loss {loss:.4f}")


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


def _default(field: str) -> str:
    """`[default: X]` of a LearnConfig field (escaped for Rich), from the one source of defaults."""
    from layoutedit.config import LearnConfig

    return f"\\[default: {LearnConfig.model_fields[field].default}]"


def _overrides(**values: Any) -> dict[str, dict[str, Any]]:
    return {"learn": {k: v for k, v in values.items() if v is not None}}


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("learn", help=HELP)
    @user_errors
    def learn_command(
        ctx: typer.Context,
        scene_dir: Annotated[
            Path | None,
            typer.Argument(
                metavar="SCENE",
                help="Scene folder: image, mask.png, semantic_dict.json.",
                show_default=False,
            ),
        ] = None,
        image: Annotated[
            Path | None, typer.Option("--image", help="Source image (instead of SCENE).")
        ] = None,
        mask: Annotated[
            Path | None, typer.Option("--mask", help="Colour-coded object mask.")
        ] = None,
        labels: Annotated[
            Path | None, typer.Option("--labels", help="Label map JSON: name -> colour.")
        ] = None,
        preset: Annotated[
            str, typer.Option("--preset", help="Settings preset: published or fast.")
        ] = "published",
        config: Annotated[
            Path | None, typer.Option("--config", help="TOML settings file (overrides preset).")
        ] = None,
        ti_steps: Annotated[
            int | None,
            typer.Option(
                "--ti-steps",
                help=f"Textual-inversion steps per object (joint: total). {_default('ti_steps')}",
            ),
        ] = None,
        ft_steps: Annotated[
            int | None,
            typer.Option("--ft-steps", help=f"K/V fine-tune steps. {_default('ft_steps')}"),
        ] = None,
        ti_lr: Annotated[
            float | None,
            typer.Option(
                "--ti-lr", help=f"Textual-inversion base learning rate. {_default('ti_lr')}"
            ),
        ] = None,
        ft_lr: Annotated[
            float | None,
            typer.Option("--ft-lr", help=f"Fine-tune base learning rate. {_default('ft_lr')}"),
        ] = None,
        seed: Annotated[
            int | None, typer.Option("--seed", help=f"Seed. {_default('seed')}")
        ] = None,
        joint: Annotated[
            bool | None,
            typer.Option(
                "--joint/--sequential",
                help="Textual inversion of all objects in one run, or one after another. "
                f"{_default('ti_joint')}",
                show_default=False,
            ),
        ] = None,
        prior: Annotated[
            bool | None,
            typer.Option(
                "--prior/--no-prior",
                help=f"Prior preservation in the fine-tune. {_default('prior_preservation')}",
                show_default=False,
            ),
        ] = None,
        prior_dir: Annotated[
            Path | None,
            typer.Option(
                "--prior-dir",
                help="Regularisation images (images.txt + caption.txt); implies --prior. "
                "Without it they are generated by the base model and cached.",
            ),
        ] = None,
        checkpoint_every: Annotated[
            int | None,
            typer.Option(
                "--checkpoint-every",
                help=f"Checkpoint every N steps. {_default('checkpoint_every')}",
            ),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                help="Also write the concept here: concept/ (layoutedit) and diffusers/ "
                "(load_textual_inversion files, Custom Diffusion K/V weights).",
            ),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Learn again even if the cache has it.")
        ] = False,
        allow_pickle: Annotated[
            bool,
            typer.Option("--allow-pickle", help="Accept pickle checkpoints (.ckpt/.bin)."),
        ] = False,
        model_config: Annotated[
            Path | None,
            typer.Option(
                "--model-config",
                help="Diffusers config folder for an original SD single-file checkpoint.",
            ),
        ] = None,
    ) -> None:
        from layoutedit.logs import configure_library_logging

        app_state = state(ctx)
        configure_library_logging(app_state.verbose)
        run_learn(
            app_state,
            scene_dir=scene_dir,
            image=image,
            mask=mask,
            labels=labels,
            preset=preset,
            config=config,
            overrides=_overrides(
                ti_steps=ti_steps,
                ft_steps=ft_steps,
                ti_lr=ti_lr,
                ft_lr=ft_lr,
                seed=seed,
                ti_joint=joint,
                prior_preservation=True if prior_dir is not None else prior,
                prior_dir=prior_dir,
                checkpoint_every=checkpoint_every,
            ),
            out=out,
            force=force,
            allow_pickle=allow_pickle,
            model_config=model_config,
        )


def run_learn(
    app_state: AppState,
    *,
    scene_dir: Path | None,
    image: Path | None,
    mask: Path | None,
    labels: Path | None,
    preset: str,
    config: Path | None,
    overrides: dict[str, dict[str, Any]],
    out: Path | None,
    force: bool,
    allow_pickle: bool,
    model_config: Path | None,
) -> None:
    """The command's work: settings -> backend -> model -> scene -> cached concept -> report."""
    from layoutedit.backend import get_backend
    from layoutedit.concept import export_diffusers
    from layoutedit.concept_store import obtain_concept
    from layoutedit.config import resolve_settings
    from layoutedit.model_loading import load_model
    from layoutedit.scene import load_scene
    from layoutedit_cache import ConceptCache

    began = time.perf_counter()
    settings = resolve_settings(preset, config, overrides)
    backend = get_backend(app_state.backend)
    model = load_model(
        app_state.model,
        allow_pickle=allow_pickle,
        device=backend.device,
        cache_dir=app_state.cache_dir,
        model_config=model_config,
    )
    scene = load_scene(
        scene_dir,
        image=image,
        mask=mask,
        labels=labels,
        options=settings.scene,
        latent_size=model.latent_size,
    )
    chatty = not (app_state.quiet or app_state.json)
    for warning in scene.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    cache = ConceptCache(app_state.cache_dir, report=lambda line: err_console.print(line))

    def waiting() -> None:
        err_console.print("another process is learning this scene; waiting for it")

    with _progress_bar() as bars:
        if not chatty:
            bars.stop()
        result = obtain_concept(
            model,
            scene,
            settings.learn,
            cache,
            backend=backend,
            progress=RichProgress(bars) if chatty else None,
            force=force,
            on_wait=waiting,
        )
    concept = result.concept
    if out is not None:
        concept.save(out / "concept")
        export_diffusers(concept, out / "diffusers", list(model.unet.attn_processors))
    evals = concept.meta.get("unet_evals", {})
    learn_seconds = sum(
        v for k, v in concept.meta.get("seconds", {}).items() if k != "total_this_run"
    )
    summary = {
        "key": result.key,
        "cached": result.cached,
        "objects": list(scene.names),
        "tokens": list(concept.all_tokens),
        "prompt": concept.prompt,
        "unet_evals": evals,
        "learn_seconds": round(learn_seconds, 2),
        "seconds": round(time.perf_counter() - began, 2),
        "out": str(out) if out is not None else None,
    }
    if app_state.json:
        app_state.emit_json(summary)
        return
    source = "from the cache" if result.cached else "learned"
    console.print(
        f"concept {result.key[:12]} {source}: {', '.join(concept.all_tokens)}", highlight=False
    )
    if not app_state.quiet:
        console.print(f"prompt: {concept.prompt}", highlight=False)
        console.print(
            f"UNet evaluations: {evals.get('forward', 0)} forward + "
            f"{evals.get('backward', 0)} backward; learning {learn_seconds:.1f} s; "
            f"this run {summary['seconds']:.1f} s",
            highlight=False,
        )
        if out is not None:
            console.print(f"written to {out}", highlight=False)
