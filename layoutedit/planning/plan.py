"""The cost plan of one model, preset and backend: every phase's step, and the totals.

    plan = make_plan(load_arch("sd15"), settings, backend="cuda", low_memory=True)

Learning runs on fp32 weights (as `learn.learn_concept` expects), autocast when
`mixed_precision` is set; editing on the backend's weight dtype (fp16 on `cuda`). The
backend's own `install_attention` chooses the kernels; its `batch_cfg` whether the two
predictions share a UNet call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from layoutedit.backend import list_backends
from layoutedit.config import EditConfig, LearnConfig, Settings
from layoutedit.editing.low_memory import prepare_editing
from layoutedit.errors import UserError
from layoutedit.learning.low_memory import frozen_dtype, store_frozen
from layoutedit.planning.archs import ArchSpec
from layoutedit.planning.fused import use_fused_model
from layoutedit.planning.meta_model import PlanModel, build_plan_model, quiet_diffusers
from layoutedit.planning.phases import (
    PhaseContext,
    PhaseCost,
    finetune_step,
    guided_step,
    install_edit_attention,
    inversion_step,
    textual_inversion_step,
    unguided_step,
    vae_decode,
    vae_encode,
)
from layoutedit.planning.totals import Total, edit_total, learn_total
from layoutedit.planning.tracker import MemoryTracker

_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Plan:
    """Costs of one step of each phase and of a whole learn and edit."""

    arch: ArchSpec
    backend: str
    low_memory: bool
    learn: LearnConfig
    edit: EditConfig
    objects: int
    learn_phases: dict[str, PhaseCost]
    edit_phases: dict[str, PhaseCost]
    learn_total: Total
    edit_total: Total
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (bytes and FLOPs as integers)."""
        return {
            "arch": self.arch.name,
            "family": self.arch.family,
            "image_size": self.arch.image_size,
            "prediction_type": self.arch.prediction_type,
            "backend": self.backend,
            "low_memory": self.low_memory,
            "objects": self.objects,
            "learn_phases": [p.as_dict() for p in self.learn_phases.values()],
            "edit_phases": [p.as_dict() for p in self.edit_phases.values()],
            "learn_total": self.learn_total.as_dict(),
            "edit_total": self.edit_total.as_dict(),
            "learn_config": self.learn.model_dump(mode="json"),
            "edit_config": self.edit.model_dump(mode="json"),
            "planning_seconds": self.seconds,
            "notes": list(self.notes),
        }


def backend_instance(name: str) -> Any:
    """An instance of backend `name`, usable here or not (planning needs no device)."""
    for info in list_backends():
        if info.name == name:
            return info.cls()
    known = ", ".join(i.name for i in list_backends())
    raise UserError(f"unknown backend {name!r}; known: {known}")


def low_memory_settings(settings: Settings, backend: Any) -> Settings:
    """`settings` with low_memory on; on a reduced-precision backend, learning in its
    mixed precision too (so the frozen weights can be stored in it) and the fine-tune's
    moments in 8 bits (`learning.low_memory.learn_overrides` with bitsandbytes installed)."""
    learn_update: dict[str, Any] = {"low_memory": True}
    if backend.dtype == torch.float16 and settings.learn.mixed_precision == "no":
        learn_update["mixed_precision"] = "fp16"
    if backend.dtype == torch.float16:
        learn_update["optimizer"] = "adamw8bit"
    return settings.model_copy(
        update={
            "learn": settings.learn.model_copy(update=learn_update),
            "edit": settings.edit.model_copy(update={"low_memory": True}),
        }
    )


def _learning_model(arch: ArchSpec, cfg: LearnConfig, device: str) -> PlanModel:
    plan = build_plan_model(arch, device=device, dtype=torch.float32)
    dtype = frozen_dtype(cfg)
    if dtype is not None:
        with quiet_diffusers():
            store_frozen(plan.model, dtype)  # the tables too: their rows train apart, fp32
    return plan


def _tracker(plan: PlanModel, autocast: torch.dtype | None) -> MemoryTracker:
    tracker = MemoryTracker(device_type=plan.device.type, autocast_dtype=autocast)
    modules: list[Any] = [plan.model.unet, plan.model.vae, *plan.text_encoders]
    for module in modules:
        tracker.track_module(module, "weights")
    return tracker


def plan_learning(
    arch: ArchSpec,
    cfg: LearnConfig,
    backend: Any,
    objects: int,
    device: str = "meta",
    *,
    check_flops: bool = False,
) -> dict[str, PhaseCost]:
    """One step of each learning phase, with the backend's attention kernels (as
    `learn.learn_concept` installs them: nothing recorded).

    `device="cpu"` runs the same steps on a real random-weight model (validation);
    `check_flops` counts them with FlopCounterMode too."""
    plan = _learning_model(arch, cfg, device)
    backend.install_attention(plan.model.unet, [])
    if device == "meta":
        use_fused_model(plan.model.unet)
        use_fused_model(plan.model.vae)  # its mid-block attention runs diffusers' SDPA
    tracker = _tracker(plan, _AUTOCAST.get(cfg.mixed_precision))
    ctx = PhaseContext(plan, tracker, cfg.low_memory, objects, check_flops)
    phases = [vae_encode(ctx), textual_inversion_step(ctx, cfg), finetune_step(ctx, cfg)]
    return {p.name: p for p in phases}


