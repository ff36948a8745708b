"""Resumable checkpoints of a learning run, and the run totals they carry.

Checkpoints are a folder per stage (`ti-0`, `ti`, `ft`) with `state.safetensors` (trainable
tensors, optimiser moments, generator state) and `state.json` (step, counters, seconds),
written to a temporary folder and renamed, so a crash mid-save keeps the previous checkpoint.
The generator state makes a resumed stage draw exactly what an uninterrupted one would.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from layoutedit.atomic import atomic_folder
from layoutedit.counting import UNetCounter


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


def stage_checkpoint(
    stage: str,
    step: int,
    tensors: Mapping[str, torch.Tensor],
    ids: Sequence[int],
    generator: torch.Generator,
    totals: RunTotals,
) -> Checkpoint:
    """A stage's checkpoint: its tensors, the generator state (`rng`), a copy of the run
    totals, and the trained token ids (a resume under another vocabulary layout restarts)."""
    copy = RunTotals.from_dict(totals.as_dict())
    state = {**tensors, "rng": generator_state(generator)}
    return Checkpoint(stage, step, state, copy, {"ids": list(ids)})


def resume_from(ckpt: Checkpoint, generator: torch.Generator, totals: RunTotals) -> int:
    """Restore the generator and run totals of a checkpoint; returns its step."""
    generator.set_state(ckpt.tensors["rng"])
    totals.counter = ckpt.totals.counter
    totals.seconds = ckpt.totals.seconds
    return ckpt.step
