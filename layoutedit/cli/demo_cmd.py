"""`layoutedit demo`: learn a generated scene and edit it to three layouts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from layoutedit.cli.common import PresetOption, console, state, user_errors

HELP = """Generate a three-object shapes scene, learn it, and edit it to three layouts.

Writes the scene, the edits, demo-sheet.png and demo.gif to OUT. The first run learns the
scene (a few minutes on a CPU); later runs take the concept from the cache.

Example:

  layoutedit demo --out ./layoutedit-demo
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
        preset: PresetOption = None,
    ) -> None:
        from layoutedit.cli.edit_cmd import parse_seeds, run_edit
        from layoutedit.demo import collect_edits, demo_cases, finish_demo, write_demo_scene

        app_state = state(ctx)
        began = time.perf_counter()
        cases = demo_cases(scene_seed)
        scene_dir = write_demo_scene(cases, out / "scene")
        layouts = sorted((scene_dir / "target_layout").glob("layout*.png"))
        overrides = {"seeds": parse_seeds(seeds)}
        summaries = run_edit(
            app_state, scene_dir, layouts, out / "edits", None, False, overrides, preset, None
        )
        edits = collect_edits(cases, summaries)
        paths = finish_demo(out, cases, edits)
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
