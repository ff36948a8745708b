"""The guided DDIM sampling loop of stage 2 (step 3 of `method.md`).

At sampling step i (timestep t), in this order:

    a. attention guidance (only while it is active: scale_factor > 0 and i < max_iter_to_alter)
         loss, grad = out-of-region loss of the conditional pass, d loss / d z_t
         refinement steps: while loss > 1 - threshold_i (at most max_refinement_steps):
             z_t <- z_t - s_i * grad; recompute
         z_t <- z_t - s_i * grad
    b. background blending (i < blend_steps): z_t <- where(B, z*_t, z_t)
    c. DDIM step: e = e_u + g (e_c - e_u);  z_{t-1} = DDIMScheduler.step(e, t, z_t)

Better than the published loop: the gradient pass runs only on guided steps and stops the
UNet right after the last recorded layer; the regular update reuses the gradient of the last
refinement pass instead of running one more; the unconditional and conditional predictions
share one batch when the backend says so. The final attention loss, which ranks the seeds,
is read from the conditional prediction of the last step at no extra UNet cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

from layoutedit.attention_recording import AttentionStore, run_until_collected
from layoutedit.counting import UNetCounter
from layoutedit.editing.denoising import NoisePredictor, cfg_prediction
from layoutedit.editing.guidance import (
    guidance_active,
    object_losses,
    refinement_target,
    step_sizes,
    total_loss,
)
from layoutedit.editing.inversion import Inversion
from layoutedit.editing.noise import cpu_normal
from layoutedit.loading.conditioning import Conditioning


@dataclass
class AttentionGuide:
    """Everything the attention guidance of one layout needs.

    Attributes:
        store: the attention store attached to the UNet's recording layers.
        positions: K placeholder positions in `input_ids`, object order.
        regions: (K, res, res) 0/1 target regions on the attention grid.
        last: index of the prompt's end token.
        steps: DDIM steps N (the step size schedule r_i runs over all of them).
        softmax_scale, token_softmax, scale_factor, scale_range, max_iter_to_alter, refinement,
        max_refinement_steps: see `EditConfig`.
    """

    store: AttentionStore
    positions: Sequence[int]
    regions: torch.Tensor
    last: int
    steps: int
    softmax_scale: float = 100.0
    token_softmax: bool = True
    scale_factor: float = 20.0
    scale_range: tuple[float, float] = (1.0, 0.5)
    max_iter_to_alter: int = 25
    refinement: Mapping[int, float] = field(default_factory=dict)
    max_refinement_steps: int = 40

    def active(self, step: int) -> bool:
        """Whether step i runs the gradient pass."""
        return guidance_active(step, self.scale_factor, self.max_iter_to_alter)

    def losses(self, maps: torch.Tensor) -> torch.Tensor:
        """(K,) out-of-region losses from (res, res, T) maps."""
        return object_losses(
            maps, self.positions, self.regions, self.last, self.softmax_scale, self.token_softmax
        )

    def loss_and_grad(
        self,
        predict: NoisePredictor,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        cond: Conditioning,
        counter: UNetCounter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One gradient pass: (K,) losses and d(mean + max)/d latents, (1, C, h, w)."""
        z = latents.detach().requires_grad_(True)
        with torch.enable_grad():
            maps = run_until_collected(self.store, lambda: predict(z, timestep, cond))
            losses = self.losses(maps[0])  # (K,)
            (grad,) = torch.autograd.grad(total_loss(losses), z)
        counter.add(backward=1)
        return losses.detach(), grad

    def update(
        self,
        predict: NoisePredictor,
        latents: torch.Tensor,
        step: int,
        timestep: torch.Tensor,
        cond: Conditioning,
        counter: UNetCounter,
        stats: SamplingStats,
    ) -> torch.Tensor:
        """The guidance of step i: refinement updates (if i refines) then the regular one."""
        size = step_sizes(self.steps, self.scale_factor, self.scale_range)[step]  # s_i
        losses, grad = self.loss_and_grad(predict, latents, timestep, cond, counter)
        stats.loss_trace.append(float(total_loss(losses)))
        target = refinement_target(self.refinement, step)
        passes = 0
        while (
            target is not None
            and float(total_loss(losses)) > target
            and passes < self.max_refinement_steps
            and gradient_is_finite(grad)  # an overflowed pass would repeat: stop refining
        ):
            latents = latents - size * grad
            losses, grad = self.loss_and_grad(predict, latents, timestep, cond, counter)
            passes += 1
        stats.refinement_passes += passes
        stats.guided_steps += 1
        if not gradient_is_finite(grad):
            stats.nonfinite_gradients += 1
            return latents.detach()
        return (latents - size * grad).detach()


class LatentBlend(Protocol):
    """Anything that overwrites part of the latent before a step (`BackgroundBlend`,
    `redraw.RegionalStart`, `redraw.BlendChain`)."""

    def apply(self, latents: torch.Tensor, step: int) -> torch.Tensor:
        """The latent entering step `step`, (B, C, h, w)."""
        ...


