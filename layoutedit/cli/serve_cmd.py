"""`layoutedit serve`: the interactive editor in the browser (Gradio, optional extra `ui`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from layoutedit.backend_speed import SERVE_EXPECTED_EDITS
from layoutedit.cli.common import (
    ConfigOption,
    PresetOption,
    console,
    err_console,
    state,
    user_errors,
)
from layoutedit.errors import UserError

HELP = (
    "Serve the interactive editor on this machine: open a scene (or upload a photo and mask "
    "it by colours), drag each object's box on the picture (a corner resizes it; arrows "
    "nudge; undo and redo) or paint the layout, edit, compare before and after, continue "
    "from a result or go back in the history, download the image, layout, sheet and history "
    "GIF.\n\n"
    "Binds to 127.0.0.1; another --host needs --allow-remote (the app has no login). Only "
    "scene folders under --root (default: SCENE's parent folder, else the current folder) "
    'are read. Needs the optional extra: pip install "layoutedit\\[ui]".\n\n'
    "Example: layoutedit serve ./scene --port 7860\n"
)

INSTALL_HINT = (
    'the web app needs Gradio and its box editor: pip install "layoutedit[ui]" (gradio 6 and '
    "gradio-image-annotation)"
)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("serve", help=HELP)
    @user_errors
    def serve_command(
        ctx: typer.Context,
        scene_dir: Annotated[
            Path | None,
            typer.Argument(metavar="SCENE", help="Scene folder to open first.", show_default=False),
        ] = None,
        port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 7860,
        host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
        root: Annotated[
            Path | None,
            typer.Option(
                "--root", help="Folder whose scenes the app may open.", show_default=False
            ),
        ] = None,
        allow_remote: Annotated[
            bool,
            typer.Option("--allow-remote", help="Allow a --host other than a loopback address."),
        ] = False,
        max_upload_mb: Annotated[
            float, typer.Option("--max-upload-mb", min=0.1, help="Largest upload, MiB.")
        ] = 20.0,
        max_upload_megapixels: Annotated[
            float,
            typer.Option("--max-upload-megapixels", min=0.01, help="Largest upload, megapixels."),
        ] = 16.8,
        preset: PresetOption = None,
        config: ConfigOption = None,
    ) -> None:
        from layoutedit.serve.safety import check_host, resolve_under

        app_state = state(ctx)
        warning = check_host(host, allow_remote)
        base = (root or (scene_dir.parent if scene_dir is not None else Path.cwd())).resolve()
        if not base.is_dir():
            raise UserError("--root is not a folder", path=base)
        initial = None
        if scene_dir is not None:
            inside = scene_dir.resolve()
            if inside != base and base not in inside.parents:
                raise UserError("SCENE must lie under --root", path=scene_dir)
            initial = inside.relative_to(base).as_posix() or "."
            resolve_under(base, initial)
        try:
            import gradio  # noqa: F401
            import gradio_image_annotation  # noqa: F401
        except ImportError:
            raise UserError(INSTALL_HINT) from None
        from layoutedit.editor import Editor
        from layoutedit.serve.actions import ServeContext
        from layoutedit.serve.ui import launch, use_own_file_cache

        if warning:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}")
        editor = Editor(
            model=app_state.model,
            backend=app_state.backend,
            cache_dir=app_state.cache_dir,
            preset=preset,
            config=config,
            expected_edits=SERVE_EXPECTED_EDITS,
            report=lambda line: err_console.print(line, highlight=False),
        )
        work = Path(tempfile.mkdtemp(prefix="layoutedit-serve-"))
        try:
            # Gradio's copies apart from the tabs' folders: those are the app's allowed
            # paths, served inline; an upload stays a download-only file of the cache.
            use_own_file_cache(work / "gradio")
            context = ServeContext(
                editor=editor,
                root=base,
                work_root=work / "tabs",
                max_upload_bytes=int(max_upload_mb * 2**20),
                max_upload_pixels=int(max_upload_megapixels * 1e6),
            )
            shown = f"[{host}]" if ":" in host else host
            console.print(
                f"layoutedit serve: http://{shown}:{port}  (scenes under {escape(str(base))}; "
                "Ctrl-C stops)"
            )
            launch(context, host=host, port=port, initial_scene=initial, block=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
