"""Running a checked manifest in one process of a batch: its share of the scenes, row by row.

Work is handed out by scene groups (`Manifest.groups`: rows whose concept is the same), so a
scene is learned by one process and no process waits on another's learning. Process `rank`
of `world` takes the groups `i % world == rank` first (`static` stops there); with `steal`
(the default) it then takes the other groups that no process has claimed yet, from the end
backwards, so that processes that finish early take work from those still busy. A group is
claimed with a lock file for as long as it runs (`Workspace.claim`).

A row whose folder holds a `row.json` with the same content key (`ManifestRow.key`) is
skipped. A row that raises is recorded as failed with its reason and the run goes on; the
next run tries it again.
"""

from __future__ import annotations

import io
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from layoutedit.batch.coco import object_annotations
from layoutedit.batch.manifest import Manifest, ManifestRow, edit_layout
from layoutedit.batch.workspace import Workspace, process_identity, sha256_bytes
from layoutedit.editing.sharding import Shard
from layoutedit.errors import UserError

if TYPE_CHECKING:
    from layoutedit.editor import Editor

SPLITS = ("steal", "static")
SOURCE_FILE = "source.png"
STAGES = ("learn", "inversion", "sampling")


def edit_file(edit: int, seed: int) -> str:
    """File name of an edited image: `edit-01-seed-8.png`."""
    return f"edit-{edit:02d}-seed-{seed}.png"


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _add(total: dict[str, dict[str, int]], stage: str, counts: dict[str, Any] | None) -> None:
    into = total.setdefault(stage, {})
    for key, value in (counts or {}).items():
        if isinstance(value, int):
            into[key] = into.get(key, 0) + value


@dataclass
class Tally:
    """What one process did in this run."""

    rank: int
    world: int
    started: float = field(default_factory=time.time)
    done: int = 0
    failed: int = 0
    row_seconds: float = 0.0
    unet_evaluations: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self, finished: bool) -> dict[str, Any]:
        """JSON form (`ranks/rank-N.json` of the stage)."""
        return {
            "rank": self.rank,
            "world": self.world,
            **process_identity(),
            "started": self.started,
            "finished": time.time() if finished else None,
            "done": self.done,
            "failed": self.failed,
            "row_seconds": round(self.row_seconds, 3),
            "unet_evaluations": self.unet_evaluations,
        }


def group_order(count: int, shard: Shard, split: str) -> list[int]:
    """Indices of the `count` groups in the order process `shard` tries them."""
    own = list(range(shard.rank, count, shard.world))
    if split == "static":
        return own
    return own + [i for i in reversed(range(count)) if i % shard.world != shard.rank]


