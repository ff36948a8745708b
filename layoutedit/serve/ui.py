"""The Gradio wiring of `layoutedit serve`: components, events and API names, nothing more.

What the controls do is in `layoutedit.serve.actions` and `box_actions` (testable without
Gradio); what the page shows for a state is `layoutedit.serve.view.render`. Every event
answers with the same view (`view.VIEW`): the tab's state, the details (JSON), the status
sentence, the objects table, the picked object, the boxes on the source, the layout preview,
the painter, before/after, the candidates and the history strip.

The boxes are drawn by `gradio_image_annotation` (drag to move, drag a corner or a side to
resize); a release sends the boxes here, where a resize is made to keep the object's
proportions unless "Keep proportions" is off (or Shift is held, see `page.KEYS_JS`).

Work on the model runs in Gradio's queue one job at a time (`concurrency_id="model"`);
Cancel, boxes, painting and downloads do not wait behind it. API names (for
`gradio_client`): `/open_scene`, `/upload`, `/rename`, `/learn`,
`/set_box`, `/move_boxes`, `/nudge_*`, `/undo`, `/redo`, `/reset`, `/use_painting`, `/edit`,
`/choose`, `/continue_from`, `/return_to`, `/downloads`, `/cancel`, `/select_object`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from layoutedit.errors import UserError
from layoutedit.serve import actions, box_actions, view
from layoutedit.serve.actions import ServeContext
from layoutedit.serve.page import CSS, ELEM_ID, KEYS_JS
from layoutedit.serve.safety import list_scenes
from layoutedit.serve.session import SessionState
from layoutedit.serve.wording import OBJECT_HEADERS

Handler = Callable[..., tuple[Any, ...]]
NUDGES = ((-1, 0, "←", "left"), (0, -1, "↑", "up"), (0, 1, "↓", "down"), (1, 0, "→", "right"))
"""(dx, dy, label, name) of the nudge buttons; the arrow keys press them (`page.KEYS_JS`)."""


def _strip(gr: Any, label: str, columns: int, height: int, elem_id: str) -> Any:
    """A row of clickable thumbnails (no preview pane), height in px."""
    return gr.Gallery(
        label=label,
        columns=columns,
        height=height,
        fit_columns=False,
        allow_preview=False,
        format="png",
        elem_id=elem_id,
    )


def build_app(ctx: ServeContext, initial_scene: str | None = None) -> Any:
    """The Gradio Blocks app over `ctx` (not launched)."""
    import gradio as gr
    from gradio_image_annotation import image_annotator

    def session(state: SessionState | None) -> SessionState:
        # One state per tab (Gradio keeps a gr.State per session), made on its first event
        # with a fresh random id: the id the job gate knows the tab's jobs by.
        return state if state is not None else SessionState()

    def fail(exc: UserError) -> Exception:
        # One line on the page (a notice in the corner) that says what to do.
        return gr.Error(exc.line(), title="Cannot do that", print_exception=False)

    def guarded(fn: Callable[..., dict[str, Any]]) -> Handler:
        def handler(state: SessionState | None, *args: Any) -> tuple[Any, ...]:
            current = session(state)
            try:
                summary = fn(current, *args)
            except UserError as exc:
                raise fail(exc) from None
            return view.render(ctx, current, summary)

        return handler

    def with_progress(fn: Callable[..., dict[str, Any]]) -> Handler:
        def handler(
            state: SessionState | None, *args: Any, progress: Any = gr.Progress()
        ) -> tuple[Any, ...]:
            def report(done: int, total: int, line: str) -> None:
                progress((done, max(total, 1)), desc=line)

            current = session(state)
            try:
                summary = fn(current, *args, report)
            except UserError as exc:
                raise fail(exc) from None
            return view.render(ctx, current, summary)

        return handler

    def forget(state: SessionState | None) -> None:
        # Gradio drops a tab's state an hour after the tab closes; its uploads, downloads and
        # shown images go with it, or a long-running server's work folder only grows.
        if state is not None:
            ctx.files(state).remove()

    with gr.Blocks(title="layoutedit", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        state = gr.State(None, delete_callback=forget)
        gr.Markdown(
            "# layoutedit\nRearrange the objects of one photo: drag each object's box on the "
            "picture to where it should go (a corner resizes it), then Edit and compare before "
            "and after.",
            elem_id=ELEM_ID,
        )
        status = gr.Markdown(view.WELCOME, elem_id="status")
        with gr.Row():
            with gr.Column(scale=5):
                scene_name = gr.Dropdown(
                    choices=list_scenes(ctx.root),
                    value=initial_scene,
                    label="Scene under --root",
                    allow_custom_value=True,
                    elem_id="scene-name",
                )
                open_button = gr.Button("Open scene", variant="primary", elem_id="open")
                with gr.Accordion("Upload a photo (masked by its colours)", open=False):
                    photo = gr.File(
                        label="Photo", file_types=["image"], type="filepath", elem_id="photo"
                    )
                    objects = gr.Textbox(
                        label="Its objects, comma-separated (colour words match by colour, "
                        "else largest first)",
                        placeholder="red heart, cyan star",
                        elem_id="object-names",
                    )
                    upload_button = gr.Button("Mask and open", elem_id="upload")
                object_table = gr.Dataframe(
                    headers=OBJECT_HEADERS,
                    datatype=["html", "html", "str", "str"],
                    label="Objects (click a name to rename it)",
                    interactive=True,
                    static_columns=[0, 1, 3],
                    column_count=4,
                    column_widths=["22%", "22%", "36%", "20%"],
                    elem_id="objects",
                )
                with gr.Row():
                    learn_button = gr.Button("Learn", variant="primary", elem_id="learn")
                    cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
                with gr.Accordion("Details (for scripts)", open=False):
                    details = gr.JSON(label="Last action", elem_id="details")
            with gr.Column(scale=6):
                gr.Markdown(
                    "**Source**: drag a box to move its object, drag a corner to resize it "
                    "(arrow keys nudge the picked one)."
                )
                boxes = image_annotator(
                    label="Source",
                    show_label=False,
                    image_type="filepath",
                    disable_edit_boxes=True,
                    sources=None,
                    show_clear_button=False,
                    show_remove_button=False,
                    show_download_button=False,
                    enable_keyboard_shortcuts=False,
                    box_min_size=4,
                    handle_size=7,
                    boxes_alpha=0.25,
                    height=400,
                    elem_id="boxes",
                )
                with gr.Row():
                    keep = gr.Checkbox(
                        value=True, label="Keep proportions (hold Shift to free)", elem_id="keep"
                    )
                    picked = gr.Dropdown(
                        label="Arrow keys move", choices=[], interactive=True, elem_id="picked"
                    )
                with gr.Row():
                    undo_button = gr.Button("Undo", size="sm", min_width=60, elem_id="undo")
                    redo_button = gr.Button("Redo", size="sm", min_width=60, elem_id="redo")
                    reset_button = gr.Button("Reset", size="sm", min_width=60, elem_id="reset")
                with gr.Row():
                    nudges = {
                        (dx, dy): gr.Button(arrow, size="sm", min_width=36, elem_id=f"nudge-{name}")
                        for dx, dy, arrow, name in NUDGES
                    }
                preview = gr.Image(
                    label="Target layout (the objects' layout colours)",
                    type="filepath",
                    interactive=False,
                    height=240,
                    elem_id="preview",
                )
                with gr.Accordion("Paint the layout instead (shapes a box cannot say)", open=False):
                    painter = gr.ImageEditor(
                        label="Paint in the objects' layout colours",
                        type="numpy",
                        brush=gr.Brush(colors=["#fb0101"], color_mode="fixed"),
                        elem_id="painter",
                    )
                    paint_button = gr.Button("Use the painted layout", elem_id="use-painting")
            with gr.Column(scale=6):
                with gr.Row():
                    seeds = gr.Textbox(
                        value="0", label="Seeds (one candidate each)", scale=2, elem_id="seeds"
                    )
                    edit_button = gr.Button("Edit", variant="primary", scale=1, elem_id="edit")
                compare = gr.ImageSlider(
                    label="Before / after: drag the slider",
                    type="filepath",
                    interactive=False,
                    elem_id="compare",
                )
                candidates = _strip(
                    gr, "Candidates, best first (click one to compare it)", 4, 200, "candidates"
                )
                continue_button = gr.Button(
                    "Continue from this result", elem_id="continue", size="sm"
                )
                history = _strip(
                    gr, "History (click a point to go back to its layout)", 8, 150, "history"
                )
                download_button = gr.Button("Prepare downloads", elem_id="prepare-downloads")
                files = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
        # Inputs of the scripted API only (gradio_client): never shown.
        with gr.Row(visible=False):
            api_name = gr.Textbox()
            api_new_name = gr.Textbox()
            api_x, api_y, api_scale = gr.Number(), gr.Number(), gr.Number()
            api_index = gr.Number(precision=0)
            api_set_box = gr.Button()
            api_rename = gr.Button()
            api_choose = gr.Button()
            api_return = gr.Button()

        outputs = [
            state,
            details,
            status,
            object_table,
            picked,
            boxes,
            preview,
            painter,
            compare,
            candidates,
            history,
        ]
        model_job: dict[str, Any] = {"concurrency_limit": 1, "concurrency_id": "model"}
        quick: dict[str, Any] = {"concurrency_limit": None}

        def open_scene(state: SessionState, name: str) -> dict[str, Any]:
            return actions.open_scene(ctx, state, name or "")

        def upload(state: SessionState, file: Any, names: str) -> dict[str, Any]:
            if not file:
                raise UserError("choose a photo to upload")
            path = Path(file if isinstance(file, str) else file.name)
            return actions.open_upload(ctx, state, path, names or "")

        def rename(state: SessionState, old: str, new: str) -> dict[str, Any]:
            return actions.rename(ctx, state, old or "", new or "")

        def rename_cell(state: SessionState | None, event: gr.EditData) -> tuple[Any, ...]:
            # A name typed in the objects table: the row says which object (the table's
            # other columns cannot be edited).
            current = session(state)
            row, column = event.index if isinstance(event.index, (list, tuple)) else (-1, -1)
            if current.scene is None or column != 2 or not 0 <= row < len(current.scene.names):
                return view.render(ctx, current, {"message": "Only names can be changed."})
            old, new = current.scene.names[row], str(event.value).strip()
            if new == old:  # the table reports a cell left as it was (Enter, or leaving it)
                return tuple(gr.skip() for _ in outputs)
            return guarded(lambda s: actions.rename(ctx, s, old, new))(current)

        def move_boxes(state: SessionState | None, value: Any, keep_shape: Any) -> tuple[Any, ...]:
            current = session(state)
            if current.scene is None:
                return tuple(gr.skip() for _ in outputs)
            factor = view.display_factor(current.scene.size)
            rects = view.page_rects(value, current.scene.size)
            try:
                summary = box_actions.move_rects(
                    current,
                    rects,  # type: ignore[arg-type]
                    keep_proportions=bool(keep_shape),
                    tolerance=1.5 / factor,  # the page rounds to its own pixels
                )
            except UserError as exc:
                # The drag is refused: say why, and put the box back where it was.
                gr.Warning(exc.line(), title="Box not moved")
                return view.render(ctx, current, {"message": f"Not moved: {exc.line()}"})
            if summary is None:  # a click, or the page echoing what it was sent
                return tuple(gr.skip() for _ in outputs)
            return view.render(ctx, current, summary)

        def set_box(state: SessionState, name: str, x: float, y: float, s: float) -> dict[str, Any]:
            return box_actions.set_box(state, name or "", x, y, s)

        def select_object(state: SessionState, name: str) -> dict[str, Any]:
            return box_actions.select(state, name or "")

        def use_painting(state: SessionState, painted: Any) -> dict[str, Any]:
            picture = painted.get("composite") if isinstance(painted, dict) else painted
            if picture is None:
                raise UserError("paint on the layout first")
            return box_actions.use_painting(state, np.asarray(picture))

        def choose(state: SessionState, index: float) -> dict[str, Any]:
            return actions.choose(state, int(index or 0))

        def choose_clicked(state: SessionState | None, event: gr.SelectData) -> tuple[Any, ...]:
            return guarded(actions.choose)(state, int(event.index))

        def return_to(state: SessionState, index: float) -> dict[str, Any]:
            return actions.return_to(state, int(index or 0))

        def return_clicked(state: SessionState | None, event: gr.SelectData) -> tuple[Any, ...]:
            return guarded(actions.return_to)(state, int(event.index))

        # Gradio passes the clicked item to a parameter annotated SelectData, read as an object:
        # this module's annotations are strings (`from __future__ import annotations`).
        for clicked in (choose_clicked, return_clicked):
            clicked.__annotations__["event"] = gr.SelectData
        rename_cell.__annotations__["event"] = gr.EditData

        def cancel(state: SessionState | None) -> tuple[Any, ...]:
            # Only the status changes: the job's own answer brings the rest of the page.
            current = session(state)
            stopped = ctx.gate.cancel(current.id)
            said = "Stopping your job…" if stopped else "Nothing of yours is running."
            return current, {"cancel_requested": stopped}, said

        def learn(state: SessionState, report: actions.Report) -> dict[str, Any]:
            return actions.learn(ctx, state, report)

        def edit(state: SessionState, seed_text: str, report: actions.Report) -> dict[str, Any]:
            return actions.edit(ctx, state, seed_text, report)

        def prepare_downloads(state: SessionState | None) -> list[str]:
            try:
                return [str(p) for p in actions.downloads(ctx, session(state))]
            except UserError as exc:
                raise fail(exc) from None

        progress_on: dict[str, Any] = {"show_progress_on": [status]}
        open_button.click(
            guarded(open_scene), [state, scene_name], outputs, api_name="open_scene", **model_job
        )
        upload_button.click(
            guarded(upload), [state, photo, objects], outputs, api_name="upload", **model_job
        )
        object_table.edit(rename_cell, [state], outputs, api_visibility="private", **quick)
        api_rename.click(
            guarded(rename), [state, api_name, api_new_name], outputs, api_name="rename", **quick
        )
        learn_button.click(
            with_progress(learn), [state], outputs, api_name="learn", **model_job, **progress_on
        )
        edit_button.click(
            with_progress(edit),
            [state, seeds],
            outputs,
            api_name="edit",
            **model_job,
            **progress_on,
        )
        cancel_button.click(cancel, [state], [state, details, status], api_name="cancel", **quick)
        boxes.change(
            move_boxes,
            [state, boxes, keep],
            outputs,
            api_name="move_boxes",
            trigger_mode="always_last",
            show_progress="hidden",
            preprocess=False,  # the boxes as sent: see `view.page_rects`
            **quick,
        )
        api_set_box.click(
            guarded(set_box),
            [state, api_name, api_x, api_y, api_scale],
            outputs,
            api_name="set_box",
            **quick,
        )
        picked.input(
            guarded(select_object), [state, picked], outputs, api_name="select_object", **quick
        )
        for dx, dy, _, name in NUDGES:
            nudges[(dx, dy)].click(
                guarded(lambda s, dx=dx, dy=dy: box_actions.nudge(s, dx, dy)),
                [state],
                outputs,
                api_name=f"nudge_{name}",
                show_progress="hidden",
                **quick,
            )
        undo_button.click(guarded(box_actions.undo), [state], outputs, api_name="undo", **quick)
        redo_button.click(guarded(box_actions.redo), [state], outputs, api_name="redo", **quick)
        reset_button.click(guarded(box_actions.reset), [state], outputs, api_name="reset", **quick)
        paint_button.click(
            guarded(use_painting), [state, painter], outputs, api_name="use_painting", **quick
        )
        candidates.select(choose_clicked, [state], outputs, api_visibility="private", **quick)
        api_choose.click(guarded(choose), [state, api_index], outputs, api_name="choose", **quick)
        continue_button.click(
            guarded(lambda s: actions.continue_from(s)),
            [state],
            outputs,
            api_name="continue_from",
            **quick,
        )
        history.select(return_clicked, [state], outputs, api_visibility="private", **quick)
        api_return.click(
            guarded(return_to), [state, api_index], outputs, api_name="return_to", **quick
        )
        download_button.click(prepare_downloads, [state], [files], api_name="downloads", **quick)
        if initial_scene:
            app.load(
                guarded(open_scene),
                [state, scene_name],
                outputs,
                api_visibility="private",
                **model_job,
            )
    return app


def use_own_file_cache(folder: Path) -> None:
    """Point Gradio's file cache of this process at `folder` (before the app is built).

    Why: Gradio copies every file it shows into one cache folder per machine (`/tmp/gradio`),
    named by content, and an app that shuts down deletes every copy it handed out. Two
    servers showing the same picture (one scene opened in both) share that copy, so closing
    one left the other's page pointing at a deleted file (a 403 on its next fetch). Gradio
    reads the folder from `GRADIO_TEMP_DIR` when it builds an app, so this holds for the apps
    built after the call, in this process.
    """
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)


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
            js=KEYS_JS,
            footer_links=[],
            ssr_mode=False,
        )
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port} ({exc})") from None
    return app
