"""Writing one layout's edit to disk: a PNG per seed, a contact sheet, and `edit.json`.

Folder layout (one per target layout, default `./layoutedit-out/<scene>/<layout-stem>/`):

    seed-0.png, seed-8.png, ...   the candidates at the source image's size
    sheet.png                     source | source mask | target layout | candidates, each
                                  candidate labelled with its seed and final attention loss
    edit.json                     settings, concept id, per-seed per-object attention loss,
                                  timings, UNet evaluations

With `best`, only the lowest-loss candidate's PNG (and sheet tile) is kept; `edit.json`
still lists every seed's losses. The folder is written next to its final place and renamed
into it, so an interrupted run leaves the previous folder or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from layoutedit.atomic import atomic_folder
from layoutedit.errors import UserError

if TYPE_CHECKING:
    from layoutedit.editing.session import Candidate, EditResult
    from layoutedit.scenes.scene import Scene

RESULT_FILE = "edit.json"


def _finite_or_none(value: float) -> float | None:
    """A loss as strict JSON has it: None where none was measured (NaN, e.g. `denoise` off),
    since NaN is not JSON."""
    return value if math.isfinite(value) else None


SHEET_FILE = "sheet.png"
_TILE_MIN, _TILE_MAX = 160, 384  # longest side of a sheet tile, pixels
_CAPTION_H = 30
_GAP = 6


def seed_file(seed: int) -> str:
    """File name of a candidate: `seed-8.png`."""
    return f"seed-{seed}.png"


def colour_labels(labels: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """(H, W) label grid -> (H, W, 3) uint8 colour image (label i gets palette[i])."""
    return np.asarray(palette, dtype=np.uint8)[labels]


def _tile(image: np.ndarray, nearest: bool) -> Image.Image:
    """Scale so the longest side lies in [_TILE_MIN, _TILE_MAX] (integer factor when enlarging,
    so small images stay crisp)."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest < _TILE_MIN:
        factor = float(-(-_TILE_MIN // longest))
    elif longest > _TILE_MAX:
        factor = _TILE_MAX / longest
    else:
        factor = 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    method = Image.Resampling.NEAREST if nearest or factor >= 1 else Image.Resampling.LANCZOS
    return Image.fromarray(image).resize(size, method)


def contact_sheet(
    scene: Scene, layout_labels: np.ndarray, candidates: Sequence[Candidate]
) -> np.ndarray:
    """(H', W', 3) uint8 sheet: source, source mask, target layout, then the candidates, in
    one row, each captioned (candidates: `seed N` and `loss 0.123`)."""
    tiles = [
        (_tile(scene.image, nearest=False), ["source"]),
        (_tile(colour_labels(scene.labels, scene.palette), nearest=True), ["source mask"]),
        (_tile(colour_labels(layout_labels, scene.palette), nearest=True), ["target layout"]),
    ]
    for cand in candidates:
        tiles.append(
            (_tile(cand.image, nearest=False), [f"seed {cand.seed}", f"loss {cand.loss:.3f}"])
        )
    tile_w = max(t.width for t, _ in tiles)
    tile_h = max(t.height for t, _ in tiles)
    sheet = Image.new(
        "RGB",
        (len(tiles) * (tile_w + _GAP) + _GAP, tile_h + _CAPTION_H + 2 * _GAP),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (tile, lines) in enumerate(tiles):
        x = _GAP + i * (tile_w + _GAP)
        sheet.paste(tile, (x, _GAP))
        # A thin frame, so a white mask background does not merge with the sheet's.
        draw.rectangle(
            (x - 1, _GAP - 1, x + tile.width, _GAP + tile.height), outline=(190, 190, 190)
        )
        for j, line in enumerate(lines):
            draw.text((x + 2, _GAP + tile_h + 2 + 13 * j), line, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


def result_record(
    result: EditResult,
    kept: Sequence[Candidate],
    *,
    concept_id: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of `edit.json` (JSON types only)."""
    kept_seeds = {c.seed for c in kept}
    best = result.best()
    layout_path = result.layout.path
    return {
        "layout": str(layout_path) if layout_path is not None else None,
        "prompt": result.prompt,
        "concept": concept_id,
        "backend": result.backend,
        "attention_res": result.attention_res,
        "record_layers": list(result.record_layers),
        "settings": result.settings,
        "best_seed": best.seed,
        "candidates": [
            {
                "seed": c.seed,
                "file": seed_file(c.seed) if c.seed in kept_seeds else None,
                "loss": _finite_or_none(c.loss),
                "object_losses": {k: _finite_or_none(v) for k, v in c.object_losses.items()},
                "seconds": c.seconds,
                "guided_steps": c.guided_steps,
                "refinement_passes": c.refinement_passes,
                "nonfinite_gradients": c.nonfinite_gradients,
            }
            for c in result.candidates
        ],
        "timings": result.timings,
        "unet_evaluations": result.unet_evaluations,
        "warnings": list(result.layout.warnings),
        **dict(extra or {}),
    }


def _check_replaceable(folder: Path) -> None:
    """Refuse to replace a folder that is not an earlier output of this command."""
    if folder.exists() and (
        not folder.is_dir() or (any(folder.iterdir()) and not (folder / RESULT_FILE).exists())
    ):
        raise UserError(
            "output folder exists and is not a layoutedit edit output; choose another --out",
            path=folder,
        )


def write_edit(
    result: EditResult,
    scene: Scene,
    folder: Path,
    *,
    best: bool = False,
    concept_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write one layout's outputs into `folder` (replacing an earlier edit output there).

    Args:
        result: the edit of one layout.
        scene: its scene (source image and mask for the sheet).
        folder: the layout's output folder.
        best: keep only the lowest-loss candidate.
        concept_id: the concept's cache key or folder, recorded in `edit.json`.
        extra: more top-level `edit.json` fields (model, scene, ...).

    Returns:
        `folder`.

    Raises:
        UserError: `folder` exists and is not an earlier edit output.
    """
    folder = Path(folder)
    _check_replaceable(folder)
    kept = [result.best()] if best else list(result.candidates)
    with atomic_folder(folder) as tmp:
        for cand in kept:
            Image.fromarray(cand.image).save(tmp / seed_file(cand.seed), format="PNG")
        sheet = contact_sheet(scene, result.layout.labels, kept)
        Image.fromarray(sheet).save(tmp / SHEET_FILE, format="PNG")
        record = result_record(result, kept, concept_id=concept_id, extra=extra)
        (tmp / RESULT_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return folder
