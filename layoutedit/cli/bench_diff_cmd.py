"""`layoutedit bench-diff`: two benchmark runs of the same cases, edit by edit."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from layoutedit.cli.common import console, state, user_errors
from layoutedit.errors import UserError

HELP = """Compare two `layoutedit bench` runs of the same cases: AFTER minus BEFORE.

For each variant both runs have, each metric's mean difference over the edits they share,
paired edit by edit, with a 95 % bootstrap interval: `*` marks a difference whose interval
excludes zero with AFTER better, `-` with AFTER worse. Use it to judge a change of model,
preset, config or code on one seed's cases; runs of other cases are refused.

Example:

  layoutedit bench --seed 2000 --scenes 4 --out runs/before

  layoutedit --model ./my-model bench --seed 2000 --scenes 4 --out runs/after

  layoutedit bench-diff runs/before runs/after --markdown runs/diff.md
"""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("bench-diff", help=HELP)
    @user_errors
    def bench_diff_command(
        ctx: typer.Context,
        before: Annotated[Path, typer.Argument(help="The earlier run's --out folder.")],
        after: Annotated[Path, typer.Argument(help="The later run's --out folder.")],
        markdown: Annotated[
            Path | None,
            typer.Option("--markdown", help="Also write the table with its intervals here."),
        ] = None,
    ) -> None:
        from layoutedit.atomic import write_text_atomic
        from layoutedit.bench.report import (
            METRIC_NAMES_V2,
            difference_cells,
            markdown_table,
            rich_differences,
        )
        from layoutedit.bench.run_diff import diff_runs, load_run

        if markdown is not None and markdown.is_dir():
            raise UserError("is a folder: give --markdown a file name", path=markdown)
        comparisons = diff_runs(load_run(before), load_run(after))
        v2 = any(c.metric == "image_psnr" for c in comparisons)  # runs of world v2
        app_state = state(ctx)
        if markdown is not None:
            lines = [
                f"# {after} minus {before}",
                "",
                "Paired over the edits both runs made: mean [95 % bootstrap interval]; `*` "
                "the later run better, `-` worse, where the interval excludes zero.",
                "",
                *markdown_table(*difference_cells(comparisons, "after minus")),
                "",
            ]
            if v2:
                cells = difference_cells(comparisons, "after minus", metrics=METRIC_NAMES_V2)
                lines += ["World v2 metrics:", "", *markdown_table(*cells), ""]
            try:
                write_text_atomic(markdown, "\n".join(lines))
            except OSError as exc:
                raise UserError(f"cannot write the table: {exc.strerror}", path=markdown) from None
        if app_state.json:
            app_state.emit_json([asdict(c) for c in comparisons])
            return
        title = (
            f"{after} minus {before} (mean): * better, - worse, where the 95 % paired "
            "interval excludes 0" + ("" if markdown else " (--markdown writes the intervals)")
        )
        console.print(rich_differences(comparisons, "after minus", title))
        if v2:
            console.print(
                rich_differences(
                    comparisons,
                    "after minus",
                    "world v2 metrics (lower is better for texture and seam)",
                    METRIC_NAMES_V2,
                )
            )
        if markdown is not None and not app_state.quiet:
            console.print(f"written: {markdown}", highlight=False)
