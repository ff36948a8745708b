"""Regularisation (prior-preservation) latents for the fine-tune (method.md Stage 1 step 3).

Two sources:
- a local folder in the published layout: `images.txt` and `caption.txt`, one image path
  (relative to the folder or absolute) and one caption a line;
- images the base model itself generates from class prompts (`a photo of a <name>`, one per
  object name), with DDIM and classifier-free guidance. They depend only on the base model
  and the prompt, so they are cached (the concept cache when given, else a folder).

Only the latents are kept: the fine-tune never needs the pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image
from safetensors.torch import load_file

from layoutedit.atomic import write_safetensors_atomic
from layoutedit.config import LearnConfig
from layoutedit.counting import UNetCounter
from layoutedit.errors import UserError
from layoutedit.loading.conditioning import TextConditioning
from layoutedit.loading.model_loading import LoadedModel
from layoutedit.scenes.image_io import read_rgb

_ENCODE_BATCH = 4


@dataclass
class PriorSet:
    """Regularisation latents with their captions.

    Attributes:
        latents: (N, C, h, w) scaled latents, on the CPU.
        captions: N captions.
    """

    latents: torch.Tensor
    captions: list[str]


def _lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise UserError(
            "prior folder needs images.txt and caption.txt (one image path / caption a line)",
            path=path,
        ) from None


def _centre_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def prior_folder_digest(folder: Path) -> str:
    """SHA-256 (hex) of a prior folder's lists and the bytes of every image they name.

    The concept key covers it, so editing the folder's images or captions learns anew.
    A missing list or image is hashed as missing (learning then reports it).
    """
    sha = hashlib.sha256()

    def add(label: str, data: bytes | None) -> None:
        sha.update(label.encode() + b"\0")
        sha.update(b"-" if data is None else len(data).to_bytes(8, "big") + data)

    for name in ("images.txt", "caption.txt"):
        try:
            add(name, (folder / name).read_bytes())
        except OSError:
            add(name, None)
    try:
        paths = _lines(folder / "images.txt")
    except UserError:
        paths = []
    for text in paths:
        path = Path(text) if Path(text).is_absolute() else folder / text
        try:
            add(text, path.read_bytes())
        except OSError:
            add(text, None)
    return sha.hexdigest()


def load_prior_folder(model: LoadedModel, folder: Path) -> PriorSet:
    """Read and VAE-encode the regularisation images of a published-layout folder.

    Images are centre-cropped to a square and resized to the model's image size.

    Raises:
        UserError: missing lists, unequal line counts, or an unreadable image.
    """
    paths = _lines(folder / "images.txt")
    captions = _lines(folder / "caption.txt")
    if len(paths) != len(captions):
        raise UserError(
            f"images.txt has {len(paths)} lines but caption.txt has {len(captions)}",
            path=folder,
        )
    if not paths:
        raise UserError("images.txt lists no images", path=folder / "images.txt")
    latents = []
    for text in paths:
        path = Path(text) if Path(text).is_absolute() else folder / text
        image = _centre_square(read_rgb(path, what="prior image"))
        image = np.asarray(Image.fromarray(image).resize((model.image_size,) * 2))
        latents.append(model.encode_image(image).cpu())
    return PriorSet(torch.cat(latents), captions)


@torch.no_grad()
def generate_latents(
    model: LoadedModel,
    prompt: str,
    count: int,
    *,
    seed: int,
    steps: int,
    guidance_scale: float,
    batch_cfg: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    counter: UNetCounter | None = None,
    batch_size: int = 4,
) -> torch.Tensor:
    """Sample `count` latents of `prompt` from the model with guided DDIM (eta 0).

    Args:
        batch_cfg: True runs unconditional and conditional predictions in one UNet call.
        autocast: the backend's forward-pass context.
        counter: UNet evaluations are added here (a batch of N counts N).

    Returns:
        (count, C, h, w) scaled latents on the CPU.
    """
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    device, dtype = model.device, model.dtype
    shape = (count, model.latent_channels, model.latent_size, model.latent_size)
    noise = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
    cond_all = model.encode_text([prompt]).to(dtype)  # (1, L, D) (+ SDXL's pooled, time ids)
    uncond_all = model.encode_text([""]).to(dtype)
    out = []
    for first in range(0, count, batch_size):
        latents = noise[first : first + batch_size].to(device, dtype)
        n = latents.shape[0]
        cond, uncond = cond_all.expand(n), uncond_all.expand(n)
        both_texts = TextConditioning.cat([uncond, cond])
        for t in scheduler.timesteps:
            with autocast():
                if batch_cfg:
                    pair = torch.cat([latents, latents])
                    both = model.unet(pair, t, **both_texts.unet_kwargs())
                    e_u, e_c = both.sample.float().chunk(2)
                else:
                    e_u = model.unet(latents, t, **uncond.unet_kwargs()).sample.float()
                    e_c = model.unet(latents, t, **cond.unet_kwargs()).sample.float()
            if counter is not None:
                counter.add(forward=2 * n)
            guided = e_u + guidance_scale * (e_c - e_u)
            latents = scheduler.step(guided, t, latents.float()).prev_sample.to(dtype)
        out.append(latents.float().cpu())
    return torch.cat(out)


def class_prompts(names: Sequence[str], cfg: LearnConfig) -> list[str]:
    """One class prompt per object name: the single-object template with the plain name."""
    return [cfg.ti_single_template.format(token=name) for name in names]


def generated_prior(
    model: LoadedModel,
    names: Sequence[str],
    cfg: LearnConfig,
    *,
    cache: Any | None = None,
    folder: Path | None = None,
    batch_cfg: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    counter: UNetCounter | None = None,
) -> PriorSet:
    """Regularisation latents generated by the base model, one class prompt per object.

    Each prompt's latents are looked up first, under `prior_key` (model fingerprint, prompt,
    count, seed and the generation settings): in `cache` (a `ConceptCache`, locked per key so
    two processes generate once) or else as a safetensors file in `folder`.

    Must run before any placeholder is learned: the images are the base model's.
    """
    from layoutedit_cache import prior_key

    latents, captions = [], []
    extra = {
        "steps": cfg.prior_steps,
        "guidance_scale": cfg.prior_guidance_scale,
        "latent_size": model.latent_size,
    }
    for prompt in class_prompts(names, cfg):
        key = prior_key(
            model_fingerprint=model.fingerprint,
            class_prompt=prompt,
            count=cfg.prior_images,
            seed=cfg.seed,
            extra=extra,
        )

        def make(prompt: str = prompt) -> torch.Tensor:
            return generate_latents(
                model,
                prompt,
                cfg.prior_images,
                seed=cfg.seed,
                steps=cfg.prior_steps,
                guidance_scale=cfg.prior_guidance_scale,
                batch_cfg=batch_cfg,
                autocast=autocast,
                counter=counter,
            )

        if cache is not None:
            with cache.lock(key):
                entry = cache.get(key)
                if entry is None:
                    z = make()
                    meta = {"class_prompt": prompt, "model": model.spec, **extra}
                    cache.put(key, "prior", {"latents": {"latents": z}}, meta)
                else:
                    z = entry.tensors("latents")["latents"]
        else:
            z = _from_folder(folder, key, make)
        latents.append(z)
        captions += [prompt] * z.shape[0]
    return PriorSet(torch.cat(latents), captions)


def _from_folder(folder: Path | None, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    if folder is None:
        return make()
    path = folder / f"prior-{key[:16]}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))["latents"]
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # damaged: generate again
    z = make()
    write_safetensors_atomic(path, {"latents": z})
    return z
