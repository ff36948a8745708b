"""What every command shares: global state, consoles, turning UserError into one line, and
the scene inputs (a folder, or its three files) that learn, edit and inspect take alike."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from layoutedit.errors import UserError
from layoutedit.fingerprint import default_cache_dir

console = Console()
err_console = Console(stderr=True)

DEFAULT_MODEL = "builtin:shapes-tiny"
PRESET_HELP = (
    "Settings preset: published, fast or shapes-tiny. Default: the model's tuned preset "
    "(shapes-tiny for the embedded model, published for any other)."
)

PresetOption = Annotated[str | None, typer.Option("--preset", help=PRESET_HELP)]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings file over the preset (sections \\[scene], \\[learn], \\[edit]).",
    ),
]

# The scene inputs of learn, edit and inspect: a folder, or its files one by one (which
# override the folder's). `layoutedit.scene.load_scene` checks what was given.
SceneArgument = Annotated[
    Path | None,
    typer.Argument(
        metavar="SCENE",
        help="Scene folder (image.png, mask.png, semantic_dict.json, target_layout/).",
        show_default=False,
    ),
]
ImageOption = Annotated[
    Path | None, typer.Option("--image", help="Image file (instead of SCENE/image.png).")
]
MaskOption = Annotated[
    Path | None,
    typer.Option("--mask", help="Colour-coded object mask (instead of SCENE/mask.png)."),
]
LabelsOption = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        help="Label map JSON, name -> colour (instead of SCENE/semantic_dict.json).",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppState:
    """Global options, set by the app callback and read by every command."""

    cache_dir: Path
    backend: str = "auto"
    model: str = DEFAULT_MODEL
    verbose: bool = False
    quiet: bool = False
    json: bool = False

    def emit_json(self, payload: Any) -> None:
        """Print machine-readable output (plain, so no rich markup or wrapping)."""
        print(json.dumps(payload, indent=2, default=str))


def state(ctx: typer.Context) -> AppState:
    """The AppState of this invocation (a default one when a command is invoked alone)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState(cache_dir=default_cache_dir())
    return root.obj


def user_errors(func: F) -> F:
    """Turn a UserError into one line on stderr and exit code 2; nothing else changes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            # escape: messages hold brackets ("[r, g, b]") that rich would read as markup
            err_console.print(
                f"[bold red]error:[/] {escape(exc.line())}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: nothing partial was kept")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def not_yet(what: str) -> UserError:
    """Error for a command whose machinery is not built yet."""
    return UserError(f"`layoutedit {what}` is not yet available in this version")
