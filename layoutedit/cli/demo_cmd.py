"""`layoutedit demo`: learn a generated scene and edit it to three layouts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from layoutedit.cli.common import (
    DEFAULT_MODEL,
    WORLD_MODELS,
    OverwriteOption,
    PresetOption,
    console,
    state,
    user_errors,
)
from layoutedit.errors import UserError

HELP = """Generate a three-object shapes scene, learn it, and edit it to three layouts.

Writes the scene, the edits, demo-sheet.png and demo.gif to OUT. The first run learns the
scene (a few minutes on a CPU); later runs take the concept from the cache.

Example:

  layoutedit demo --out ./layoutedit-demo
  layoutedit demo --world v2 --out ./demo-v2     # an overlap, shadows, light
"""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("demo", help=HELP)
    @user_errors
    def demo_command(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
            "layoutedit-demo"
        ),
        scene_seed: Annotated[
            int, typer.Option("--scene-seed", help="Pick another generated scene.")
        ] = 0,
        seeds: Annotated[
            str | None, typer.Option("--seeds", help="Edit seeds, e.g. 0,8 (default: preset's).")
        ] = None,
        world: Annotated[
            str,
            typer.Option(
                "--world",
                help="The shapes world: v1, or v2 (an overlap, shadows and light; edited on "
                "builtin:shapes-tiny-v2 unless --model names another model).",
            ),
        ] = "v1",
        preset: PresetOption = None,
        overwrite: OverwriteOption = False,
    ) -> None:
        from layoutedit.cli.edit_cmd import parse_seeds, run_edit
        from layoutedit.demo import collect_edits, demo_cases, finish_demo, write_demo_scene
        from layoutedit.output_guard import check_output, relocate_json, staged_output

        app_state = state(ctx)
        began = time.perf_counter()
        if world not in ("v1", "v2"):
            raise UserError(f"--world must be v1 or v2, not {world!r}")
        check_output(out, overwrite=overwrite, cache_dir=app_state.cache_dir)
        if app_state.model == DEFAULT_MODEL:
            app_state.model = WORLD_MODELS[world]
        cases = demo_cases(scene_seed, world)
        overrides = {"seeds": parse_seeds(seeds)}
        # Scene, edits, sheet and GIF are built in one staging folder and moved into OUT
        # together: an error or Ctrl-C leaves OUT as it was.
        with staged_output(out, overwrite=overwrite) as stage:
            scene_dir = write_demo_scene(cases, stage.unit("scene"))
            layouts = sorted((scene_dir / "target_layout").glob("layout*.png"))
            summaries = run_edit(
                app_state,
                scene_dir,
                layouts,
                out / "edits",
                None,
                False,
                overrides,
                preset,
                None,
                stage=stage,
            )
            edits = collect_edits(cases, summaries)
            staged = finish_demo(stage.path, cases, edits)
            for record in sorted(stage.path.glob("edits/*/edit.json")):
                relocate_json(stage, record)
        paths = {name: stage.final(path) for name, path in staged.items()}
        total = time.perf_counter() - began
        if app_state.json:
            app_state.emit_json(
                {
                    "out": str(out),
                    "sheet": str(paths["sheet"]),
                    "gif": str(paths["gif"]),
                    "seconds": round(total, 2),
                    "edits": [
                        {"kind": e.kind, "seconds": round(e.seconds, 3), "loss": e.loss}
                        for e in edits
                    ],
                }
            )
            return
        table = Table(title=f"demo scene: {', '.join(cases[0].names)}")
        for column in ("layout", "edit", "seconds", "attention loss"):
            table.add_column(column)
        for i, e in enumerate(edits):
            table.add_row(f"layout{i + 1}.png", e.kind, f"{e.seconds:.1f}", f"{e.loss:.3f}")
        if not app_state.quiet:
            console.print(table)
        console.print(f"contact sheet: {paths['sheet']}\nanimation:     {paths['gif']}")
        console.print(f"all outputs in {out} ({total:.0f} s in all)")
