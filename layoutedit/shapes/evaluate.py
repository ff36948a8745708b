"""The quality gate of the embedded model (shapes-world.md), printed by `make evaluate-model`.

- VAE reconstruction PSNR (dB) on held-out scenes.
- Presence: the share of named objects that appear in images generated from held-out
  captions (DDIM 50, guidance 5) with their caption's colour name, and with roughly their shape.
- Attention: for each object's shape word, the share of its 16x16 cross-attention mass that
  falls on that object's pixels in the generated image.
- World v2 (`--world v2`, `gate_v2.py`): the share of generated objects whose shadow lies on
  the side away from the image's light, and the gradient energy of generated structured
  backgrounds against the true scenes' (1 = as textured as the truth).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layoutedit.editing.paste import grow
from layoutedit.scenes.morphology import largest_component
from layoutedit.shapes.dataset import HELDOUT_SEED_BASE
from layoutedit.shapes.gate_v2 import gradient_energy, shadow_sides
from layoutedit.shapes.textures import STRUCTURED, STRUCTURED_MEAN
from layoutedit.shapes.training_io import images_to_tensor, pipeline_folder
from layoutedit.shapes.world import (
    _BACKGROUND_MEAN,
    COLOUR_NAMES,
    SHAPES,
    ShapeSpec,
    WorldScene,
    exact_mask,
)
from layoutedit.shapes.world_v2 import sample_world_scene

_NAMES = list(COLOUR_NAMES)
_REF = np.array(list(COLOUR_NAMES.values()), dtype=np.float32)


def colour_name_map(image: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int index into COLOUR_NAMES of each pixel's nearest name."""
    d = np.linalg.norm(image[..., None, :].astype(np.float32) - _REF, axis=-1)
    return np.argmin(d, axis=-1)