@dataclass
class BackgroundBlend:
    """Copy the inverted source latents into the edit where both layouts are background.

    Attributes:
        mask: (1, 1, h, w) bool, B of `method.md` (`grids.blend_mask`).
        inversion: the source's inverted latents, on the sampling timesteps.
        steps: blend during sampling steps 0 .. steps-1.
    """

    mask: torch.Tensor
    inversion: Inversion
    steps: int

    def apply(self, latents: torch.Tensor, step: int) -> torch.Tensor:
        """z_t <- where(B, z*_t, z_t) for step < steps; unchanged otherwise."""
        if step >= self.steps:
            return latents
        return torch.where(self.mask, self.inversion.at_step(step).to(latents), latents)


@dataclass
class SamplingStats:
    """What the loop did, for reports."""

    guided_steps: int = 0
    refinement_passes: int = 0
    loss_trace: list[float] = field(default_factory=list)
    """Total attention loss measured at the start of each guided step."""
    nonfinite_gradients: int = 0
    """Guidance updates skipped because the gradient had a NaN or infinite value (a half-
    precision pass that overflowed): the latent is left as it was rather than poisoned."""


def gradient_is_finite(grad: torch.Tensor) -> bool:
    """Whether a guidance gradient may move the latent: every value finite (an fp16 gradient
    pass can overflow, and one NaN step turns the whole image to NaN)."""
    return bool(torch.isfinite(grad).all())


@dataclass
class SamplingOutput:
    """Result of one seed's sampling."""

    latents: torch.Tensor
    """(1, C, h, w) final clean latent."""
    final_losses: torch.Tensor | None
    """(K,) out-of-region losses of the last step's conditional prediction (None: no guide)."""
    stats: SamplingStats


StepHook = Callable[[int, torch.Tensor, torch.Tensor], None]
"""Called as hook(i, t, z_t) with the latent that enters the DDIM step of step i."""


@torch.no_grad()
def sample(
    predict: NoisePredictor,
    sampler: DDIMScheduler,
    start: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance_scale: float | torch.Tensor,
    *,
    batch_cfg: bool = False,
    guide: AttentionGuide | None = None,
    blend: LatentBlend | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    counter: UNetCounter | None = None,
    on_step: StepHook | None = None,
    start_step: int = 0,
) -> SamplingOutput:
    """Run the guided DDIM loop from `start` down to a clean latent.

    Args:
        predict: the noise predictor (`UNetRunner`).
        sampler: `DDIMScheduler` with `set_timesteps(N)` done.
        start: (1, C, h, w) z_T (seeded Gaussian noise; the inversion's last latent to
            reconstruct the source).
        cond, uncond: (1, L, D) prompt and empty-prompt embeddings, or their
            `TextConditioning` (SDXL: with pooled embeddings and time ids).
        guidance_scale: classifier-free guidance scale g, or (1, 1, h, w) per latent cell.
        batch_cfg: one UNet call of batch 2 for the two predictions.
        guide: attention guidance and final-loss measurement; None for neither.
        blend: background blending; None for none.
        eta: DDIM eta (0 = deterministic).
        generator: random source for eta > 0 (a CPU generator, `editing.noise`).
        counter: UNet evaluations (backward passes of the guidance are added here; forwards
            are counted by the predictor).
        on_step: hook called with the latent entering each DDIM step.
        start_step: the first step i to run; `start` is then z at timestep i (a noised
            image), and the guidance and blending schedules keep their step indices.
    """
    counter = counter if counter is not None else UNetCounter()
    stats = SamplingStats()
    final_losses = None
    latents = start.float()
    timesteps = sampler.timesteps
    for i, t in enumerate(timesteps):
        if i < start_step:
            continue
        # a. attention guidance
        if guide is not None and guide.active(i):
            latents = guide.update(predict, latents, i, t, cond, counter, stats)
        # b. background blending
        if blend is not None:
            latents = blend.apply(latents, i)
        if on_step is not None:
            on_step(i, t, latents)
        # c. guided DDIM step; the last step's conditional pass also gives the final loss
        measure = guide is not None and i == len(timesteps) - 1
        context: Callable[[], contextlib.AbstractContextManager[None]] = (
            guide.store.recording if guide is not None and measure else contextlib.nullcontext
        )
        guided, _ = cfg_prediction(
            predict, latents, t, cond, uncond, guidance_scale, batch=batch_cfg, cond_context=context
        )
        if guide is not None and measure:
            final_losses = guide.losses(guide.store.maps()[-1])  # last sample is conditional
        noise = None
        if eta > 0 and generator is not None:
            # Drawn on the CPU and moved (`editing.noise`): the same seed, the same noise on
            # every device (the scheduler would draw on the latents' device).
            noise = cpu_normal(guided.shape, generator, guided.device, guided.dtype)
        latents = sampler.step(
            guided, t, latents, eta=eta, variance_noise=noise, return_dict=False
        )[0]
    return SamplingOutput(latents=latents, final_losses=final_losses, stats=stats)
