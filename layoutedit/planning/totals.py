"""From one step of each phase to a whole learn and a whole edit, for a preset.

UNet evaluations are counted the way `counting.UNetCounter` counts them (a batch of N
samples is N forwards). An edit of one layout with S seeds and N DDIM steps, G guided steps
(`max_iter_to_alter`, while `scale_factor` > 0) and up to R refinement passes:

    inversion   N forwards (once per scene; cached afterwards)
    per seed    N x (2, or 1 when guidance_scale == 1) forwards for the DDIM steps
                (G + r) forwards and backwards for the guidance, 0 <= r <= R

so the refinement makes the count a range; FLOPs are given at its top. A paste start
(`init = "paste"`) runs only the last `round(strength x N)` steps (`first_step`): G, R and
the DDIM steps count from there; no denoising (`denoise` off) calls the UNet not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from layoutedit.config import EditConfig, LearnConfig
from layoutedit.planning.phases import PhaseCost


@dataclass
class Total:
    """A whole learn or edit.

    Attributes:
        peak_bytes: the largest phase peak.
        peak_phase: which phase it is.
        flops: all phases' FLOPs times their repeats (the top of any range).
        forward, backward: UNet evaluations, (min, max).
        repeats: phase name -> how many times it runs.
    """

    peak_bytes: int
    peak_phase: str
    flops: int
    forward: tuple[int, int]
    backward: tuple[int, int]
    repeats: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "peak_bytes": self.peak_bytes,
            "peak_phase": self.peak_phase,
            "flops": self.flops,
            "unet_forward": list(self.forward),
            "unet_backward": list(self.backward),
            "repeats": dict(self.repeats),
        }


def _total(
    phases: dict[str, PhaseCost],
    repeats: dict[str, int],
    fwd: tuple[int, int],
    bwd: tuple[int, int],
) -> Total:
    used = {name: phases[name] for name, n in repeats.items() if n > 0 and name in phases}
    peak = max(used.values(), key=lambda p: p.peak_total)
    flops = sum(phases[name].flops * n for name, n in repeats.items() if name in phases)
    return Total(peak.peak_total, peak.name, flops, fwd, bwd, dict(repeats))


def first_step(cfg: EditConfig) -> int:
    """The first DDIM step an edit runs: 0 from noise; from a paste start, the steps its
    strength leaves out (as `EditSession` computes them: the larger of `paste_strength`
    and `redraw_strength`, at least one step runs)."""
    if cfg.init != "paste":
        return 0
    strength = max(cfg.paste_strength, cfg.redraw_strength)
    return cfg.steps - max(1, round(strength * cfg.steps))


def run_steps(cfg: EditConfig) -> int:
    """DDIM steps one seed runs (N less a paste start's skipped steps; 0 without denoising)."""
    return cfg.steps - first_step(cfg) if cfg.denoise else 0


def refinement_passes(cfg: EditConfig) -> int:
    """The most refinement passes one seed can take (R): at the refinement steps it runs
    and guides."""
    start, end = first_step(cfg), first_step(cfg) + guided_steps(cfg)
    return sum(cfg.max_refinement_steps for step in cfg.refinement if start <= step < end)


def guided_steps(cfg: EditConfig) -> int:
    """Steps that run the guidance's gradient pass (G): those it runs below
    `max_iter_to_alter`."""
    if cfg.scale_factor <= 0 or not cfg.denoise:
        return 0
    return max(0, min(cfg.max_iter_to_alter, cfg.steps) - first_step(cfg))


def edit_total(phases: dict[str, PhaseCost], cfg: EditConfig, *, cached: bool = False) -> Total:
    """One layout's edit for every seed of `cfg` (with the inversion unless `cached`)."""
    seeds = len(cfg.seeds)
    calls = 1 if cfg.guidance_scale == 1.0 else 2
    g, r, n = guided_steps(cfg), refinement_passes(cfg), run_steps(cfg)
    # The source's inversion feeds the background blending only (whole, N steps).
    inverts = cfg.blend_steps > 0 and cfg.denoise
    inversion = 0 if cached or not inverts else cfg.steps
    repeats = {
        "vae-encode": 0 if cached else 1,
        "inversion": inversion,
        "guided": seeds * (g + r),
        "unguided": seeds * n,
        "vae-decode": seeds,
    }
    forward = (
        inversion + seeds * (n * calls + g),
        inversion + seeds * (n * calls + g + r),
    )
    backward = (seeds * g, seeds * (g + r))
    return _total(phases, repeats, forward, backward)


def learn_total(phases: dict[str, PhaseCost], cfg: LearnConfig, objects: int) -> Total:
    """Both learning stages (prior images from a folder or the cache: not counted)."""
    runs = 1 if cfg.ti_joint else objects
    ti = cfg.ti_steps * runs * cfg.gradient_accumulation
    ft = cfg.ft_steps * cfg.gradient_accumulation
    ft_batch = cfg.ft_batch_size * (2 if cfg.prior_preservation else 1)
    repeats = {"vae-encode": 1, "textual-inversion": ti, "fine-tune": ft}
    samples = ti * cfg.ti_batch_size + ft * ft_batch
    return _total(phases, repeats, (samples, samples), (samples, samples))