def run_row(row: ManifestRow, editor: Editor, key: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Learn (or find) a row's scene and make every edit; nothing is written.

    Returns:
        The row's files (name -> PNG bytes) and its record (`row.json`): the images with
        their seeds, losses, operations and COCO object annotations, the learning, seconds
        and UNet evaluations.
    """
    began = time.perf_counter()
    editor.settings = row.settings
    cfg = row.settings.edit
    scene = editor.scene(row.scene_dir, image=row.image, mask=row.mask, labels=row.labels)
    evals: dict[str, dict[str, int]] = {}
    learned = None
    if cfg.use_concept:
        started = time.perf_counter()
        obtained = editor.obtain(scene)
        learned = {
            "key": obtained.key,
            "cached": obtained.cached,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if not obtained.cached:
            _add(evals, "learn", obtained.concept.meta.get("unet_evals"))
    height, width = scene.size
    files = {SOURCE_FILE: _png(scene.image)}
    images: list[dict[str, Any]] = [
        {
            "file": SOURCE_FILE,
            "kind": "source",
            "edit": None,
            "seed": None,
            "best": None,
            "loss": None,
            "operations": [],
            "layout": None,
            "width": width,
            "height": height,
            "objects": object_annotations(scene.labels, scene.names),
        }
    ]
    for number, edit in enumerate(row.edits, start=1):
        layout = edit_layout(scene, edit, row.settings)
        result = editor.edit(scene, layout)
        for stage in ("inversion", "sampling"):
            _add(evals, stage, result.unet_evaluations.get(stage))
        best = result.best()
        kept = [best] if cfg.best else list(result.candidates)
        objects = object_annotations(layout.labels, scene.names)
        for cand in kept:
            name = edit_file(number, cand.seed)
            files[name] = _png(cand.image)
            images.append(
                {
                    "file": name,
                    "kind": "edit",
                    "edit": number,
                    "seed": cand.seed,
                    "best": cand.seed == best.seed,
                    "loss": round(float(cand.loss), 6),
                    "operations": list(edit.operations),
                    "layout": edit.layout_text,
                    "width": width,
                    "height": height,
                    "objects": objects,
                }
            )
    for image in images:
        data = files[image["file"]]
        image["size"], image["sha256"] = len(data), sha256_bytes(data)
    record = {
        "format": 1,
        "status": "done",
        "id": row.id,
        "line": row.line,
        "key": key,
        "scene": row.scene_text,
        "objects": list(scene.names),
        "images": images,
        "learn": learned,
        "seconds": round(time.perf_counter() - began, 3),
        "unet_evaluations": evals,
    }
    return files, record


ProgressLine = Callable[[str], None]


class BatchProcess:
    """One process's part of a batch run.

    Args:
        manifest: the checked manifest.
        editor: loads the model once; its settings are set per row.
        workspace: the opened workspace.
        shard: this process's rank and the run's process count.
        split: `steal` or `static` (module docstring).
        say: receives one progress line per row.
    """

    def __init__(
        self,
        manifest: Manifest,
        editor: Editor,
        workspace: Workspace,
        shard: Shard,
        split: str = "steal",
        say: ProgressLine | None = None,
    ) -> None:
        if split not in SPLITS:
            raise UserError(f"--split {split!r}: choose {' or '.join(SPLITS)}")
        self.manifest, self.editor, self.workspace = manifest, editor, workspace
        self.shard, self.split = shard, split
        self.say = say or (lambda _line: None)
        self.tally = Tally(shard.rank, shard.world)
        self._began = time.perf_counter()
        self._timed: list[float] = []  # seconds of each row this process ran
        self._before = 0  # rows done by an earlier, committed run

    def run(self) -> Tally:
        """Run this process's groups (then others' with `steal`); returns the tally."""
        groups = self.manifest.groups()
        fingerprint = self.editor.model.fingerprint
        self.workspace.write_rank(self.shard.rank, self.tally.as_dict(False))
        status = {r.id: self._done_where(r, fingerprint) for r in self.manifest.rows}
        self._before = sum(where == "out" for where in status.values())
        for index in group_order(len(groups), self.shard, self.split):
            group = groups[index]
            pending = [r for r in group if status[r.id] is None]
            if not pending:
                continue
            with self.workspace.claim(group[0].group) as mine:
                if not mine:
                    continue  # another process runs this scene now
                for row in group:
                    # Checked again under the claim: another process may have run it since.
                    if self._done_where(row, fingerprint) is None:
                        self._one(row, row.key(fingerprint))
        self.workspace.write_rank(self.shard.rank, self.tally.as_dict(True))
        return self.tally

    def _done_where(self, row: ManifestRow, fingerprint: str) -> str | None:
        """`stage` (done by this run), `out` (by an earlier one) or None (to do)."""
        found = self.workspace.record(row.id)
        if found is None or found[1].get("key") != row.key(fingerprint):
            return None
        return found[0]

    def _one(self, row: ManifestRow, key: str) -> None:
        began = time.perf_counter()
        try:
            files, record = run_row(row, self.editor, key)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # one scene's failure must not stop the others
            _free_device_memory()  # after a GPU out-of-memory, the next scene starts clean
            seconds = time.perf_counter() - began
            reason = exc.line() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            self.workspace.write_failure(
                row.id,
                {
                    "status": "failed",
                    "id": row.id,
                    "line": row.line,
                    "key": key,
                    "reason": reason,
                    "traceback": None if isinstance(exc, UserError) else traceback.format_exc(),
                    "seconds": round(seconds, 3),
                    "rank": self.shard.rank,
                    **process_identity(),
                },
            )
            self.tally.failed += 1
            self.tally.row_seconds += seconds
            self._timed.append(seconds)
            self._progress(row, f"FAILED: {reason}")
            return
        record.update(
            rank=self.shard.rank,
            **process_identity(),
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        self.workspace.write_row(row.id, files, record)
        self.tally.done += 1
        self.tally.row_seconds += record["seconds"]
        self._timed.append(record["seconds"])
        for stage in STAGES:
            _add(self.tally.unet_evaluations, stage, record["unet_evaluations"].get(stage))
        self._progress(row, f"done in {record['seconds']:.1f} s")

    def _progress(self, row: ManifestRow, what: str) -> None:
        t = self.tally
        total = len(self.manifest.rows)
        left = max(0, total - len(self.workspace.accounted()) - self._before)
        elapsed = time.perf_counter() - self._began
        line = (
            f"[{t.rank}/{t.world}] line {row.line} {row.id}: {what}; this process: "
            f"{t.done} done, {t.failed} failed in {elapsed:.0f} s"
        )
        if self._timed and left:
            eta = sum(self._timed) / len(self._timed) * left / t.world
            line += f"; about {_duration(eta)} left ({left} rows)"
        self.say(line)


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
