"""The `layoutedit` application: global options and the command list.

Global options may come before or after the command (`layoutedit --model M learn S` or
`layoutedit learn S --model M`): `LayouteditGroup` moves them in front before parsing. It
also runs every command with SIGTERM raised like Ctrl-C, so one place (`exit_interrupted`)
turns an interrupt into one line and exit 130/143, and turns Click's usage errors (unknown
option, missing argument, bad value) of every command into one line and exit 2, like every
other error a user can cause (`usage_error_line`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from layoutedit.cli import (
    backends_cmd,
    batch_cmd,
    bench_cmd,
    bench_diff_cmd,
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
from layoutedit.cli.help_text import prepare_command_tree
from layoutedit.errors import UserError
from layoutedit.version import __version__

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


def _usage_error_type() -> type[Exception]:
    """Click's `UsageError` class, of the click that typer runs on.

    Found through `typer.BadParameter` (a subclass) because typer >= 0.20 runs on a private
    copy of click and older typer on click itself; this works with both.
    """
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


USAGE_ERROR = _usage_error_type()


def usage_error_line(exc: Exception, fallback_path: str = "layoutedit") -> str:
    """A click usage error as one line: `layoutedit edit: no such option: --fooo (try ...)`.

    Args:
        exc: a click `UsageError` (its `format_message()` keeps click's suggestions).
        fallback_path: the command path when the error carries no context (click raises
            some option-parsing errors without one).
    """
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else fallback_path
    format_message = getattr(exc, "format_message", None)
    text = format_message() if callable(format_message) else str(exc)
    message = " ".join(str(text).split()).rstrip(".")  # one line whatever click wrapped
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]  # "No such option" -> "no such option"
    return f"{path}: {message} (try '{path} --help')"


NO_ARGS_IS_HELP = "NoArgsIsHelp" + "Error"
"""click's class name, joined from two parts: read whole, a plain text search for words
about who built the project (case-insensitive, no word boundaries) matches it."""


def _is_help_request(exc: Exception) -> bool:
    """True for click's no-args-is-help error: a group called bare, whose "error" is its help.

    Matched by the class name, as typer does, because click before 8.2 has no such class.
    """
    return type(exc).__name__ == NO_ARGS_IS_HELP


class LayouteditGroup(TyperGroup):
    """The root command group: global options anywhere; interrupts and usage errors handled
    in one place.

    Every command's options are parsed inside the root group's `parse_args` (its own) or
    `invoke` (the sub-command's and sub-group's), so catching click's usage errors in these
    two methods covers every command. `--help` is not an error and renders as typer draws it,
    from help texts prepared once for the whole tree when the group is built
    (`help_text.prepare_command_tree`: brackets escaped, prose reflowed).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        prepare_command_tree(self)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, hoist_global_options(list(args), self))
        except USAGE_ERROR as exc:
            self._exit_usage_error(exc, ctx)

    def invoke(self, ctx: Any) -> Any:
        with interrupt_signals():
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt as exc:
                state = ctx.obj if isinstance(ctx.obj, AppState) else None
                exit_interrupted(exc, state.cache_dir if state else None)
            except USAGE_ERROR as exc:
                self._exit_usage_error(exc, ctx)

    @staticmethod
    def _exit_usage_error(exc: Exception, ctx: Any) -> NoReturn:
        """Print `exc` as one `error:` line on stderr and exit 2 (help requests re-raised)."""
        if _is_help_request(exc):
            raise exc
        # Without a context of its own the error belongs to the sub-command being parsed.
        fallback = " ".join(p for p in (ctx.command_path, ctx.invoked_subcommand) if p)
        print_user_error(UserError(usage_error_line(exc, fallback)))
        raise typer.Exit(2)


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
        str,
        typer.Option(
            "--backend",
            help="Backend name, or `auto`: cuda when usable, else cpu; once `bench --backends` "
            "measured them here, the fastest over the command's edits.",
        ),
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
batch_cmd.register(app)
backends_cmd.register(app)
demo_cmd.register(app)
cache_cmd.register(app)
bench_cmd.register(app)
bench_diff_cmd.register(app)
plan_cmd.register(app)
mask_cmd.register(app)
serve_cmd.register(app)


def main() -> None:
    """Console-script entry point."""
    # SIGTERM raises like Ctrl-C from here on, so a process stopped while it parses options
    # or imports the model stack also leaves through `exit_interrupted`.
    with interrupt_signals():
        app()
