"""What every command shares: global state, consoles, turning UserError into one line,
interrupts into one line and exit 130/143, the checks of the global options, each process's
share of the cores, and the scene inputs (a folder, or its three files) that learn, edit and
inspect take alike."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from layoutedit.errors import UserError
from layoutedit.loading.fingerprint import default_cache_dir

# soft_wrap: a long line (an output path, an error naming a file) is never broken in two,
# also when stdout is a pipe and Rich assumes 80 columns; tables still fit the width.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DEFAULT_MODEL = "builtin:shapes-tiny"
WORLD_MODELS: dict[str, str] = {"v1": DEFAULT_MODEL, "v2": "builtin:shapes-tiny-v2"}
"""The embedded model of each shapes world: `demo` and `bench --world` take it unless
`--model` names another."""
PRESET_HELP = (
    "Settings preset: published, published-fast, fast or shapes-tiny. Default: the "
    "model's tuned preset "
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
# override the folder's). `layoutedit.scenes.scene.load_scene` checks what was given.
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

OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Write into an output folder that holds files layoutedit did not write: only "
        "the files layoutedit writes are replaced, the others are kept. Without it such a "
        "folder is refused before any work.",
    ),
]
"""Every command that writes an output folder takes it (`layoutedit.output_guard`)."""

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


def print_user_error(exc: UserError) -> None:
    """The one line of a UserError on stderr."""
    # escape: messages hold brackets ("[r, g, b]") that rich would read as markup; a line
    # break inside a name or path would split the one line in two
    line = exc.line().replace("\r", "\\r").replace("\n", "\\n")
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False)


def user_errors(func: F) -> F:
    """Turn a UserError into one line on stderr and its exit code (2), running out of memory
    anywhere into one such line too (`layoutedit.out_of_memory`), and an interrupt (Ctrl-C,
    SIGTERM) into one line and exit 130/143 (`exit_interrupted`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from layoutedit.out_of_memory import phase

        try:
            # A phase not named deeper down (loading, a bench, a plan) gets the general advice.
            with phase(func.__name__.removesuffix("_command").replace("_", " ")):
                return func(*args, **kwargs)
        except UserError as exc:
            print_user_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            ctx = kwargs.get("ctx")
            exit_interrupted(exc, state(ctx).cache_dir if ctx is not None else None)

    return wrapper  # type: ignore[return-value]


# --- interrupts ---------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same cleanup runs: every
    `finally` and atomic writer removes its temporaries, no cache entry is half written."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


_started = time.time()
"""When this process started a command: checkpoints written since are this run's."""


@contextlib.contextmanager
def interrupt_signals() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` (SIGINT raises KeyboardInterrupt as
    always). Outside the main thread (where handlers cannot be set) nothing changes."""
    global _started
    _started = time.time()
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def kept_checkpoints(cache_dir: Path, since: float) -> list[str]:
    """`stage step N` of the learning checkpoints under `cache_dir` written since `since`."""
    root = cache_dir / "learn-checkpoints"
    kept = []
    with contextlib.suppress(OSError):
        for state_file in sorted(root.glob("*/*/state.json")):
            if state_file.stat().st_mtime < since - 1:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                header = json.loads(state_file.read_text())
                kept.append(f"{header['stage']} step {int(header['step'])}")
    return kept


def exit_interrupted(exc: KeyboardInterrupt, cache_dir: Path | None = None) -> NoReturn:
    """Say in one line what an interrupted command kept, then exit 130 (SIGINT) or 143
    (SIGTERM)."""
    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    kept = kept_checkpoints(cache_dir, _started) if cache_dir is not None else []
    line = f"[yellow]interrupted[/] ({signal.Signals(signum).name}): nothing partial was written"
    if kept and cache_dir is not None:
        line += (
            f"; kept the learning checkpoint ({', '.join(kept)}) in "
            f"{escape(str(cache_dir / 'learn-checkpoints'))}: the same command resumes from it"
        )
    err_console.print(line, highlight=False)
    raise typer.Exit(128 + int(signum))


# --- what learn and edit say about a scene ---------------------------------------------------


def warn(line: str) -> None:
    """One warning line on stderr (escaped: scene messages hold brackets)."""
    err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


def scene_notes(app: AppState, scene: Any, model: Any) -> None:
    """Print, once per command, the scene's warnings, a prompt too long for the model's
    text encoder, and a note when the embedded shapes model is asked to learn a photo.

    Args:
        scene: a `layoutedit.scenes.scene.Scene`;
        model: a `layoutedit.loading.model_loading.LoadedModel`.
    """
    from layoutedit.scenes.scene import prompt_length_warning

    for line in scene.warnings:
        warn(line)
    long_prompt = prompt_length_warning(scene, model.tokenizer, model.max_length)
    if long_prompt is not None:
        warn(long_prompt)
    if app.quiet or app.json or model.spec != DEFAULT_MODEL:
        return
    height, width = scene.size
    if max(height, width) > 2 * model.image_size:
        err_console.print(
            f"note: the embedded model {DEFAULT_MODEL} knows only its {model.image_size} px "
            f"world of coloured shapes; this {width}x{height} image is far outside it, so "
            "expect coloured blobs. For photos name a Stable Diffusion model with --model "
            "(a diffusers folder, a .safetensors file or a Hugging Face repo id in the local "
            "cache, e.g. --model stable-diffusion-v1-5/stable-diffusion-v1-5)",
            highlight=False,
            markup=False,
        )


# --- global options -------------------------------------------------------------------------


def check_cache_dir(path: Path, source: str = "--cache-dir") -> None:
    """UserError unless `path` is a folder or can become one (no file in its way).

    `source` names where the path came from (`--cache-dir` or `$LAYOUTEDIT_CACHE_DIR`).
    """
    for part in (path, *path.parents):
        if part.is_dir():
            return
        if part.exists() or part.is_symlink():
            what = "is a file" if part == path else f"lies under {part}, which is a file"
            raise UserError(f"cache folder {what}; give a folder with {source}", path=path)


def check_folder(path: Path | None, option: str) -> None:
    """UserError (one line) unless `path` (given with `option`) is an existing folder:
    checked before any model work, so a file given for a folder fails at once."""
    if path is None:
        return
    if path.is_file():
        raise UserError(f"{option} takes a folder; this is a file", path=path)
    if not path.is_dir():
        raise UserError(f"{option}: folder not found", path=path)


def check_cache_writable(path: Path) -> None:
    """UserError (one line) when the cache folder cannot be written: learn and edit store
    their results and checkpoints there, so they stop before any work. Reading commands
    (`cache ls`, `show`, `verify`, `export`) work on a read-only cache."""
    from layoutedit_cache import ConceptCache

    ConceptCache(path).require_writable()


def check_backend_name(name: str) -> None:
    """UserError unless `name` is `auto` or a registered backend (no backend is imported)."""
    from importlib.metadata import entry_points

    from layoutedit.backend import ENTRY_POINT_GROUP, _registered

    known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_registered))
    if name != "auto" and name not in known:
        raise UserError(f"unknown backend {name!r}; choose auto or one of: {', '.join(known)}")


def thread_share(environ: dict[str, str] | None = None, cores: int | None = None) -> int:
    """Intra-op threads for this process: OMP_NUM_THREADS when set, else this machine's
    usable cores divided by the local process count (LOCAL_WORLD_SIZE of torchrun and
    `accelerate launch`), at least 1."""
    env = os.environ if environ is None else environ
    given = env.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
    procs = env.get("LOCAL_WORLD_SIZE", "").strip()
    share = cores // int(procs) if procs.isdigit() and int(procs) > 0 else cores
    return max(1, share)


def apply_thread_share() -> None:
    """Give this process its share of the cores (`thread_share`) for torch's intra-op pool.

    Before torch is imported only the environment is set (torch reads OMP_NUM_THREADS when
    it loads, so the CLI stays fast for commands that never import it).
    """
    share = thread_share()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(share)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(share))


def not_yet(what: str) -> UserError:
    """Error for a command whose machinery is not built yet."""
    return UserError(f"`layoutedit {what}` is not yet available in this version")