def best_shape(component: np.ndarray) -> tuple[str, float]:
    """The world shape whose template, fitted to the component's box, overlaps it most."""
    ys, xs = np.nonzero(component)
    if len(ys) == 0:
        return "", 0.0
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    box = float(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    centroid = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
    scores = {}
    for shape in SHAPES:
        angles = (-20.0, -10.0, 0.0, 10.0, 20.0) if shape in ("square", "star") else (0.0,)
        # Triangles and hearts sit off-centre in their box; their centroid fits better.
        centre = centroid if shape in ("triangle", "heart") else (cx, cy)
        best = 0.0
        for angle in angles:
            for size in (box * 0.95, box * 1.05, box * 1.2, box * 1.35):
                spec = ShapeSpec(
                    shape, (0, 0, 0), "black", "plain", centre[0], centre[1], size, angle
                )
                tmpl = exact_mask(spec, component.shape[0])
                union = (tmpl | component).sum()
                best = max(best, float((tmpl & component).sum() / union) if union else 0.0)
        scores[shape] = best
    shape = max(scores, key=lambda s: scores[s])
    return shape, scores[shape]


@dataclass
class Presence:
    """Per object: found with its colour name, and with its shape too."""

    colour: list[bool]
    colour_and_shape: list[bool]
    components: list[np.ndarray]


def presence(image: np.ndarray, scene: WorldScene, min_pixels: int = 30) -> Presence:
    """Which of `scene`'s objects appear in `image` (colour name, then shape)."""
    names = colour_name_map(image)
    means = {**_BACKGROUND_MEAN, **STRUCTURED_MEAN}
    bg = np.array(means[scene.background], dtype=np.float32)
    # Objects keep >= 90 RGB from their background's mean, so nearer pixels are background.
    names[np.linalg.norm(image.astype(np.float32) - bg, axis=-1) < 55] = -1
    colour_ok, shape_ok, comps = [], [], []
    for obj in scene.objects:
        comp = largest_component(names == _NAMES.index(obj.colour_name))
        found = int(comp.sum()) >= min_pixels
        shape, _ = best_shape(comp) if found else ("", 0.0)
        colour_ok.append(found)
        shape_ok.append(found and shape == obj.shape)
        comps.append(comp)
    return Presence(colour_ok, shape_ok, comps)


@torch.no_grad()
def vae_psnr(pipe: object, scenes: Sequence[WorldScene]) -> float:
    """Mean PSNR (dB, 0-255 scale) of VAE reconstructions (posterior mean)."""
    vae = pipe.vae  # type: ignore[attr-defined]
    images = np.stack([s.image for s in scenes])
    x = images_to_tensor(images).to(vae.device)
    recon = vae.decode(vae.encode(x).latent_dist.mean).sample
    out = ((recon.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).cpu().numpy()
    mse = ((out - images.astype(np.float64)) ** 2).reshape(len(images), -1).mean(axis=1)
    return float(np.mean([10 * math.log10(255.0**2 / max(m, 1e-10)) for m in mse]))


def _noun_positions(tokenizer: Any, caption: str, names: Sequence[str]) -> list[int]:
    """Token index of each object's last name word (its shape noun) in the caption."""
    ids = list(tokenizer(caption).input_ids)
    out = []
    for name in names:
        word = list(tokenizer(name, add_special_tokens=False).input_ids)
        at = next(i for i in range(len(ids)) if ids[i : i + len(word)] == word)
        out.append(at + len(word) - 1)
    return out


@torch.no_grad()
def attention_shares(
    pipe: Any,
    latents: torch.Tensor,
    scenes: Sequence[WorldScene],
    found: Sequence[Presence],
    res: int = 16,
    timesteps: Sequence[int] = (300, 600),
) -> list[float]:
    """Per found object: share of its noun's cross-attention mass on its pixels.

    The generated latents (B, 4, h, w) are re-noised at `timesteps`; one conditional UNet
    pass each records the `res` x `res` cross-attention maps (mean over layers and heads).
    """
    from layoutedit.attention_recording import AttentionStore, install_processors
    from layoutedit.loading.unet_grids import cross_attention_sides

    unet = pipe.unet
    sides = cross_attention_sides(unet, latents.shape[-1])
    install_processors(unet, [n for n, side in sides.items() if side == res])
    store = AttentionStore(res)
    store.attach(unet)
    text = pipe.text_encoder(
        pipe.tokenizer(
            [s.caption for s in scenes],
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(latents.device)
    )[0]
    maps = torch.zeros(latents.shape[0], res, res, text.shape[1])
    gen = torch.Generator().manual_seed(1)  # on the CPU: the same noise on any device
    for t in timesteps:
        noise = torch.randn(latents.shape, generator=gen).to(latents.device)
        tt = torch.full((latents.shape[0],), t, dtype=torch.long, device=latents.device)
        with store.recording():
            unet(pipe.scheduler.add_noise(latents, noise, tt), tt, text)
        maps += store.maps().cpu() / len(timesteps)
    shares = []
    for b, (scene, pres) in enumerate(zip(scenes, found, strict=True)):
        nouns = _noun_positions(pipe.tokenizer, scene.caption, scene.names)
        for pos, ok, comp in zip(nouns, pres.colour, pres.components, strict=True):
            if not ok:
                continue
            side = comp.shape[0] // res
            cover = comp.reshape(res, side, res, side).mean(axis=(1, 3))
            a = maps[b, :, :, pos].numpy()
            shares.append(float((a * cover).sum() / max(a.sum(), 1e-12)))
    return shares


@torch.no_grad()
def true_image_attention_share(pipe: Any, scenes: Sequence[WorldScene]) -> float:
    """Mean attention share of each object's noun on its exact mask, on the true images.

    Separates where the model's words attend from how well it draws: the same measure as
    `attention_shares`, on VAE latents of the scenes themselves (every object present).
    """
    images = np.stack([s.image for s in scenes])
    latents = pipe.vae.encode(images_to_tensor(images).to(pipe.vae.device)).latent_dist.mean
    latents = latents * pipe.vae.config.scaling_factor
    everyone = [
        Presence([True] * len(s.objects), [True] * len(s.objects), list(s.masks)) for s in scenes
    ]
    return float(np.mean(attention_shares(pipe, latents, scenes, everyone)))


def v2_gate(
    generated: np.ndarray, scenes: Sequence[WorldScene], found: Sequence[Presence]
) -> dict[str, float]:
    """World v2's gate figures (`gate_v2`): shadow side share and background texture."""
    sides: list[bool] = []
    made, truth = [], []
    for image, scene, pres in zip(generated, scenes, found, strict=True):
        comps = [c for c, ok in zip(pres.components, pres.colour, strict=True) if ok]
        sides += shadow_sides(image, comps)
        if scene.background in STRUCTURED:
            away = ~grow(np.asarray(scene.masks.any(axis=0), dtype=bool), 3)
            made.append(gradient_energy(image, ~grow(np.any(comps, axis=0), 3) if comps else away))
            truth.append(gradient_energy(scene.image, away))
    return {
        "shadow_on_far_side_share": round(float(np.mean(sides)) if sides else 0.0, 3),
        "shadow_objects_judged": len(sides),
        "background_texture_ratio": round(
            float(np.mean(made)) / max(float(np.mean(truth)), 1e-9), 3
        )
        if truth
        else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    """Print the quality gate of a pipeline folder."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=pipeline_folder, required=True)
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--samples", type=Path, default=None, help="PNG grid of 32 generated images.")
    ap.add_argument("--device", default="cpu", help="cpu or cuda.")
    ap.add_argument("--world", choices=("v1", "v2"), default="v1", help="Held-out scenes' world.")
    args = ap.parse_args(argv)
    pipe = StableDiffusionPipeline.from_pretrained(args.model).to(args.device)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    scenes = [
        sample_world_scene(HELDOUT_SEED_BASE + i, world=args.world) for i in range(args.scenes)
    ]
    psnr = vae_psnr(pipe, scenes)
    gen = torch.Generator().manual_seed(0)
    chunks = []
    for i in range(0, len(scenes), 50):
        out = pipe(
            [s.caption for s in scenes[i : i + 50]],
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=gen,
            output_type="latent",
        ).images
        chunks.append(out)
    latents = torch.cat(chunks)
    with torch.no_grad():
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    generated = (
        ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    )
    found = [presence(image, scene) for image, scene in zip(generated, scenes, strict=True)]
    shares = attention_shares(pipe, latents, scenes, found)
    result = {
        "vae_psnr_db": round(psnr, 2),
        "presence_colour": round(float(np.mean([c for p in found for c in p.colour])), 3),
        "presence_colour_and_shape": round(
            float(np.mean([c for p in found for c in p.colour_and_shape])), 3
        ),
        "attention_on_object_share": round(float(np.mean(shares)) if shares else 0.0, 3),
        "attention_on_object_share_true_images": round(true_image_attention_share(pipe, scenes), 3),
        "scenes": len(scenes),
    }
    if args.world == "v2":
        result |= v2_gate(generated, scenes, found)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.samples is not None and len(generated) >= 32:
        from PIL import Image

        rows = [np.concatenate(list(generated[r * 8 : r * 8 + 8]), 1) for r in range(4)]
        Image.fromarray(np.concatenate(rows)).save(args.samples)


if __name__ == "__main__":
    main()
