"""The `layoutedit` application: global options and the command list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from layoutedit import __version__
from layoutedit.cli import (
    backends_cmd,
    bench_cmd,
    cache_cmd,
    demo_cmd,
    edit_cmd,
    inspect_cmd,
    learn_cmd,
    mask_cmd,
    plan_cmd,
    run_cmd,
)
from layoutedit.cli.common import DEFAULT_MODEL, AppState, console, default_cache_dir

app = typer.Typer(
    name="layoutedit",
    help=(
        "Rearrange the objects of one existing photo with a diffusion model.\n\n"
        "Example: layoutedit edit ./scene --layout ./scene/target_layout/layout1.png"
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"layoutedit {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Concept cache folder. Default: $LAYOUTEDIT_CACHE_DIR, else the user cache dir.",
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="Backend name, or `auto` (cuda when usable, else cpu).")
    ] = "auto",
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Diffusers folder, offline Hugging Face repo id, .safetensors checkpoint, "
            f"or a builtin model. Default: {DEFAULT_MODEL}",
        ),
    ] = DEFAULT_MODEL,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and results.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Machine-readable output where a command prints results.")
    ] = False,
) -> None:
    """Global options go before the command: `layoutedit --json inspect SCENE`."""
    ctx.obj = AppState(
        cache_dir=cache_dir or default_cache_dir(),
        backend=backend,
        model=model,
        verbose=verbose,
        quiet=quiet,
        json=json_out,
    )


inspect_cmd.register(app)
learn_cmd.register(app)
edit_cmd.register(app)
run_cmd.register(app)
backends_cmd.register(app)
demo_cmd.register(app)
cache_cmd.register(app)
bench_cmd.register(app)
plan_cmd.register(app)
mask_cmd.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
