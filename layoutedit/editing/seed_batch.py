"""The guided DDIM loop of `sampling.sample`, for several seeds at once (one batch).

A backend that says `batch_seeds` gets every seed of an edit sampled as one batch of S
latents: each UNet call then carries S samples (2S for batched classifier-free guidance),
which on a CPU costs well under S separate calls (the embedded model's tensors are small
enough that per-call overhead dominates). The maths per sample is `sampling.sample`'s:

- the start latents are each seed's own (drawn by the caller, stacked);
- the guidance loss of each sample is its own: the batch's gradient is taken of the *sum*
  of the per-sample losses, and since no UNet operation mixes samples, row s of that
  gradient is sample s's gradient alone;
- iterative refinement continues only for the samples whose loss is still above the
  target (finished samples leave the batch: their latents, loss and gradient are kept);
- blending, the DDIM step and the final loss work row by row; `eta` noise is drawn per
  seed from that seed's generator, in the shape and order `sample` draws it.

Counts stay comparable with the one-seed path: the predictor counts S forwards for a call
of S samples, and a gradient pass over n samples counts n backwards, so an edit reports the
same evaluations whichever path ran it. What can differ is only floating-point rounding:
kernels may sum in another order at another batch size (see the backend's docstring).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

from layoutedit.attention_recording import run_until_collected
from layoutedit.counting import UNetCounter
from layoutedit.editing.denoising import NoisePredictor, cfg_prediction
from layoutedit.editing.guidance import refinement_target, step_sizes, total_loss
from layoutedit.editing.noise import cpu_normal
from layoutedit.editing.sampling import (
    AttentionGuide,
    LatentBlend,
    SamplingOutput,
    SamplingStats,
    StepHook,
)
from layoutedit.loading.conditioning import Conditioning, TextConditioning
from layoutedit.precision import finite_rows


def repeat_rows(cond: Conditioning, batch: int) -> Conditioning:
    """A conditioning of one row repeated to `batch` rows (a view, no copy)."""
    if isinstance(cond, TextConditioning):
        return cond.expand(batch)
    return cond.expand(batch, *cond.shape[1:])


def batch_loss_and_grad(
    guide: AttentionGuide,
    predict: NoisePredictor,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    cond: Conditioning,
    counter: UNetCounter,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient pass over n samples.

    Args:
        latents: (n, C, h, w).
        cond: the prompt's conditioning, one row.

    Returns:
        (n, K) per-sample losses and (n, C, h, w) each sample's d(mean + max)/d latents.
    """
    n = int(latents.shape[0])
    z = latents.detach().requires_grad_(True)
    with torch.enable_grad():
        maps = run_until_collected(guide.store, lambda: predict(z, timestep, repeat_rows(cond, n)))
        losses = torch.stack([guide.losses(m) for m in maps])  # (n, K)
        totals = torch.stack([total_loss(row) for row in losses])  # (n,)
        # Samples never meet inside the UNet, so the gradient of the sum is, row by row,
        # the gradient of each sample's own loss.
        (grad,) = torch.autograd.grad(totals.sum(), z)
    counter.add(backward=n)
    return losses.detach(), grad


def batch_update(
    guide: AttentionGuide,
    predict: NoisePredictor,
    latents: torch.Tensor,
    step: int,
    timestep: torch.Tensor,
    cond: Conditioning,
    counter: UNetCounter,
    stats: Sequence[SamplingStats],
) -> torch.Tensor:
    """`AttentionGuide.update` for a batch: (S, C, h, w) latents in and out; each sample
    refines while its own loss is above the target (at most `max_refinement_steps`)."""
    size = step_sizes(guide.steps, guide.scale_factor, guide.scale_range)[step]  # s_i
    losses, grad = batch_loss_and_grad(guide, predict, latents, timestep, cond, counter)
    totals = [float(total_loss(row)) for row in losses]
    for stat, value in zip(stats, totals, strict=True):
        stat.loss_trace.append(value)
    target = refinement_target(guide.refinement, step)
    passes = [0] * len(stats)
    finite = finite_rows(grad).tolist()  # (S,) a sample whose gradient overflowed stops
    while target is not None:
        rows = [
            s
            for s, value in enumerate(totals)
            if value > target and passes[s] < guide.max_refinement_steps and finite[s]
        ]
        if not rows:
            break
        # Only the samples still refining run the pass; the others keep their latents,
        # loss and gradient for the regular update below.
        index = torch.tensor(rows, device=latents.device)
        moved = latents[index] - size * grad[index]  # (n, C, h, w)
        latents = latents.index_copy(0, index, moved)
        part_losses, part_grad = batch_loss_and_grad(guide, predict, moved, timestep, cond, counter)
        grad = grad.index_copy(0, index, part_grad)
        for s, row, ok in zip(rows, part_losses, finite_rows(part_grad).tolist(), strict=True):
            totals[s] = float(total_loss(row))
            passes[s] += 1
            finite[s] = ok
    for stat, count, ok in zip(stats, passes, finite, strict=True):
        stat.refinement_passes += count
        stat.guided_steps += 1
        stat.nonfinite_gradients += 0 if ok else 1
    # A sample whose gradient is not finite keeps its latent (`AttentionGuide.update`).
    keep = torch.tensor(finite, device=grad.device)[:, None, None, None]  # (S, 1, 1, 1)
    return torch.where(keep, latents - size * grad, latents).detach()


