"""Choosing low-memory learning on CUDA when the normal mode would not fit the free memory.

`layoutedit learn` without `--low-memory`/`--no-low-memory`, on a CUDA backend, compares
what the GPU has free with the planner's peak for a learn in the normal mode and switches to
low memory (one printed line) when it would not fit. On the CPU nothing changes.

The prediction is the planner's own (`plan.plan_learning` on the `meta` device with the
loaded model's configs), not an estimate from parameter counts: the peak of a learning step
is mostly activations (5.8 of 9.8 GiB on SD 1.5), which parameter counts do not tell. The
planner takes a few seconds (SD 1.5: about 4, SDXL: about 17), so its answer is kept per
model fingerprint, learn settings, object count, backend and layoutedit version in
`<cache>/memory-plans/` and a second learn on the same model reads it back at once.

`choose_low_memory` is the decision alone (a pure function, tested without a GPU);
`predicted_learn_peak` and `free_device_bytes` feed it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from layoutedit.config import LearnConfig
    from layoutedit.loading.model_loading import LoadedModel
    from layoutedit.planning.archs import ArchSpec

GIB = 2**30
CUDA_MARGIN = GIB
"""Headroom for what the planner does not count on a GPU: allocator caching and rounding,
kernel workspaces (README: add 0.5-1 GB; the CUDA context is already outside the free
memory `torch.cuda.mem_get_info` reports)."""


@dataclass(frozen=True)
class MemoryChoice:
    """Whether to learn in low-memory mode, and the line that says why."""

    low_memory: bool
    reason: str


def choose_low_memory(
    free_bytes: int, normal_peak: int, *, margin: int = CUDA_MARGIN
) -> MemoryChoice:
    """Low memory exactly when the normal mode's predicted peak plus `margin` exceeds what is
    free.

    Args:
        free_bytes: device memory available to the run (free now, plus what the loaded
            model already holds there: the predicted peak counts its weights too).
        normal_peak: the planner's learn peak in the normal mode (bytes, weights included).
        margin: headroom added to the prediction (bytes).

    Returns:
        The choice and a one-line reason in GiB.
    """
    need = normal_peak + margin
    figures = (
        f"predicted learn peak {normal_peak / GIB:.1f} GiB + {margin / GIB:.1f} GiB headroom, "
        f"{free_bytes / GIB:.1f} GiB free"
    )
    if need <= free_bytes:
        return MemoryChoice(False, f"normal memory mode fits: {figures}")
    return MemoryChoice(True, f"switching to --low-memory: {figures}")


def arch_of(model: LoadedModel) -> ArchSpec:
    """The planner's description of a loaded model: its components' configs."""
    from layoutedit.loading.families import family_of
    from layoutedit.planning.archs import ArchSpec

    encoders = tuple(
        {**enc.config.to_dict(), "_class": type(enc).__name__} for enc in model.text_encoders
    )
    unet = dict(model.unet.config)
    scheduler = dict(model.scheduler_config)
    prediction = str(scheduler.get("prediction_type", "epsilon"))
    return ArchSpec(
        name=model.spec,
        family=family_of(unet, len(encoders), prediction),
        unet=unet,
        vae=dict(model.vae.config),
        text_encoders=encoders,
        scheduler=scheduler,
    )


def _plan_key(model: LoadedModel, cfg: LearnConfig, objects: int, backend: str) -> str:
    from layoutedit.version import __version__

    parts = [model.fingerprint, cfg.model_dump(mode="json"), objects, backend, __version__]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def predicted_learn_peak(
    model: LoadedModel,
    cfg: LearnConfig,
    objects: int,
    backend: str,
    cache_dir: Path | None = None,
) -> int:
    """The planner's peak bytes of a learn with `cfg` (as given: pass the normal mode's).

    Args:
        model: the loaded model (its configs are planned, its weights are not touched).
        cfg: learn settings.
        objects: objects in the scene.
        backend: registered backend name (its kernels and autocast are planned).
        cache_dir: keep and reuse the answer under `<cache_dir>/memory-plans/`.
    """
    path = None
    if cache_dir is not None:
        path = cache_dir / "memory-plans" / f"{_plan_key(model, cfg, objects, backend)}.json"
        try:
            return int(json.loads(path.read_text())["learn_peak_bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not planned yet (or unreadable): plan again
    from layoutedit.planning.plan import backend_instance, plan_learning
    from layoutedit.planning.totals import learn_total

    phases = plan_learning(arch_of(model), cfg, backend_instance(backend), objects)
    peak = learn_total(phases, cfg, objects).peak_bytes
    if path is not None:
        from layoutedit.atomic import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"learn_peak_bytes": peak, "model": model.spec})
    return peak


def resident_bytes(model: LoadedModel) -> int:
    """Bytes of the model's parameters and buffers (what it already holds on its device)."""
    total = 0
    for module in model.modules:
        tensors: list[Any] = [*module.parameters(), *module.buffers()]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def free_device_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device (`torch.cuda.mem_get_info`); None for any other device."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def learn_memory_choice(
    model: LoadedModel,
    cfg: LearnConfig,
    objects: int,
    backend: str,
    cache_dir: Path | None = None,
) -> MemoryChoice | None:
    """The choice for a learn about to start with `cfg` on `model`'s device.

    None (keep `cfg`) off CUDA, and when `cfg` is in low memory already.
    """
    free = free_device_bytes(model.device)
    if free is None or cfg.low_memory:
        return None
    peak = predicted_learn_peak(model, cfg, objects, backend, cache_dir)
    # The model's weights are on the device already and counted in the peak.
    return choose_low_memory(free + resident_bytes(model), peak)
