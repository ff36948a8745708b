"""How well a learned concept's placeholders attend to their own objects on the source.

Guidance moves an object by moving its placeholder's attention, so a placeholder that does
not attend to its object before anything moves (concept bleeding: it attends to a
neighbour) cannot be steered. `source_attention_shares` measures it directly: noise the
source at a few timesteps, run the UNet once per timestep with the prompt, and take, at the
guidance's attention grid, the share of each placeholder's attention mass (mean over the
layers and heads of that grid) that falls on its object's mask. Uniform attention scores
the object's area share; 1 is every bit of it on the object. `learn` reports it, and the
benchmark prints it per variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from layoutedit.attention_recording import AttentionStore, choose_attention_res, install_processors
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.precision import Precision, stored_precision, unet_forward
from layoutedit.scenes.grids import region_masks, square_pad

if TYPE_CHECKING:
    from layoutedit.loading.model_loading import LoadedModel
    from layoutedit.scenes.scene import Scene

CHECK_TIMESTEPS = (250, 500, 750)
"""Noise levels the shares are averaged over (of 1000 training timesteps)."""


@torch.no_grad()
def source_attention_shares(
    model: LoadedModel,
    scene: Scene,
    prompt: str,
    positions: Sequence[int],
    *,
    attention_res: int | None = None,
    timesteps: Sequence[int] = CHECK_TIMESTEPS,
    seed: int = 0,
    precision: Precision | None = None,
) -> list[float]:
    """Per object, the share of its token's attention that lies on its source mask.

    Args:
        model: the model as it edits (a concept already applied for placeholder prompts).
        scene: the source scene.
        prompt: the prompt whose tokens are checked.
        positions: K token positions in `input_ids`, object order.
        attention_res: query-grid side (None: the guidance's default choice).
        timesteps: training timesteps to noise the source at; shares are averaged.
        seed: noise seed (the same noise for every timestep).
        precision: how the forward passes run (`learn` passes its own, so the check runs as
            learning ran); None: as the model's weights are stored (`stored_precision`).

    Returns:
        K shares in [0, 1]. The UNet's attention processors are restored afterwards.
    """
    from layoutedit.learning.training import training_scheduler  # torch-heavy; only here

    precision = precision if precision is not None else stored_precision(model)
    sides = cross_attention_sides(model.unet, model.latent_size)
    res = choose_attention_res(sides, model.latent_size, attention_res)
    before = dict(model.unet.attn_processors)
    install_processors(model.unet, [name for name, side in sides.items() if side == res])
    store = AttentionStore(res)
    store.attach(model.unet)
    try:
        square, _ = square_pad(scene.image, None)
        z0 = model.encode_image(square).float()  # (1, C, h, w)
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed)).to(z0)
        with precision.autocast():
            cond = model.encode_text([prompt])  # (1, L, D) (+ SDXL's pooled, time ids)
        masks = torch.from_numpy(region_masks(scene.labels, len(scene.objects), res))
        index = torch.as_tensor(list(positions))
        scheduler = training_scheduler(model)
        shares = torch.zeros(len(positions))
        for t in timesteps:
            step = torch.tensor([t], device=z0.device)
            z_t = scheduler.add_noise(z0, noise, step)
            with store.recording():
                unet_forward(model.unet, precision, z_t, step, cond)
            maps = store.maps()[0].cpu()  # (res, res, T)
            per_object = maps[:, :, index].permute(2, 0, 1)  # (K, res, res)
            inside = (per_object * masks).sum(dim=(1, 2))
            shares += inside / per_object.sum(dim=(1, 2)).clamp_min(1e-12)
        return (shares / len(timesteps)).tolist()
    finally:
        model.unet.set_attn_processor(before)
