"""GPU-hours of a large batch on paper: the planner's FLOPs of one learn and one edit, times
the scenes and edits, at a stated share of a GPU's peak.

    job = cluster_plan(plan, scenes=100_000, edits=4, gpus=8)   # plan: `make_plan(...)`
    job.learn_gpu_hours, job.edit_gpu_hours, job.wall_hours

Each scene is learned once and inverted once (`inversion` of the edit phases); each of its
edits then samples from the cached inversion. FLOPs count matrix products, convolutions and
attention (`planning.phases`); seconds are FLOPs / (peak x utilisation), so the result is as
good as the utilisation stated: diffusion UNets at batch 1-4 with guidance gradients reach
well under half of a tensor-core peak, and data loading, VAE and Python overhead come on top.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from layoutedit.planning.plan import Plan
from layoutedit.planning.totals import edit_total

DEFAULT_PEAK_TFLOPS = 312.0
"""An A100's dense fp16/bf16 tensor-core peak (NVIDIA's data sheet)."""
DEFAULT_UTILISATION = 0.3
"""Assumed share of the peak that learning and editing sustain (not measured here)."""


@dataclass(frozen=True)
class ClusterPlan:
    """A batch job's compute: FLOPs per scene and per edit, GPU-hours, wall-clock hours."""

    scenes: int
    edits: int
    gpus: int
    peak_tflops: float
    utilisation: float
    learn_flops: int
    """One scene's learn."""
    inversion_flops: int
    """One scene's DDIM inversion (and source encoding), shared by its edits."""
    edit_flops: int
    """One edit (every seed) from a cached inversion."""

    @property
    def _flops_per_hour(self) -> float:
        return self.peak_tflops * 1e12 * self.utilisation * 3600.0

    @property
    def learn_gpu_hours(self) -> float:
        """GPU-hours of learning every scene."""
        return self.scenes * self.learn_flops / self._flops_per_hour

    @property
    def edit_gpu_hours(self) -> float:
        """GPU-hours of every scene's inversion and edits."""
        per_scene = self.inversion_flops + self.edits * self.edit_flops
        return self.scenes * per_scene / self._flops_per_hour

    @property
    def wall_hours(self) -> float:
        """Hours on `gpus` GPUs, all busy (a batch shares scenes out, `layoutedit batch`)."""
        return (self.learn_gpu_hours + self.edit_gpu_hours) / self.gpus

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the hours."""
        return {
            **asdict(self),
            "learn_gpu_hours": self.learn_gpu_hours,
            "edit_gpu_hours": self.edit_gpu_hours,
            "wall_hours": self.wall_hours,
        }

    def lines(self) -> list[str]:
        """What `layoutedit plan --scenes N` prints."""
        total = self.learn_gpu_hours + self.edit_gpu_hours
        rate = f"{self.utilisation:.0%} of {self.peak_tflops:g} TFLOPS"
        return [
            f"batch of {self.scenes:,} scenes x {self.edits} edits at {rate} per GPU:",
            f"  learn  {self.learn_gpu_hours:,.0f} GPU-hours "
            f"({self.learn_flops / 1e15:.2f} PFLOP per scene)",
            f"  edit   {self.edit_gpu_hours:,.0f} GPU-hours "
            f"({self.inversion_flops / 1e15:.3f} PFLOP inversion per scene, "
            f"{self.edit_flops / 1e15:.3f} PFLOP per edit)",
            f"  total  {total:,.0f} GPU-hours: {self.wall_hours:,.1f} h "
            f"({self.wall_hours / 24:,.1f} days) on {self.gpus} GPU{'s' if self.gpus > 1 else ''}",
        ]


def cluster_plan(
    plan: Plan,
    *,
    scenes: int,
    edits: int,
    gpus: int,
    peak_tflops: float = DEFAULT_PEAK_TFLOPS,
    utilisation: float = DEFAULT_UTILISATION,
) -> ClusterPlan:
    """The compute of `scenes` scenes with `edits` edits each, from one model's `plan`."""
    cached = edit_total(plan.edit_phases, plan.edit, cached=True).flops
    whole = edit_total(plan.edit_phases, plan.edit, cached=False).flops
    return ClusterPlan(
        scenes=scenes,
        edits=edits,
        gpus=gpus,
        peak_tflops=peak_tflops,
        utilisation=utilisation,
        learn_flops=plan.learn_total.flops,
        inversion_flops=whole - cached,
        edit_flops=cached,
    )
