"""The UNet call and the DDIM schedulers that inversion and editing share.

`UNetRunner` is the one place a UNet is called during an edit: it applies the backend's
dtype and autocast, hands the text conditioning to the UNet in its family's form
(`TextConditioning.unet_kwargs`: SDXL's pooled embeddings and time ids too) and counts
evaluations (a batch of N samples is N forwards). Anything with
the same call signature (`NoisePredictor`) can stand in for it, which is how the tests check
the inversion maths exactly with a stub whose prediction is known.

Schedulers are diffusers' own (`DDIMScheduler`, `DDIMInverseScheduler`), built from the
model's scheduler config, never re-derived by hand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddim_inverse import DDIMInverseScheduler

from layoutedit.counting import UNetCounter
from layoutedit.loading.conditioning import Conditioning, as_conditioning, cat_conditioning

# DDIMInverseScheduler supports only these; "linspace" configs fall back to "leading".
_INVERTIBLE_SPACINGS = ("leading", "trailing")


class NoisePredictor(Protocol):
    """What sampling and inversion call: the model's prediction for a batch of latents."""

    def __call__(
        self, latents: torch.Tensor, timestep: torch.Tensor, embeddings: Conditioning
    ) -> torch.Tensor:
        """latents (B, C, h, w), timestep (scalar int), embeddings (B, L, D) or a
        `TextConditioning` of B rows -> (B, C, h, w) fp32 model output (noise, or v for
        v-prediction models)."""
        ...


class UNetRunner:
    """Calls a `UNet2DConditionModel` on the backend's dtype and autocast, and counts.

    Args:
        unet: the UNet (weights already on the device).
        dtype: weight dtype; inputs are cast to it, outputs returned as fp32.
        autocast: factory of the backend's forward-pass context (mixed precision).
        counter: where evaluations are counted (forward += batch size per call).
    """

    def __init__(
        self,
        unet: Any,
        dtype: torch.dtype = torch.float32,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        counter: UNetCounter | None = None,
    ) -> None:
        self.unet = unet
        self.dtype = dtype
        self.autocast = autocast
        self.counter = counter if counter is not None else UNetCounter()

    def __call__(
        self, latents: torch.Tensor, timestep: torch.Tensor, embeddings: Conditioning
    ) -> torch.Tensor:
        # Counted before the call: a guidance pass that stops early still costs its forward.
        self.counter.add(forward=int(latents.shape[0]))
        text = as_conditioning(embeddings).to(self.dtype)
        with self.autocast():
            out = self.unet(latents.to(self.dtype), timestep, **text.unet_kwargs()).sample
        return out.float()


def scheduler_pair(
    config: Mapping[str, Any], steps: int
) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """DDIM sampling and inversion schedulers on the same timesteps.

    Args:
        config: the model's scheduler config (any diffusers scheduler's; the noise schedule,
            prediction type and timestep spacing are taken from it).
        steps: number of DDIM steps.

    Returns:
        (sampler, inverter), both with `set_timesteps(steps)` done: `sampler.timesteps` is
        descending, `inverter.timesteps` the same values ascending.
    """
    cfg = dict(config)
    if cfg.get("timestep_spacing", "leading") not in _INVERTIBLE_SPACINGS:
        cfg["timestep_spacing"] = "leading"
    # DDIM with eta 0 is deterministic; clipping would break the inversion round trip.
    cfg["clip_sample"] = False
    sampler = DDIMScheduler.from_config(cfg)
    inverter = DDIMInverseScheduler.from_config(cfg)
    sampler.set_timesteps(steps)
    inverter.set_timesteps(steps)
    if not torch.equal(sampler.timesteps.flip(0), inverter.timesteps):
        raise RuntimeError("sampling and inversion timesteps differ; check the scheduler config")
    return sampler, inverter


def cfg_prediction(
    predict: NoisePredictor,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance_scale: float | torch.Tensor,
    *,
    batch: bool,
    cond_context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier-free guidance: e = e_u + g * (e_c - e_u).

    Args:
        predict: the noise predictor.
        latents: (B, C, h, w); B is 1, or the seeds of a batched edit (`seed_batch`).
        timestep: scalar timestep.
        cond, uncond: (B, L, D) prompt and empty-prompt embeddings (or conditionings).
        guidance_scale: g; with g == 1 only the conditional prediction is computed. A
            (1, 1, h, w) tensor sets g per latent cell (0: the unconditional prediction).
        batch: run both predictions as one batch of 2 (faster on a GPU).
        cond_context: entered around the call that computes the conditional prediction
            (to record its attention): the batched call, whose last sample is the
            conditional one, or the conditional call alone.

    Returns:
        (e, e_c): the guided prediction and the conditional one, (B, C, h, w) each.
    """
    if not isinstance(guidance_scale, torch.Tensor) and guidance_scale == 1.0:
        with cond_context():
            e_c = predict(latents, timestep, cond)
        return e_c, e_c
    if batch:
        with cond_context():
            texts = cat_conditioning([uncond, cond])
            both = predict(torch.cat([latents, latents]), timestep, texts)
        e_u, e_c = both.chunk(2)
    else:
        e_u = predict(latents, timestep, uncond)
        with cond_context():
            e_c = predict(latents, timestep, cond)
    return e_u + guidance_scale * (e_c - e_u), e_c
