"""One browser tab's state, and the files it offers for download.

Each tab has its own `SessionState` (Gradio keeps one per session, never shared); what tabs
share is only the `Editor` (model, concepts, inversions: content-addressed, so sharing them
is safe). A tab's files live in its own folder under the app's work folder.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from layoutedit.atomic import write_atomic, write_png_atomic
from layoutedit.serve.box_edits import BoxHistory, Snapshot
from layoutedit.serve.boxes import ObjectBox, boxes_of, layout_from_boxes

if TYPE_CHECKING:
    from layoutedit.editing.session import Candidate
    from layoutedit.editor import EditOutcome
    from layoutedit.scenes.scene import Scene

GIF_SIDE = 256  # frames of the history GIF are enlarged (nearest) to at least this side
GIF_FRAME_MS = 800


@dataclass
class HistoryItem:
    """One edit of the tab's history strip: its best candidate and the layout behind it."""

    image: np.ndarray
    """(H, W, 3) uint8, the best candidate."""
    layout: np.ndarray
    """(H, W) int16 label grid."""
    seed: int
    loss: float
    seconds: float


@dataclass
class SessionState:
    """What one tab is working on."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    scene_name: str | None = None
    """The root-relative folder, or `upload N`."""
    scene: Scene | None = None
    base: np.ndarray | None = None
    """(H, W) int16: the layout boxes start from (the source's, or the one continued from)."""
    boxes: list[ObjectBox] = field(default_factory=list)
    painted: np.ndarray | None = None
    """(H, W) int16 painted layout; replaces the boxes' layout until a box changes."""
    result: EditOutcome | None = None
    """The last edit (its candidates best first are shown)."""
    history: list[HistoryItem] = field(default_factory=list)
    uploads: int = 0
    edits: int = 0
    changes: BoxHistory = field(default_factory=BoxHistory)
    """Undo and redo of the boxes (and of using a painting)."""
    selected: int = 0
    """The object the arrow keys move (the one moved last, or picked)."""
    chosen: int = 0
    """The candidate of the last edit shown before/after (0 = best)."""
    after: np.ndarray | None = None
    """(H, W, 3) uint8: the picture compared with the source (a candidate or a history
    point); None before the first edit."""

    def set_scene(self, name: str, scene: Scene) -> None:
        """Start over on `scene`: source layout, boxes as they are, no result or history."""
        self.scene_name, self.scene = name, scene
        self.base = scene.labels.copy()
        self.boxes = boxes_of(self.base, len(scene.objects))
        self.painted, self.result, self.history = None, None, []
        self.changes.clear()
        self.selected, self.chosen, self.after = 0, 0, None

    def snapshot(self) -> Snapshot:
        """The boxes and painting now (what undo returns to)."""
        return Snapshot(tuple(self.boxes), self.painted)

    def restore(self, snapshot: Snapshot) -> None:
        """Put back boxes and painting from `snapshot`."""
        self.boxes, self.painted = list(snapshot.boxes), snapshot.painted

    def target(self) -> np.ndarray:
        """(H, W) int16 target layout: the painted one, else the base moved to the boxes.

        Raises:
            UserError: no scene yet, or boxes that push an object out of the frame.
        """
        from layoutedit.errors import UserError

        if self.scene is None or self.base is None:
            raise UserError("open a scene or upload a photo first")
        if self.painted is not None:
            return self.painted
        return layout_from_boxes(self.base, self.scene.names, self.boxes)

    def continue_from(self) -> None:
        """Make the last result the current state: its layout becomes the base of the next
        edit (the source image, concept and inversion stay, so nothing is learned again)."""
        from layoutedit.errors import UserError

        if self.result is None or self.scene is None:
            raise UserError("edit first, then continue from a result")
        self.base = self.result.layout.labels.copy()
        self.boxes = boxes_of(self.base, len(self.scene.objects))
        self.painted = None
        self.changes.clear()  # boxes are read against the base: old states mean other places


def sorted_candidates(result: EditOutcome) -> list[Candidate]:
    """The candidates best first, in the order `EditResult.best` picks: by layout score when
    every candidate has one (ties: lower loss), else by the final attention loss."""
    if all(c.layout_score is not None for c in result.candidates):
        return sorted(result.candidates, key=lambda c: (-(c.layout_score or 0.0), c.loss))
    return sorted(result.candidates, key=lambda c: c.loss)


def enlarge(image: np.ndarray, side: int = GIF_SIDE) -> np.ndarray:
    """(h, w, 3) uint8 enlarged by a whole factor (nearest) to a long side >= `side`."""
    factor = max(1, -(-side // max(image.shape[:2])))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


class SessionFiles:
    """A tab's folder for uploads and downloads, under the app's work folder."""

    def __init__(self, work_root: Path, session: str) -> None:
        safe = "".join(ch for ch in session if ch.isalnum())[:64] or "session"
        self.folder = work_root / safe
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """A file of this tab's folder."""
        return self.folder / name

    def history_gif(self, source: np.ndarray, history: list[HistoryItem]) -> Path:
        """`history.gif`: the source, then every edit's best image, enlarged."""
        frames = [Image.fromarray(enlarge(source))]
        frames += [Image.fromarray(enlarge(item.image)) for item in history]
        path = self.path("history.gif")

        def write(tmp: Path) -> None:
            frames[0].save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=frames[1:],
                duration=GIF_FRAME_MS,
                loop=0,
            )

        return write_atomic(path, write)

    def save_image(self, name: str, image: np.ndarray) -> Path:
        """Write an (H, W, 3) uint8 PNG into the folder."""
        return write_png_atomic(self.path(name), image)

    def shown(self, image: np.ndarray) -> str:
        """The path of an (H, W, 3) uint8 image as a PNG named by its content, for a view.

        Why not hand Gradio the array: it writes arrays to its cache under a name made from
        the bytes by truncating and rewriting the file on every use, so while one request's
        client downloads an image, another request showing the same image (a running
        learn's reply, a second tab) empties it under the download. A file named by its
        content is never rewritten, and Gradio copies paths into its cache atomically.
        """
        picture = np.ascontiguousarray(image, dtype=np.uint8)
        digest = hashlib.sha256(str(picture.shape).encode() + picture.tobytes()).hexdigest()
        path = self.path(f"view-{digest[:24]}.png")
        if not path.exists():
            write_png_atomic(path, picture)
        return str(path)

    def remove(self) -> None:
        """Delete the tab's folder."""
        shutil.rmtree(self.folder, ignore_errors=True)
