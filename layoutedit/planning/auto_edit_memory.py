"""Choosing low-memory editing on CUDA when the normal mode would not fit the free memory.

`layoutedit edit` without `--low-memory`/`--no-low-memory`, on a CUDA backend, plans the
edit's peak in the normal mode (`plan.plan_editing` on the `meta` device with the loaded
model's configs) and switches to `edit.low_memory` (one printed line) when the peak plus
`auto_memory.CUDA_MARGIN` exceeds what the GPU holds free (plus what the model already holds
there). On the CPU nothing changes. The same decision as learning's (`auto_memory`); low
memory changes no learned concept and no cached inversion (the source is encoded whole and
the guidance's checkpointing recomputes the same values), so switching costs no cache entry.

The planned peak is kept per model fingerprint, edit settings, object count, backend and
layoutedit version in `<cache>/memory-plans/edit-<sha256>.json`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from layoutedit.planning.auto_memory import (
    MemoryChoice,
    arch_of,
    choose_low_memory,
    free_device_bytes,
    resident_bytes,
)

if TYPE_CHECKING:
    from layoutedit.config import EditConfig
    from layoutedit.loading.model_loading import LoadedModel


def _edit_plan_path(
    cache_dir: Path, model: LoadedModel, cfg: EditConfig, objects: int, backend: str
) -> Path:
    from layoutedit.version import __version__

    parts = ["edit", model.fingerprint, cfg.model_dump(mode="json"), objects, backend, __version__]
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return cache_dir / "memory-plans" / f"edit-{digest}.json"


def predicted_edit_peak(
    model: LoadedModel,
    cfg: EditConfig,
    objects: int,
    backend: str,
    cache_dir: Path | None = None,
) -> int:
    """The planner's peak bytes of one edit with `cfg` (every seed, the inversion included).

    Args:
        model: the loaded model (its configs are planned, its weights are not touched).
        cfg: edit settings as given (pass the normal mode's).
        objects: objects in the scene.
        backend: registered backend name (its kernels and weight dtype are planned).
        cache_dir: keep and reuse the answer under `<cache_dir>/memory-plans/`.
    """
    path = None if cache_dir is None else _edit_plan_path(cache_dir, model, cfg, objects, backend)
    if path is not None:
        try:
            return int(json.loads(path.read_text())["edit_peak_bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not planned yet (or unreadable): plan again
    from layoutedit.planning.plan import backend_instance, plan_editing
    from layoutedit.planning.totals import edit_total

    phases = plan_editing(arch_of(model), cfg, backend_instance(backend), objects)
    peak = edit_total(phases, cfg).peak_bytes
    if path is not None:
        from layoutedit.atomic import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"edit_peak_bytes": peak, "model": model.spec})
    return peak


def edit_memory_choice(
    model: LoadedModel,
    cfg: EditConfig,
    objects: int,
    backend: str,
    cache_dir: Path | None = None,
) -> MemoryChoice | None:
    """The choice for an edit about to start with `cfg` on `model`'s device.

    None (keep `cfg`) off CUDA, and when `cfg` is in low memory already.
    """
    free = free_device_bytes(model.device)
    if free is None or cfg.low_memory:
        return None
    peak = predicted_edit_peak(model, cfg, objects, backend, cache_dir)
    choice = choose_low_memory(free + resident_bytes(model), peak)
    # choose_low_memory words it for learning.
    return MemoryChoice(choice.low_memory, choice.reason.replace("learn peak", "edit peak"))
