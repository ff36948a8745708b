"""The refiner: a UNet that denoises towards what the edit's start image should have been.

A model may ship a `refiner/` folder beside its `unet/`: the same UNet with
`REFINER_EXTRA_CHANNELS` more input channels, trained (`shapes/refiner_train.py`) to turn the
cut-and-paste start into the re-rendered truth. It reads, beside the noisy latent, the
start's own latent and the zone the edit changed, so unlike the base model it knows what
the start looked like and where the start may be wrong.

The refined image enters the edit as a change to the start: the decoded refinement less the
VAE's own round trip of the start (`refined_change`). The VAE's reconstruction error (what
the start loses by being encoded and decoded) then cancels, and only what the refiner
changed is added, inside the zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from layoutedit.config import EditConfig
from layoutedit.counting import UNetCounter
from layoutedit.errors import UserError

if TYPE_CHECKING:
    from layoutedit.loading.model_loading import LoadedModel

REFINER_EXTRA_CHANNELS = 5
"""Input channels beyond the noisy latent's: the start's latent (4) and the zone (1)."""

ZONE_GROWTH = 2
"""Pixels by which the changed area grows into the zone the refiner is told about: an
object's anti-aliased rim and its shadow's soft edge lie just outside what changed."""


def require_extra_models(config: EditConfig, model: LoadedModel) -> None:
    """Raise a UserError when `config` would run the refiner (`refine`), the completer
    (`whole_from_model`) or the corrector (`correct`) with a paste start that is denoised
    and `model` lacks it: before any learning, not after it. The completer runs on a paste
    start whether or not it is denoised."""
    if config.init != "paste":
        return
    wanted = [("whole_from_model", "completer", config.whole_from_model)]
    if config.denoise:
        wanted += [("refine", "refiner", config.refine), ("correct", "corrector", config.correct)]
    for setting, net, on in wanted:
        if on and getattr(model, net) is None:
            raise UserError(
                f"edit.{setting} is on but the model has no {net} (a {net}/ folder beside "
                f"its unet/): set edit.{setting} = false",
                path=model.path,
            )


def changed_zone(source: np.ndarray, start: np.ndarray, redraw: np.ndarray | None) -> np.ndarray:
    """(H, W) bool where the start ((H, W, 3) uint8) differs from the source in any
    channel, grown by `ZONE_GROWTH` pixels, plus the redrawn area ((H, W) bool or None):
    where an edit may need the refiner."""
    from layoutedit.editing.paste import grow

    differs = np.any(source != start, axis=-1)
    zone = grow(differs, ZONE_GROWTH)
    if redraw is not None:
        zone |= redraw
    return np.asarray(zone, dtype=bool)


def zone_cells(zone: torch.Tensor, side: int) -> torch.Tensor:
    """(B, 1, H, W) float 0/1 pixel zone -> (B, 1, side, side): 1 where any pixel of the
    latent cell lies in the zone (H = W = side x the VAE's scale factor)."""
    return F.adaptive_max_pool2d(zone, side)


def refiner_input(latents: torch.Tensor, start: torch.Tensor, zone: torch.Tensor) -> torch.Tensor:
    """(B, 2C + 1, h, w): the noisy latents (B, C, h, w), the start's latent (B, C, h, w)
    and the zone's cells (B, 1, h, w), in the order the refiner was trained on."""
    return torch.cat([latents, start.to(latents.dtype), zone.to(latents.dtype)], dim=1)


def refine_timesteps(strength: float, steps: int, train_steps: int = 1000) -> list[int]:
    """The refiner's timesteps, descending: `steps` of them evenly spaced from the one that
    `strength` (0-1] of `train_steps` reaches down to the first step's width above 0."""
    top = max(1, round(strength * train_steps)) - 1
    return [round(top * (steps - i) / steps) for i in range(steps)]


@torch.no_grad()
def refine_latents(
    refiner: Any,
    alphas_cumprod: torch.Tensor,
    start: torch.Tensor,
    zone: torch.Tensor,
    text: torch.Tensor,
    timesteps: Sequence[int],
    noises: Sequence[torch.Tensor],
    counter: UNetCounter | None = None,
) -> list[torch.Tensor]:
    """The refiner's deterministic DDIM samples from the start noised to `timesteps[0]`,
    one per noise; with one timestep, its single-step estimate of the clean latent.

    Args:
        refiner: UNet2DConditionModel with `REFINER_EXTRA_CHANNELS` more inputs (epsilon
            prediction).
        alphas_cumprod: (1000,) the noise schedule's cumulative alphas.
        start: (1, C, h, w) the start image's scaled latent.
        zone: (1, 1, h, w) `zone_cells` of where the edit changed the start.
        text: (1, L, D) prompt embeddings (no classifier-free guidance: the start carries
            the content, the prompt only names it).
        timesteps: descending (`refine_timesteps`).
        noises: (1, C, h, w) each: the noise the start is mixed with, one sample each.
        counter: counts the refiner's evaluations, when given.

    Returns:
        One (1, C, h, w) latent per noise.
    """
    dtype = refiner.dtype  # half on a GPU edit; the DDIM arithmetic stays float32
    text = text.to(dtype)
    abar = alphas_cumprod.to(start.device, torch.float32)
    out = []
    for noise in noises:
        a = abar[timesteps[0]]
        z = a.sqrt() * start + (1 - a).sqrt() * noise.to(start)
        for i, t in enumerate(timesteps):
            a = abar[t]
            x = refiner_input(z, start, zone).to(dtype)
            eps = refiner(x, t, encoder_hidden_states=text).sample.float()
            if counter is not None:
                counter.add(forward=1)
            clean = (z - (1 - a).sqrt() * eps) / a.sqrt()
            if i + 1 == len(timesteps):
                z = clean
            else:
                after = abar[timesteps[i + 1]]
                z = after.sqrt() * clean + (1 - after).sqrt() * eps
        out.append(z)
    return out


def refined_change(refined: Sequence[np.ndarray], round_trip: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 what the refiner changed: the mean of its decoded samples (each
    (H, W, 3) uint8) less the start's VAE round trip ((H, W, 3) uint8). The mean of several
    samples keeps what they agree on (a shadow's darkening, a pattern's continuation) and
    averages away the detail each draws differently."""
    mean = np.mean([r.astype(np.float64) for r in refined], axis=0)
    return mean - round_trip.astype(np.float64)