@torch.no_grad()
def sample_batch(
    predict: NoisePredictor,
    sampler: DDIMScheduler,
    starts: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance_scale: float | torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    batch_cfg: bool = False,
    guide: AttentionGuide | None = None,
    blend: LatentBlend | None = None,
    eta: float = 0.0,
    counter: UNetCounter | None = None,
    on_step: StepHook | None = None,
    start_step: int = 0,
) -> list[SamplingOutput]:
    """`sampling.sample` for S seeds in one batch.

    Args:
        starts: (S, C, h, w) each seed's z_T (or noised paste start), seed order.
        cond, uncond: one row each, as for `sample` (repeated here to the batch).
        generators: S generators, seed order: the `eta` noise of sample s comes from
            `generators[s]` exactly as `sample` draws it for that seed alone.
        on_step: called for every sample at every step, as hook(i, t, z_t) with z_t of
            shape (1, C, h, w): steps outer, samples inner (`sample` runs seeds outer).
        predict, sampler, guidance_scale, batch_cfg, guide, blend, eta, counter,
        start_step: as for `sample`.

    Returns:
        One `SamplingOutput` per seed, seed order ((1, C, h, w) latents, (K,) losses).
    """
    n = int(starts.shape[0])
    if len(generators) != n:
        raise ValueError(f"{n} start latents but {len(generators)} generators")
    counter = counter if counter is not None else UNetCounter()
    stats = [SamplingStats() for _ in range(n)]
    final_losses: list[torch.Tensor | None] = [None] * n
    conds, unconds = repeat_rows(cond, n), repeat_rows(uncond, n)
    latents = starts.float()
    timesteps = sampler.timesteps
    for i, t in enumerate(timesteps):
        if i < start_step:
            continue
        # a. attention guidance, per sample
        if guide is not None and guide.active(i):
            latents = batch_update(guide, predict, latents, i, t, cond, counter, stats)
        # b. background blending: the (1, 1, h, w) mask and (1, C, h, w) source broadcast
        if blend is not None:
            latents = blend.apply(latents, i)
        if on_step is not None:
            for s in range(n):
                on_step(i, t, latents[s : s + 1])
        # c. guided DDIM step; the last step's conditional pass also gives the final losses
        measure = guide is not None and i == len(timesteps) - 1
        context: Callable[[], contextlib.AbstractContextManager[None]] = (
            guide.store.recording if guide is not None and measure else contextlib.nullcontext
        )
        guided, _ = cfg_prediction(
            predict,
            latents,
            t,
            conds,
            unconds,
            guidance_scale,
            batch=batch_cfg,
            cond_context=context,
        )  # (S, C, h, w)
        if guide is not None and measure:
            # Batched CFG puts the S conditional samples last; unbatched records only them.
            final_losses = [guide.losses(m) for m in guide.store.maps()[-n:]]
        noise = None
        if eta > 0:
            # Each seed's noise from its own generator, in `sample`'s shape and order.
            noise = torch.cat(
                [cpu_normal(latents[:1].shape, g, guided.device, guided.dtype) for g in generators]
            )
        latents = sampler.step(
            guided, t, latents, eta=eta, variance_noise=noise, return_dict=False
        )[0]
    return [
        SamplingOutput(latents=latents[s : s + 1], final_losses=final_losses[s], stats=stats[s])
        for s in range(n)
    ]
