"""`layoutedit inspect`: what a scene holds and how a target layout moves its objects.

Model-free and fast: reads the scene files only. Token positions are shown only when a
tokenizer folder is given (`--tokenizer`), since loading one costs time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from layoutedit.cli.common import (
    ImageOption,
    LabelsOption,
    MaskOption,
    SceneArgument,
    console,
    state,
    user_errors,
)
from layoutedit.cli.edit_cmd import BoxOption, MoveOption, ScaleOption, SwapOption, ToFrontOption
from layoutedit.config import SceneOptions, resolve_settings
from layoutedit.errors import UserError
from layoutedit.planning.archs import SUPPORTED_FAMILIES
from layoutedit.scenes.layout_edits import operations_layout, parse_flags
from layoutedit.scenes.layout_ops import ObjectMove, object_moves
from layoutedit.scenes.prompts import token_positions
from layoutedit.scenes.scene import Layout, Scene, load_layout, load_scene, prompt_length_warning

HELP = """Show a scene's objects, colours, areas and prompt; with --layout, how each object moves.

Example:

  layoutedit inspect ./scene --layout ./scene/target_layout/layout1.png

  layoutedit inspect ./scene --move cat=+40,-10 --scale pot=0.8   (what edit would do)

  layoutedit --json inspect --image photo.jpg --mask mask.png --labels labels.json

