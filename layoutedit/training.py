"""What the two learning stages share: the noising step, the losses, and resumable checkpoints.

A training step (method.md Stage 1): sample timesteps `t ~ U[0, T)` and noise `e`, make
`z_t = add_noise(z0, e, t)`, predict with the UNet and compare with the target (`e`, or the
velocity `v` for v-prediction models). The random numbers come from one CPU `torch.Generator`
whose state is saved in every checkpoint, so a resumed run draws exactly what an
uninterrupted run would have drawn.

Checkpoints are a folder per stage with `state.safetensors` (trainable tensors, optimiser
moments, generator state) and `state.json` (step, counters, seconds), written to a
temporary name and renamed, so a crash mid-save keeps the previous checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file, save_file

from layoutedit.atomic import atomic_folder
from layoutedit.counting import UNetCounter
from layoutedit.model_loading import LoadedModel


class ProgressHook(Protocol):
    """Receives progress of a learning run (the CLI draws Rich bars from it)."""

    def stage(self, name: str, total: int, done: int) -> None:
        """A stage starts: `total` optimiser steps, `done` of them already (resumed)."""
        ...

    def step(self, loss: float) -> None:
        """One optimiser step finished with this loss."""
        ...


class NoProgress:
    """A progress hook that shows nothing."""

    def stage(self, name: str, total: int, done: int) -> None:
        """Ignored."""

    def step(self, loss: float) -> None:
        """Ignored."""


def training_scheduler(model: LoadedModel) -> Any:
    """The model's noise schedule as a DDPM scheduler (for `add_noise` / `get_velocity`)."""
    return DDPMScheduler.from_config(model.scheduler_config)


def noisy_batch(
    model: LoadedModel,
    scheduler: Any,
    z0: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise a batch of clean latents at random timesteps.

    Args:
        z0: (B, C, h, w) clean scaled latents on the model's device.
        generator: CPU generator (draws are device-independent and resumable).

    Returns:
        z_t (B, C, h, w), timesteps (B,) int64, and the target the UNet should predict
        (B, C, h, w): the noise, or the velocity for v-prediction models.
    """
    batch = z0.shape[0]
    steps = int(scheduler.config.num_train_timesteps)
    t = torch.randint(0, steps, (batch,), generator=generator)
    noise = torch.randn(z0.shape, generator=generator, dtype=torch.float32)
    t, noise = t.to(z0.device), noise.to(z0.device, z0.dtype)
    z_t = scheduler.add_noise(z0, noise, t)
    if model.prediction_type == "v_prediction":
        target = scheduler.get_velocity(z0, noise, t)
    elif model.prediction_type == "epsilon":
        target = noise
    else:
        raise ValueError(f"unsupported prediction type {model.prediction_type!r}")
    return z_t, t, target


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the latent elements inside a mask only.

    Args:
        pred, target: (B, C, h, w).
        mask: (B, 1, h, w) 0/1 (broadcast over channels); elements where it is 0 do not
            change the loss or its gradient at all.

    Returns:
        Scalar: sum(mask * (pred - target)^2) / (C * sum(mask)).
    """
    mask = mask.to(pred.dtype)
    sq = (pred.float() - target.float()) ** 2 * mask  # (B, C, h, w)
    inside = mask.sum() * pred.shape[1]
    return sq.sum() / inside.clamp_min(1.0)


def scaled_lr(base: float, batch: int, accumulation: int, scale: bool) -> float:
    """Learning rate scaled by batch size x gradient accumulation (the published rule)."""
    return base * batch * accumulation if scale else base


def restore_rows(weight: torch.Tensor, original: torch.Tensor, keep_ids: Sequence[int]) -> None:
    """Copy `original` back into every row of `weight` except `keep_ids` (in place).

    Textual inversion trains the whole embedding table through the optimiser; restoring the
    other rows after each step makes sure only the placeholder rows ever change.
    """
    frozen = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
    frozen[list(keep_ids)] = False
    with torch.no_grad():
        weight[frozen] = original[frozen].to(weight.dtype)


def make_accelerator(mixed_precision: str, accumulation: int, device: torch.device) -> Any:
    """An `accelerate.Accelerator` for one stage: precision and gradient accumulation.

    The model is already on `device`; accelerate handles the autocast, the fp16 gradient
    scaler and when an accumulated step really updates the weights.
    """
    from accelerate import Accelerator

    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=accumulation,
        cpu=device.type == "cpu",
    )


