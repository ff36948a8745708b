"""`layoutedit run`: run an edit script (a sequence of layouts for one scene)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from layoutedit.cli.common import (
    OverwriteOption,
    PresetOption,
    check_cache_writable,
    console,
    err_console,
    state,
    user_errors,
)
from layoutedit.errors import UserError

HELP = """Run an edit script: one scene, a sequence of steps, each a layout file or layout
operations on the previous step's layout. The whole script is checked before any model
work; the scene is learned once and inverted once for all steps.

Example:

  layoutedit run script.toml --preset fast

script.toml:

  scene = "scene"

  [[step]]

  move = ["cat=+40,-10"]

  [[step]]

  ops = ["scale pot=0.8", "swap plant,pot"]

Writes OUT/step-01/ ... (as `edit` does, with layout.png), summary.json and sheet.png.
With --frames N: OUT/animation/frame-001.png ..., animation.gif and flicker figures.

Several processes split the steps (or frames), e.g. 2 on one machine:

  accelerate launch --multi_gpu --num_processes 2 -m layoutedit run script.toml
"""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("run", help=HELP)
    @user_errors
    def run_command(
        ctx: typer.Context,
        script: Annotated[
            Path, typer.Argument(metavar="SCRIPT", help="Edit script (TOML).", show_default=False)
        ],
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Output folder; default the script's `out`."),
        ] = None,
        frames: Annotated[
            int | None,
            typer.Option(
                "--frames",
                min=0,
                max=1000,
                help="Animate: N in-between frames per step, one seed, PNGs + animation.gif.",
            ),
        ] = None,
        preset: PresetOption = None,
        overwrite: OverwriteOption = False,
    ) -> None:
        from dataclasses import replace

        from layoutedit.cli.edit_cmd import make_editor
        from layoutedit.cli.progress import learning_progress
        from layoutedit.edit_script import (
            ScriptStep,
            load_script,
            run_animation,
            run_script,
        )
        from layoutedit.editing.sharding import claim_shard
        from layoutedit.logs import configure_library_logging

        app_state = state(ctx)
        configure_library_logging(app_state.verbose)
        checked = load_script(script, model=app_state.model, preset=preset, frames=frames)
        if out is not None:
            checked = replace(checked, out=out)
        from layoutedit.output_guard import check_output

        check_output(checked.out, overwrite=overwrite, cache_dir=app_state.cache_dir)
        check_cache_writable(app_state.cache_dir)
        chatty = not (app_state.quiet or app_state.json)
        if chatty:
            err_console.print(
                f"{script}: {len(checked.steps)} steps checked; scene {checked.scene_dir}"
            )

        def report(step: ScriptStep, record: dict[str, Any]) -> None:
            if not chatty:
                return
            evals = record["unet_evaluations"]
            console.print(
                f"step {step.number} ({step.source}): best seed {record['best_seed']} "
                f"(attention loss {record['best_loss']:.3f}), {record['seconds']:.1f} s, "
                f"UNet {evals['sampling'].get('total', 0)} sampling + "
                f"{evals['inversion'].get('total', 0)} inversion -> {record['folder']}",
                highlight=False,
            )

        def frame_done(n: int, total: int, record: dict[str, Any]) -> None:
            if chatty:
                console.print(
                    f"frame {n}/{total}: attention loss {record['loss']:.3f}, "
                    f"{record['seconds']:.1f} s",
                    highlight=False,
                )

        try:
            shard = claim_shard()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        editor = make_editor(app_state, checked.settings, expected_edits=len(checked.steps))
        with learning_progress(chatty and shard.is_main) as progress:
            if checked.frames:
                summary = run_animation(
                    checked,
                    editor,
                    learn_progress=progress,
                    on_frame=frame_done,
                    shard=shard,
                    overwrite=overwrite,
                )
            else:
                summary = run_script(
                    checked,
                    editor,
                    learn_progress=progress,
                    on_step=report,
                    shard=shard,
                    overwrite=overwrite,
                )
        if summary.get("partial"):  # a process other than rank 0: its share is done
            if chatty:
                count = len(summary.get("frames", summary.get("steps", [])))
                err_console.print(f"process {shard.rank}: {count} items done", highlight=False)
            return
        if app_state.json:
            app_state.emit_json(summary)
            return
        if app_state.quiet:
            return
        if checked.frames:
            fl = summary["flicker"]
            drift = ", ".join(f"{k} {v:.1f}" for k, v in fl["colour_drift"].items())
            console.print(
                f"flicker: background change {fl['background_change']:.2f} (0-255, mean over "
                f"frame pairs); object colour drift per frame: {drift}; "
                f"animation {summary['files']['gif']}",
                highlight=False,
            )
        learned = summary["learn"]
        if learned is not None:
            how = "from the cache" if learned["cached"] else "learned"
            console.print(
                f"concept {learned['key'][:12]} {how} ({learned['seconds']:.1f} s)",
                highlight=False,
            )
        done = (
            f"{len(summary['frames'])} frames"
            if checked.frames
            else f"{len(summary['steps'])} steps"
        )
        console.print(
            f"{done} in {summary['seconds']:.1f} s; sheet {summary['sheet']}, "
            f"summary {checked.out / 'summary.json'}",
            highlight=False,
        )
