"""DDIM inversion of the source latent (stage 2, step 1 of `method.md`).

Runs diffusers' `DDIMInverseScheduler` from the clean latent z0 towards noise with the
conditional prediction only, and keeps the latent after every step: `z*_t` for each sampling
timestep t, which background blending copies into the edit. The result depends only on the
scene, the concept, the prompt and the step count, so callers compute it once per scene
(and the cache can store it: `Inversion.tensors` / `Inversion.from_tensors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.schedulers.scheduling_ddim_inverse import DDIMInverseScheduler

from layoutedit.editing.denoising import NoisePredictor
from layoutedit.loading.conditioning import Conditioning


@dataclass
class Inversion:
    """The inverted latents of one source, in sampling order.

    Attributes:
        timesteps: (N,) int64 sampling timesteps, descending (the `DDIMScheduler`'s).
        latents: (N, C, h, w) fp32; `latents[i]` is z*_{timesteps[i]}, the inverted latent at
            the noise level that sampling step i starts from. `latents[0]` is the most noisy.
        source: (1, C, h, w) the clean latent z0 that was inverted.
    """

    timesteps: torch.Tensor
    latents: torch.Tensor
    source: torch.Tensor

    @property
    def steps(self) -> int:
        """Number of DDIM steps N."""
        return int(self.timesteps.shape[0])

    def at_step(self, i: int) -> torch.Tensor:
        """(1, C, h, w) z* for sampling step i."""
        return self.latents[i : i + 1]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Tensors to store (safetensors-ready: contiguous, on the CPU)."""
        return {
            "timesteps": self.timesteps.detach().cpu().contiguous(),
            "latents": self.latents.detach().cpu().contiguous(),
            "source": self.source.detach().cpu().contiguous(),
        }

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], device: torch.device | str = "cpu"
    ) -> Inversion:
        """Rebuild from `tensors()` output."""
        return cls(
            timesteps=tensors["timesteps"].to(device),
            latents=tensors["latents"].to(device=device, dtype=torch.float32),
            source=tensors["source"].to(device=device, dtype=torch.float32),
        )


@torch.no_grad()
def invert(
    predict: NoisePredictor,
    inverter: DDIMInverseScheduler,
    source: torch.Tensor,
    cond: Conditioning,
) -> Inversion:
    """DDIM-invert `source` with the conditional prediction only.

    Args:
        predict: the noise predictor (a `UNetRunner`, which counts the N forwards).
        inverter: a `DDIMInverseScheduler` with `set_timesteps(N)` done (see
            `denoising.scheduler_pair`).
        source: (1, C, h, w) clean latent z0 (VAE mean x scaling factor).
        cond: (1, L, D) embeddings of the scene prompt (or its `TextConditioning`).

    Returns:
        The latents after each inverse step, reordered to match the sampling timesteps.
    """
    latents = source.float()
    trajectory = []
    for t in inverter.timesteps:  # ascending
        # The prediction at the target level t from the latent one level below it: the DDIM
        # inversion approximation (exact when the prediction does not depend on the latent).
        model_output = predict(latents, t, cond)
        latents = inverter.step(model_output, t, latents, return_dict=False)[0]  # level t
        trajectory.append(latents[0])
    stacked = torch.stack(trajectory[::-1])  # (N, C, h, w), most noisy first
    return Inversion(
        timesteps=inverter.timesteps.flip(0).clone(), latents=stacked, source=source.float()
    )
