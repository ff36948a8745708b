"""The Gradio wiring of `layoutedit serve`: components, events and API names, nothing more.

What the buttons do is in `layoutedit.serve.actions` (testable without Gradio). Every event
returns the same view (`VIEW`): the tab's state, a status record, the objects, the source,
the layout preview, the painter, the candidates and the history. Work on the model runs in
Gradio's queue with one job at a time (`concurrency_id="model"`); Cancel, boxes, painting
and downloads do not wait behind it. API names (for `gradio_client`): `/open_scene`,
`/upload`, `/rename`, `/learn`, `/set_box`, `/use_painting`, `/edit`, `/continue_from`,
`/downloads`, `/cancel`, `/select_object`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from layoutedit.errors import UserError
from layoutedit.serve import actions
from layoutedit.serve.actions import ServeContext
from layoutedit.serve.boxes import upscale_labels
from layoutedit.serve.safety import list_scenes
from layoutedit.serve.session import SessionState, enlarge, sorted_candidates

PREVIEW_SIDE = 320  # px: small scenes are shown enlarged (nearest)
ELEM_ID = "layoutedit-editor"
CSS = f"#{ELEM_ID} .status {{ font-family: monospace; }}"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def build_app(ctx: ServeContext, initial_scene: str | None = None) -> Any:
    """The Gradio Blocks app over `ctx` (not launched)."""
    import gradio as gr

    def session(state: SessionState | None) -> SessionState:
        # One state per tab (Gradio keeps a gr.State per session), made on its first event
        # with a fresh random id: the id the job gate knows the tab's jobs by.
        return state if state is not None else SessionState()

    def view(state: SessionState, status: dict[str, Any]) -> tuple[Any, ...]:
        scene = state.scene
        if scene is None:
            empty = gr.update(choices=[], value=None)
            return (state, status, [], empty, None, None, None, [], [])
        rows = [
            [k, o.name, _hex(o.colour), f"{100 * o.share:.1f} %"]
            for k, o in enumerate(scene.objects)
        ]
        try:
            target = state.target()
        except UserError as exc:
            status = {**status, "layout_error": exc.line()}
            target = state.base if state.base is not None else scene.labels
        files = ctx.files(state)  # images go out as files named by content (see `shown`)
        preview = files.shown(upscale_labels(target, scene.palette, PREVIEW_SIDE))
        candidates = []
        if state.result is not None:
            candidates = [
                (
                    files.shown(enlarge(c.image, PREVIEW_SIDE)),
                    f"seed {c.seed} · loss {c.loss:.4f} · {c.seconds:.1f} s",
                )
                for c in sorted_candidates(state.result)
            ]
        history = [
            (files.shown(enlarge(h.image, 128)), f"edit {i + 1}: seed {h.seed}")
            for i, h in enumerate(state.history)
        ]
        choice = gr.update(choices=list(scene.names))  # the chosen object stays chosen
        colours: list[str | tuple[str, float]] = [_hex(c) for c in scene.palette]
        painter = gr.update(
            value=preview,
            brush=gr.Brush(colors=colours, default_color=colours[0], color_mode="fixed"),
        )
        return (
            state,
            status,
            rows,
            choice,
            files.shown(enlarge(scene.image, PREVIEW_SIDE)),
            preview,
            painter,
            candidates,
            history,
        )

    def guarded(fn: Callable[..., dict[str, Any]]) -> Callable[..., tuple[Any, ...]]:
        def handler(state: SessionState | None, *args: Any) -> tuple[Any, ...]:
            current = session(state)
            try:
                status = fn(current, *args)
            except UserError as exc:
                raise gr.Error(exc.line(), print_exception=False) from None
            return view(current, status)

        return handler

    def progress_report(progress: Any) -> Callable[[int, int, str], None]:
        def report(done: int, total: int, text: str) -> None:
            progress((done, max(total, 1)), desc=text)

        return report

    def open_scene(state: SessionState, name: str) -> dict[str, Any]:
        return actions.open_scene(ctx, state, name or "")

    def upload(state: SessionState, file: Any, objects: str) -> dict[str, Any]:
        if not file:
            raise UserError("choose a photo to upload")
        path = Path(file if isinstance(file, str) else file.name)
        return actions.open_upload(ctx, state, path, objects or "")

    def rename(state: SessionState, old: str, new: str) -> dict[str, Any]:
        return actions.rename(ctx, state, old or "", new or "")

    def set_box(state: SessionState, name: str, x: float, y: float, s: float) -> dict[str, Any]:
        return actions.set_box(state, name or "", x, y, s)

    def use_painting(state: SessionState, painted: Any) -> dict[str, Any]:
        picture = painted.get("composite") if isinstance(painted, dict) else painted
        if picture is None:
            raise UserError("paint on the layout first")
        return actions.use_painting(state, np.asarray(picture))

    def continue_from(state: SessionState, index: float) -> dict[str, Any]:
        return actions.continue_from(state, int(index or 0))

    def cancel(state: SessionState) -> dict[str, Any]:
        return {"cancel_requested": ctx.gate.cancel(state.id)}

    def forget(state: SessionState | None) -> None:
        # Gradio drops a tab's state an hour after the tab closes; its uploads, downloads and
        # shown images go with it, or a long-running server's work folder only grows.
        if state is not None:
            ctx.files(state).remove()

    with gr.Blocks(title="layoutedit", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        state = gr.State(None, delete_callback=forget)
        gr.Markdown(
            "# layoutedit\nRearrange the objects of one photo: open a scene (or upload a "
            "photo and name its objects), learn it once, move the boxes or paint the layout, "
            "edit.",
            elem_id=ELEM_ID,
        )
        with gr.Row():
            with gr.Column(scale=1):
                scene_name = gr.Dropdown(
                    choices=list_scenes(ctx.root),
                    value=initial_scene,
                    label="Scene under --root",
                    allow_custom_value=True,
                )
                open_button = gr.Button("Open scene", variant="primary")
                with gr.Accordion("Upload a photo (masked by colour clusters)", open=False):
                    photo = gr.File(label="Photo", file_types=["image"], type="filepath")
                    objects = gr.Textbox(
                        label="Objects, comma-separated (colour words match by colour, "
                        "else largest first)",
                        placeholder="red heart, cyan star",
                    )
                    upload_button = gr.Button("Mask and open")
                object_table = gr.Dataframe(
                    headers=["#", "name", "colour", "share"], label="Objects", interactive=False
                )
                with gr.Row():
                    object_choice = gr.Dropdown(label="Object", choices=[], allow_custom_value=True)
                    new_name = gr.Textbox(label="New name")
                rename_button = gr.Button("Rename")
                with gr.Row():
                    learn_button = gr.Button("Learn", variant="primary")
                    cancel_button = gr.Button("Cancel", variant="stop")
                status = gr.JSON(label="Status", elem_classes=["status"])
            with gr.Column(scale=1):
                source = gr.Image(label="Source", type="numpy", interactive=False)
                box_x = gr.Slider(0, 1, value=0.5, step=0.01, label="Box centre x")
                box_y = gr.Slider(0, 1, value=0.5, step=0.01, label="Box centre y")
                box_scale = gr.Slider(0.2, 3, value=1, step=0.05, label="Scale")
                box_button = gr.Button("Set box")
                preview = gr.Image(label="Target layout", type="numpy", interactive=False)
            with gr.Column(scale=1):
                painter = gr.ImageEditor(
                    label="Paint the layout (objects' colours)",
                    type="numpy",
                    brush=gr.Brush(colors=["#fb0101"], color_mode="fixed"),
                )
                paint_button = gr.Button("Use painted layout")
                seeds = gr.Textbox(value="0", label="Seeds")
                edit_button = gr.Button("Edit", variant="primary")
                candidates = gr.Gallery(label="Candidates, best first", columns=3, format="png")
                candidate = gr.Number(value=0, precision=0, label="Candidate (0 = best)")
                continue_button = gr.Button("Continue from this result")
                history = gr.Gallery(label="History", columns=6, height=160, format="png")
                download_button = gr.Button("Prepare downloads")
                files = gr.File(label="Downloads", file_count="multiple")

        outputs = [
            state,
            status,
            object_table,
            object_choice,
            source,
            preview,
            painter,
            candidates,
            history,
        ]

        open_button.click(
            guarded(open_scene),
            [state, scene_name],
            outputs,
            api_name="open_scene",
            concurrency_limit=1,
            concurrency_id="model",
        )
        upload_button.click(
            guarded(upload),
            [state, photo, objects],
            outputs,
            api_name="upload",
            concurrency_limit=1,
            concurrency_id="model",
        )
        rename_button.click(
            guarded(rename),
            [state, object_choice, new_name],
            outputs,
            api_name="rename",
            concurrency_limit=None,
        )

        def learn(state: SessionState | None, progress: Any = gr.Progress()) -> tuple[Any, ...]:
            current = session(state)
            try:
                status = actions.learn(ctx, current, progress_report(progress))
            except UserError as exc:
                raise gr.Error(exc.line(), print_exception=False) from None
            return view(current, status)

        learn_button.click(
            learn, [state], outputs, api_name="learn", concurrency_limit=1, concurrency_id="model"
        )

        def run_edit(
            state: SessionState | None,
            seed_text: str,
            progress: Any = gr.Progress(),
        ) -> tuple[Any, ...]:
            current = session(state)
            try:
                status = actions.edit(ctx, current, seed_text, progress_report(progress))
            except UserError as exc:
                raise gr.Error(exc.line(), print_exception=False) from None
            return view(current, status)

        edit_button.click(
            run_edit,
            [state, seeds],
            outputs,
            api_name="edit",
            concurrency_limit=1,
            concurrency_id="model",
        )
        box_button.click(
            guarded(set_box),
            [state, object_choice, box_x, box_y, box_scale],
            outputs,
            api_name="set_box",
            concurrency_limit=None,
        )
        paint_button.click(
            guarded(use_painting),
            [state, painter],
            outputs,
            api_name="use_painting",
            concurrency_limit=None,
        )
        continue_button.click(
            guarded(continue_from),
            [state, candidate],
            outputs,
            api_name="continue_from",
            concurrency_limit=None,
        )
        cancel_button.click(
            guarded(cancel), [state], outputs, api_name="cancel", concurrency_limit=None
        )

        def select_object(state: SessionState | None, name: str) -> tuple[Any, Any, Any]:
            current = session(state)
            if current.scene is None or name not in current.scene.names:
                return gr.update(), gr.update(), gr.update()
            box = current.boxes[current.scene.names.index(name)]
            return box.cx, box.cy, box.scale

        object_choice.change(
            select_object,
            [state, object_choice],
            [box_x, box_y, box_scale],
            api_name="select_object",
            concurrency_limit=None,
        )

        def prepare_downloads(state: SessionState | None) -> list[str]:
            current = session(state)
            try:
                return [str(p) for p in actions.downloads(ctx, current)]
            except UserError as exc:
                raise gr.Error(exc.line(), print_exception=False) from None

        download_button.click(
            prepare_downloads, [state], [files], api_name="downloads", concurrency_limit=None
        )
        if initial_scene:
            app.load(
                guarded(open_scene),
                [state, scene_name],
                outputs,
                api_visibility="private",
                concurrency_limit=1,
                concurrency_id="model",
            )
    return app


def launch(
    ctx: ServeContext,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    initial_scene: str | None = None,
    block: bool = True,
) -> Any:
    """Build the app and serve it (one model job at a time; a bounded queue).

    Args:
        block: wait until interrupted; False returns at once (tests, embedding).

    Returns:
        The launched Blocks (`.local_url`, `.close()`).

    Raises:
        UserError: the port is taken.
    """
    app = build_app(ctx, initial_scene)
    app.queue(max_size=32, default_concurrency_limit=1)
    try:
        app.launch(
            server_name=host,
            server_port=port,
            share=False,
            max_file_size=ctx.max_upload_bytes,
            allowed_paths=[str(ctx.work_root)],
            prevent_thread_lock=not block,
            quiet=True,
            show_error=True,
            css=CSS,
            footer_links=[],
            ssr_mode=False,
        )
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port} ({exc})") from None
    return app