"""
HELP += SUPPORTED_FAMILIES


def load_tokenizer_positions(folder: Path, scene: Scene) -> tuple[dict[str, int], str | None]:
    """Token positions of the scene's placeholders with the CLIP tokenizer in `folder`, and
    a warning when the prompt is longer than the tokenizer's limit (else None).

    `folder` is a tokenizer folder or a diffusers model folder (its `tokenizer/` is used).
    The placeholders are added to the loaded tokenizer first, as learning does.
    """
    from transformers import CLIPTokenizer  # here, so inspect without --tokenizer stays fast

    source = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
    if source.is_dir() and not all((source / f).is_file() for f in ("vocab.json", "merges.txt")):
        # transformers would make an all-but-empty tokenizer and count nonsense
        raise UserError(
            "no CLIP tokenizer here (vocab.json and merges.txt, or a model's tokenizer/)",
            path=folder,
        )
    if not source.is_dir():
        raise UserError("tokenizer folder not found", path=folder)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load a CLIP tokenizer: {first}", path=source) from None
    tokenizer.add_tokens(list(scene.tokens))
    too_long = prompt_length_warning(scene, tokenizer, tokenizer.model_max_length)
    return token_positions(tokenizer, scene.prompt, scene.tokens), too_long


def _move_json(move: ObjectMove) -> dict[str, Any]:
    return {
        "name": move.name,
        "token": move.token,
        "dx": round(move.dx, 2),
        "dy": round(move.dy, 2),
        "scale": round(move.scale, 4),
        "source_area": move.source_area,
        "layout_area": move.layout_area,
        "source_centre": [round(v, 2) for v in move.source_centre],
        "layout_centre": [round(v, 2) for v in move.layout_centre],
    }


def build_report(
    scene: Scene, layouts: list[Layout], positions: dict[str, int] | None
) -> dict[str, Any]:
    """Everything `inspect` shows, as JSON-ready data (the table view renders the same)."""
    height, width = scene.size
    bg_area = int((scene.labels == scene.background_index).sum())
    warnings = list(scene.warnings)
    for layout in layouts:
        warnings.extend(layout.warnings)
    return {
        "image": str(scene.image_path) if scene.image_path else None,
        "mask": str(scene.mask_path) if scene.mask_path else None,
        "labels": str(scene.labels_path) if scene.labels_path else None,
        "width": width,
        "height": height,
        "objects": [
            {
                "name": o.name,
                "token": o.token,
                "colour": list(o.colour),
                "area": o.area,
                "share": round(o.share, 6),
            }
            for o in scene.objects
        ],
        "background": {
            "colour": list(scene.background_colour),
            "area": bg_area,
            "share": round(bg_area / (height * width), 6),
        },
        "prompt": scene.prompt,
        "token_positions": positions,
        "layout_files": [str(p) for p in scene.layout_paths],
        "layouts": [
            {
                "path": str(layout.path) if layout.path else None,
                "moves": [_move_json(m) for m in object_moves(scene, layout)],
            }
            for layout in layouts
        ],
        "warnings": warnings,
    }


def _swatch(rgb: list[int]) -> str:
    r, g, b = rgb
    return f"[on rgb({r},{g},{b})]   [/] ({r}, {g}, {b})"


def _describe(move: dict[str, Any]) -> str:
    """Plain words: "112 px left, 9 px up, 0.77x the size"."""
    parts = []
    dx, dy, scale = move["dx"], move["dy"], move["scale"]
    if abs(dx) >= 0.5:
        parts.append(f"{abs(dx):.0f} px {'right' if dx > 0 else 'left'}")
    if abs(dy) >= 0.5:
        parts.append(f"{abs(dy):.0f} px {'down' if dy > 0 else 'up'}")
    if abs(scale - 1) >= 0.005:
        parts.append(f"{scale:.2f}x the size")
    return ", ".join(parts) or "unchanged"


def print_report(report: dict[str, Any]) -> None:
    """Render `build_report` output with rich tables."""
    console.print(
        f"[bold]Scene[/] {escape(report['image'] or '(arrays)')}: "
        f"{report['width']}x{report['height']} px, {len(report['objects'])} objects"
    )
    table = Table(title="Objects", title_justify="left")
    for column, justify in (
        ("#", "right"),
        ("name", "left"),
        ("token", "left"),
        ("colour", "left"),
        ("area (px)", "right"),
        ("share", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for i, obj in enumerate(report["objects"]):
        table.add_row(
            str(i),
            escape(obj["name"]),
            escape(obj["token"]),
            _swatch(obj["colour"]),
            f"{obj['area']:,}",
            f"{100 * obj['share']:.1f} %",
        )
    bg = report["background"]
    table.add_row(
        str(len(report["objects"])),
        "background",
        "",
        _swatch(bg["colour"]),
        f"{bg['area']:,}",
        f"{100 * bg['share']:.1f} %",
        style="dim",
    )
    console.print(table)
    console.print(f"[bold]Prompt[/] {escape(report['prompt'])}")
    if report["token_positions"] is not None:
        shown = ", ".join(f"{escape(t)} {p}" for t, p in report["token_positions"].items())
        console.print(f"[bold]Token positions[/] (input_ids, start token = 0): {shown}")
    for layout in report["layouts"]:
        moves = Table(title=f"Layout {escape(str(layout['path']))}", title_justify="left")
        for column in ("object", "dx (px)", "dy (px)", "scale", "area (px)", "change"):
            moves.add_column(column, justify="left" if column in ("object", "change") else "right")
        for move in layout["moves"]:
            moves.add_row(
                escape(move["name"]),
                f"{move['dx']:+.1f}",
                f"{move['dy']:+.1f}",
                f"{move['scale']:.2f}",
                f"{move['source_area']:,} -> {move['layout_area']:,}",
                _describe(move),
            )
        console.print(moves)
    if not report["layouts"] and report["layout_files"]:
        names = ", ".join(Path(p).name for p in report["layout_files"])
        console.print(
            f"[bold]Layouts[/] in the scene folder: {escape(names)} (see one with --layout)"
        )
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("inspect", help=HELP)
    @user_errors
    def inspect_command(
        ctx: typer.Context,
        scene_dir: SceneArgument = None,
        layout: Annotated[
            list[Path] | None,
            typer.Option(
                "--layout", "-l", metavar="FILE", help="Target layout image; repeat for several."
            ),
        ] = None,
        image: ImageOption = None,
        mask: MaskOption = None,
        labels: LabelsOption = None,
        tokenizer: Annotated[
            Path | None,
            typer.Option(
                "--tokenizer",
                help="CLIP tokenizer folder (or diffusers model folder) to show token positions.",
            ),
        ] = None,
        config: Annotated[
            Path | None, typer.Option("--config", help="TOML settings file (its `scene` table).")
        ] = None,
        colour_tolerance: Annotated[
            float | None,
            typer.Option(
                "--colour-tolerance",
                help="Max RGB distance from a label colour for a pixel to match it "
                f"(default {SceneOptions().colour_tolerance:g}).",
                show_default=False,
            ),
        ] = None,
        latent_size: Annotated[
            int | None,
            typer.Option(
                "--latent-size",
                help="Also check each object against a model latent grid of this side "
                "(64 for Stable Diffusion 1.x; 1 to 1024).",
            ),
        ] = None,
        move: MoveOption = None,
        scale: ScaleOption = None,
        swap: SwapOption = None,
        box: BoxOption = None,
        to_front: ToFrontOption = None,
    ) -> None:
        app_state = state(ctx)
        # The scene options (prompt template) `learn` would use with this --model.
        options = resolve_settings(
            None,
            config,
            {"scene": {"colour_tolerance": colour_tolerance}},
            model=app_state.model,
        ).scene
        scene = load_scene(
            scene_dir,
            image=image,
            mask=mask,
            labels=labels,
            options=options,
            latent_size=latent_size,
        )
        layouts = [load_layout(p, scene, options) for p in layout or []]
        # Layout operations (as `edit` takes them): on each --layout, else on the source.
        operations = parse_flags(
            move=move or [],
            scale=scale or [],
            swap=swap or [],
            box=box or [],
            to_front=to_front or [],
        )
        if operations:
            bases: list[Layout | None] = list(layouts) or [None]
            layouts = [operations_layout(scene, operations, base) for base in bases]
        positions, too_long = (
            load_tokenizer_positions(tokenizer, scene) if tokenizer else (None, None)
        )
        report = build_report(scene, layouts, positions)
        if operations:
            texts = " ".join(op.text for op in operations)
            for entry in report["layouts"]:
                entry["operations"] = [op.text for op in operations]
                entry["path"] = f"{entry['path'] or 'source'} + {texts}"
        if too_long is not None:
            report["warnings"].append(too_long)
        if app_state.json:
            app_state.emit_json(report)
        else:
            print_report(report)
