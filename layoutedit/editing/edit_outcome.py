"""`EditOutcome`: what `Editor.edit` returns, an `EditResult` that can save itself.

`save(folder)` writes what `layoutedit edit` writes for one layout (`layoutedit.editing.outputs`:
seed PNGs, sheet.png, edit.json) plus, for a layout made by operations or from a label
grid, the layout map `layout.png` in the scene's colours, so that it can be seen and reused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from layoutedit.editing.session import EditResult
from layoutedit.scenes.scene import Scene

LAYOUT_FILE = "layout.png"


@dataclasses.dataclass
class EditOutcome(EditResult):
    """An `EditResult` (`.best()`, `.candidates`, ...) that knows how to save itself."""

    scene: Scene | None = None
    concept_id: str | None = None
    """The concept's cache key, its folder, or None (edited with the plain words)."""
    model: dict[str, str] = dataclasses.field(default_factory=dict)
    operations: tuple[str, ...] = ()
    """The layout operations that made the layout, as typed (`--move cat=+40,-10`)."""
    seconds: float = 0.0
    """Wall-clock seconds of the whole `Editor.edit` call (learning included)."""
    reused_session: bool = False
    """True when the scene's prepared session (concept, prompts, inversion) was reused."""

    def summary(self) -> dict[str, Any]:
        """The short JSON form the CLI prints per layout."""
        best = self.best()
        return {
            "layout": str(self.layout.path) if self.layout.path else None,
            "operations": list(self.operations),
            "best_seed": best.seed,
            "best_loss": round(best.loss, 6),
            "losses": {str(c.seed): round(c.loss, 6) for c in self.candidates},
            "unet_evaluations": self.unet_evaluations,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "seconds": round(self.seconds, 3),
        }

    def save(
        self,
        folder: Path | str,
        *,
        best: bool = False,
        extra: dict[str, Any] | None = None,
        layout_png: bool | None = None,
    ) -> dict[str, Path]:
        """Write the edit into `folder` (replaced atomically): `seed-N.png` per kept seed,
        `sheet.png`, `edit.json` and, for a layout made here, the layout map `layout.png`.

        Args:
            folder: the output folder.
            best: keep only the lowest-loss candidate.
            extra: more top-level `edit.json` fields.
            layout_png: write `layout.png`; default only when the layout has no file
                (operations, a label grid), so that it can be seen and reused.

        Returns:
            Paths: `folder`, `sheet`, `edit_json`, `layout` (`layout.png`, else the layout's
            own file), `best` and `seed-N` per kept seed.
        """
        from layoutedit.atomic import write_png_atomic
        from layoutedit.editing.outputs import (
            RESULT_FILE,
            SHEET_FILE,
            colour_labels,
            seed_file,
            write_edit,
        )

        if self.scene is None:
            raise ValueError("this result has no scene to save against")
        folder = Path(folder)
        record: dict[str, Any] = {"model": self.model, "operations": list(self.operations)}
        scene = self.scene
        if scene.image_path is not None:
            record["scene_files"] = {
                "image": str(scene.image_path),
                "mask": str(scene.mask_path),
                "labels": str(scene.labels_path),
            }
        record.update(extra or {})
        write_edit(self, scene, folder, best=best, concept_id=self.concept_id, extra=record)
        layout_file = self.layout.path
        if layout_png or (layout_png is None and layout_file is None):
            layout_file = folder / LAYOUT_FILE
            write_png_atomic(layout_file, colour_labels(self.layout.labels, scene.palette))
        kept = [self.best()] if best else self.candidates
        paths = {
            "folder": folder,
            "sheet": folder / SHEET_FILE,
            "edit_json": folder / RESULT_FILE,
            "best": folder / seed_file(self.best().seed),
        }
        if layout_file is not None:
            paths["layout"] = layout_file
        paths.update({f"seed-{c.seed}": folder / seed_file(c.seed) for c in kept})
        return paths
