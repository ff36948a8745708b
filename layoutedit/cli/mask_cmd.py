"""`layoutedit mask`: make a scene folder's mask from an image and object names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from layoutedit.cli.common import console, state, user_errors
from layoutedit.masking import MaskMethod, mask_scene
from layoutedit.masking.clipseg import DEFAULT_SEGMENTER, DEFAULT_THRESHOLD
from layoutedit.masking.naming import parse_objects
from layoutedit.scenes.image_io import read_rgb

HELP = (
    "Make mask.png and semantic_dict.json for IMAGE: OUT becomes a scene folder that learn, "
    "edit and inspect read.\n\n"
    "`colours` (the default without --segmenter) clusters the image's colours "
    "(k-means), keeps each object's largest piece and fills its holes: no model, made for "
    "flat-coloured scenes such as the embedded shapes world. Which object is which: when "
    "every name holds a basic colour word (red, orange, yellow, green, cyan, blue, purple, "
    "pink, brown, white, black), each name goes to the region nearest its colour; otherwise "
    "list the objects largest first.\n\n"
    "`clipseg` (the default with --segmenter) finds each name with a CLIPSeg model "
    f"from a local folder or the offline Hugging Face cache ({DEFAULT_SEGMENTER} when "
    "--segmenter is not given); never downloaded, safetensors weights only.\n\n"
    "Examples:\n\n"
    '  layoutedit mask shapes.png --objects "red heart,cyan star" --out ./scene\n\n'
    '  layoutedit mask photo.jpg --objects "cat,pot,plant" --out ./scene '
    "--segmenter ~/models/clipseg\n"
)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("mask", help=HELP)
    @user_errors
    def mask_command(
        ctx: typer.Context,
        image: Annotated[
            Path, typer.Argument(metavar="IMAGE", help="The photo.", show_default=False)
        ],
        objects: Annotated[
            str,
            typer.Option(
                "--objects",
                help='Object names, comma-separated: "cat,pot,plant".',
                show_default=False,
            ),
        ],
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Scene folder to write.", show_default=False)
        ],
        method: Annotated[
            MaskMethod | None,
            typer.Option(
                "--method",
                help="colours or clipseg. Default: clipseg with --segmenter, else colours.",
                show_default=False,
            ),
        ] = None,
        segmenter: Annotated[
            str | None,
            typer.Option(
                "--segmenter",
                metavar="PATH",
                help="CLIPSeg model folder (or a repo id in the offline Hugging Face cache).",
            ),
        ] = None,
        threshold: Annotated[
            float,
            typer.Option(
                "--threshold", min=0.0, max=1.0, help="clipseg: lowest score of an object pixel."
            ),
        ] = DEFAULT_THRESHOLD,
        overwrite: Annotated[
            bool,
            typer.Option(
                "--overwrite",
                "--force",
                help="Write into an OUT that holds files layoutedit did not write: only "
                "image.png, mask.png and semantic_dict.json are replaced, the rest is kept. "
                "Without it such a folder is refused before any work.",
            ),
        ] = False,
    ) -> None:
        from layoutedit.output_guard import check_output

        app_state = state(ctx)
        names = parse_objects(objects)
        check_output(out, overwrite=overwrite, cache_dir=app_state.cache_dir)
        chosen = method or (MaskMethod.clipseg if segmenter else MaskMethod.colours)
        pixels = read_rgb(image, what="image")
        scene = mask_scene(
            pixels,
            names,
            out,
            chosen,
            segmenter=segmenter,
            threshold=threshold,
            overwrite=overwrite,
        )
        report = {
            "scene": str(out),
            "method": chosen.value,
            "objects": [
                {"name": o.name, "colour": list(o.colour), "area": o.area, "share": o.share}
                for o in scene.objects
            ],
        }
        if app_state.json:
            app_state.emit_json(report)
            return
        if app_state.quiet:
            return
        table = Table(title=f"Scene {escape(str(out))} ({chosen.value})", title_justify="left")
        for column in ("name", "colour", "area (px)", "share"):
            table.add_column(column, justify="left" if column in ("name", "colour") else "right")
        for o in scene.objects:
            r, g, b = o.colour
            table.add_row(
                escape(o.name),
                f"[on rgb({r},{g},{b})]   [/] ({r}, {g}, {b})",
                f"{o.area:,}",
                f"{100 * o.share:.1f} %",
            )
        console.print(table)
        console.print(f"next: layoutedit inspect {escape(str(out))}")