def plan_editing(
    arch: ArchSpec,
    cfg: EditConfig,
    backend: Any,
    objects: int,
    device: str = "meta",
    *,
    check_flops: bool = False,
) -> dict[str, PhaseCost]:
    """One step of each editing phase, weights in the backend's dtype (as `plan_learning`
    for `device` and `check_flops`)."""
    plan = build_plan_model(arch, device=device, dtype=backend.dtype)
    prepare_editing(plan.model, cfg)
    if device == "meta":
        # The VAE keeps diffusers' SDPA processor on every backend: a fused kernel on a
        # device, where `meta` would plan SDXL's 16384 x 16384 attention matrix (0.5 GiB).
        use_fused_model(plan.model.vae)
    tracker = _tracker(plan, None)
    ctx = PhaseContext(plan, tracker, cfg.low_memory, objects, check_flops)
    edit = install_edit_attention(ctx, backend, cfg)
    phases = [
        vae_encode(ctx),
        inversion_step(ctx, cfg),
        guided_step(ctx, edit, cfg),
        unguided_step(ctx, backend, cfg),
        vae_decode(ctx),
    ]
    return {p.name: p for p in phases}


TRAINED_BYTES_PER_ELEMENT = 12
"""fp32 gradient and two fp32 Adam moments of a trained element."""


def rows_note(arch: ArchSpec, cfg: LearnConfig, objects: int) -> str:
    """What training only the new embedding rows saves against training whole tables.

    Textual inversion trains `objects` rows per table in joint mode (else one per stage);
    a whole table (V x D, every text encoder's) would hold a gradient and two Adam moments
    of all its rows, 12 bytes an element, whatever the rows.
    """
    rows = objects if cfg.ti_joint else 1
    widths = [int(enc.get("hidden_size", 768)) for enc in arch.text_encoders]
    vocab = [int(enc.get("vocab_size", 49408)) for enc in arch.text_encoders]
    kept = sum(rows * d for d in widths) * TRAINED_BYTES_PER_ELEMENT
    whole = sum(v * d for v, d in zip(vocab, widths, strict=True)) * TRAINED_BYTES_PER_ELEMENT
    tables = "table" if len(widths) == 1 else f"{len(widths)} tables"
    return (
        f"textual inversion trains {rows} new row(s) per embedding table: gradients and Adam "
        f"moments {kept / 2**10:.0f} KiB, where the whole {tables} would hold "
        f"{whole / 2**30:.2f} GiB"
    )


def make_plan(
    arch: ArchSpec,
    settings: Settings,
    *,
    backend: str = "cuda",
    low_memory: bool = False,
    objects: int = 3,
) -> Plan:
    """Plan a learn and an edit of an `objects`-object scene on `backend`.

    Args:
        arch: the model's configs.
        settings: resolved settings (preset, config file).
        backend: a registered backend name (need not be usable here).
        low_memory: plan with `low_memory` on (see `layoutedit.learning.low_memory` and
            `layoutedit.editing.low_memory`).
        objects: objects in the scene (textual inversion runs per object unless joint).
    """
    began = time.perf_counter()
    instance = backend_instance(backend)
    if low_memory:
        settings = low_memory_settings(settings, instance)
    notes = []
    if arch.family == "sdxl":
        notes.append(
            "SDXL: both text encoders' embedding tables train, and every UNet call also "
            "reads the pooled text embedding and time ids"
        )
    notes.append(rows_note(arch, settings.learn, objects))
    if settings.learn.optimizer == "adamw8bit":
        notes.append(
            "the fine-tune's Adam moments in 8 bits (learn.optimizer = 'adamw8bit': CUDA, "
            "pip install bitsandbytes; `learn --low-memory` takes it when installed)"
        )
    learn_phases = plan_learning(arch, settings.learn, instance, objects)
    edit_phases = plan_editing(arch, settings.edit, instance, objects)
    return Plan(
        arch=arch,
        backend=backend,
        low_memory=low_memory,
        learn=settings.learn,
        edit=settings.edit,
        objects=objects,
        learn_phases=learn_phases,
        edit_phases=edit_phases,
        learn_total=learn_total(learn_phases, settings.learn, objects),
        edit_total=edit_total(edit_phases, settings.edit),
        seconds=time.perf_counter() - began,
        notes=notes,
    )
