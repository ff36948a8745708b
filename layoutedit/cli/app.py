"""The `layoutedit` application: global options and the command list.

Global options may come before or after the command (`layoutedit --model M learn S` or
`layoutedit learn S --model M`): `LayouteditGroup` moves them in front before parsing. It
also runs every command with SIGTERM raised like Ctrl-C, so one place (`exit_interrupted`)
turns an interrupt into one line and exit 130/143.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

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
    serve_cmd,
)
from layoutedit.cli.common import (
    DEFAULT_MODEL,
    AppState,
    apply_thread_share,
    check_backend_name,
    check_cache_dir,
    console,
    default_cache_dir,
    exit_interrupted,
    interrupt_signals,
    print_user_error,
)
from layoutedit.errors import UserError

# Typer ships its own copy of click, so commands and parameters are read by duck typing.


def _option_names(command: Any) -> set[str]:
    """Every option string of a click `command` and, for a group, of all its sub-commands."""
    names = {n for p in command.params for n in (*p.opts, *p.secondary_opts) if n.startswith("-")}
    for sub in getattr(command, "commands", {}).values():
        names |= _option_names(sub)
    return names


def hoist_global_options(args: list[str], group: TyperGroup) -> list[str]:
    """`args` with the group's own options that follow the command moved in front of it.

    An option is moved only when the command (and its sub-commands) has no option of that
    name; `--` ends the search. `--opt=value` and `--opt value` forms both move whole.
    """
    takes_value: dict[str, bool] = {}
    for param in group.params:
        if param.param_type_name == "option":
            for name in (*param.opts, *param.secondary_opts):
                takes_value[name] = not (
                    getattr(param, "is_flag", False) or getattr(param, "count", False)
                )
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        name = args[i].split("=", 1)[0]
        i += 2 if takes_value.get(name) and "=" not in args[i] else 1
    if i >= len(args) or args[i] not in group.commands:
        return args
    own = _option_names(group.commands[args[i]])
    moved: list[str] = []
    rest: list[str] = []
    j = i + 1
    while j < len(args):
        token = args[j]
        name = token.split("=", 1)[0]
        if token == "--":
            rest.extend(args[j:])
            break
        if name in takes_value and name not in own:
            width = 2 if takes_value[name] and "=" not in token and j + 1 < len(args) else 1
            moved.extend(args[j : j + width])
            j += width
            continue
        rest.append(token)
        j += 1
    return [*args[:i], *moved, args[i], *rest]


class LayouteditGroup(TyperGroup):
    """The root command group: global options anywhere, interrupts handled in one place."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args), self))

    def invoke(self, ctx: Any) -> Any:
        with interrupt_signals():
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt as exc:
                state = ctx.obj if isinstance(ctx.obj, AppState) else None
                exit_interrupted(exc, state.cache_dir if state else None)


app = typer.Typer(
    name="layoutedit",
    cls=LayouteditGroup,
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
    """Global options go before or after the command: `layoutedit --json inspect SCENE`."""
    from layoutedit.logs import configure_library_logging

    source = "--cache-dir" if cache_dir is not None else "$LAYOUTEDIT_CACHE_DIR or --cache-dir"
    cache_dir = cache_dir or default_cache_dir()
    try:
        check_cache_dir(cache_dir, source)
        check_backend_name(backend)
    except UserError as exc:
        print_user_error(exc)
        raise typer.Exit(exc.exit_code) from None
    configure_library_logging(verbose)
    apply_thread_share()
    ctx.obj = AppState(
        cache_dir=cache_dir,
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
serve_cmd.register(app)


def main() -> None:
    """Console-script entry point."""
    # SIGTERM raises like Ctrl-C from here on, so a process stopped while it parses options
    # or imports the model stack also leaves through `exit_interrupted`.
    with interrupt_signals():
        app()