@dataclass
class RunTotals:
    """UNet evaluations and seconds of a learning run, carried through resumes."""

    counter: UNetCounter = field(default_factory=UNetCounter)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: {"unet_evals": {...}, "seconds": {...}}."""
        return {"unet_evals": self.counter.as_dict(), "seconds": dict(self.seconds)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunTotals:
        """Inverse of `as_dict`."""
        evals = data.get("unet_evals", {})
        counter = UNetCounter(int(evals.get("forward", 0)), int(evals.get("backward", 0)))
        return cls(counter, {k: float(v) for k, v in data.get("seconds", {}).items()})


@dataclass
class Checkpoint:
    """A stage's saved state: its step, tensors and the run totals at that step."""

    stage: str
    step: int
    tensors: dict[str, torch.Tensor]
    totals: RunTotals
    extra: dict[str, Any] = field(default_factory=dict)


class CheckpointDir:
    """Checkpoints of one learning run, one sub-folder per stage (`ti-0`, `ti-1`, `ft`).

    Args:
        root: the run's checkpoint folder (kept apart from results so that an interrupted
            run leaves no partial result but can resume); None turns checkpoints off.
        run_id: identifies the run's inputs; checkpoints of another run are never resumed.
    """

    def __init__(self, root: Path | None, run_id: str = "") -> None:
        self.root = root
        self.run_id = run_id

    def save(self, ckpt: Checkpoint) -> None:
        """Write a stage checkpoint atomically (replacing the previous one of that stage)."""
        if self.root is None:
            return
        with atomic_folder(self.root / ckpt.stage) as tmp:
            tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt.tensors.items()}
            save_file(tensors, str(tmp / "state.safetensors"))
            header = {
                "run_id": self.run_id,
                "stage": ckpt.stage,
                "step": ckpt.step,
                "totals": ckpt.totals.as_dict(),
                "extra": ckpt.extra,
            }
            (tmp / "state.json").write_text(json.dumps(header, indent=2, default=str))

    def load(self, stage: str) -> Checkpoint | None:
        """The checkpoint of `stage` of this run, or None (missing, damaged or another run's)."""
        if self.root is None:
            return None
        folder = self.root / stage
        try:
            header = json.loads((folder / "state.json").read_text())
            if header.get("run_id") != self.run_id:
                return None
            tensors = load_file(str(folder / "state.safetensors"))
        except (OSError, ValueError):
            return None  # a damaged checkpoint only costs recomputing that stage
        return Checkpoint(
            stage=stage,
            step=int(header["step"]),
            tensors=tensors,
            totals=RunTotals.from_dict(header.get("totals", {})),
            extra=dict(header.get("extra", {})),
        )

    def clear(self) -> None:
        """Remove every checkpoint of the run (after its result is stored)."""
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def adam_state(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, torch.Tensor]:
    """The (Adam/AdamW) moments of one parameter, empty before its first step."""
    state = optimizer.state.get(param, {})
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def set_adam_state(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, state: Mapping[str, torch.Tensor]
) -> None:
    """Restore moments saved by `adam_state` (moved to the parameter's device)."""
    if not state:
        return
    restored: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        # Adam keeps `step` on the CPU unless capturable; moments live with the parameter.
        restored[key] = value.clone() if key == "step" else value.to(param.device).clone()
    optimizer.state[param] = restored


def generator_state(generator: torch.Generator) -> torch.Tensor:
    """The generator's state as a uint8 tensor (storable in safetensors)."""
    return generator.get_state().clone()


@contextlib.contextmanager
def trainable(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Enable gradients on `params` for a block, and turn them off again afterwards."""
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
