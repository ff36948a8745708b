"""The quality gate of the embedded model (shapes-world.md), printed by `make evaluate-model`.

- VAE reconstruction PSNR (dB) on held-out scenes.
- Presence: the share of named objects that appear in images generated from held-out
  captions (DDIM 50, guidance 5) with their caption's colour name, and with roughly their shape.
- Attention: for each object's shape word, the share of its 16x16 cross-attention mass that
  falls on that object's pixels in the generated image.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layoutedit.shapes.dataset import HELDOUT_SEED_BASE
from layoutedit.shapes.world import (
    _BACKGROUND_MEAN,
    COLOUR_NAMES,
    SHAPES,
    ShapeSpec,
    WorldScene,
    sample_scene,
    shape_coverage,
)

_NAMES = list(COLOUR_NAMES)
_REF = np.array(list(COLOUR_NAMES.values()), dtype=np.float32)


def colour_name_map(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int index into COLOUR_NAMES of each pixel's nearest name."""
    d = np.linalg.norm(image[:, :, None, :].astype(np.float32) - _REF[None, None], axis=-1)
    return np.argmin(d, axis=-1)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a bool mask (flood fill; images are tiny)."""
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        stack, comp = [(int(y0), int(x0))], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            comp.append((y, x))
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask, dtype=bool)
    if best:
        ys, xs = zip(*best, strict=True)
        out[list(ys), list(xs)] = True
    return out


def best_shape(component: np.ndarray) -> tuple[str, float]:
    """The world shape whose template, fitted to the component's box, overlaps it most."""
    ys, xs = np.nonzero(component)
    if len(ys) == 0:
        return "", 0.0
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    box = float(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    scores = {}
    for shape in SHAPES:
        angles = (-20.0, -10.0, 0.0, 10.0, 20.0) if shape in ("square", "star") else (0.0,)
        best = 0.0
        for angle in angles:
            for size in (box * 0.95, box * 1.05, box * 1.2, box * 1.35):
                # Triangles and hearts sit off-centre in their box; the centroid fits better.
                for centre in ((cx, cy), (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)):
                    spec = ShapeSpec(shape, (0, 0, 0), "black", "plain", *centre, size, angle)
                    tmpl = shape_coverage(spec, component.shape[0]) >= 0.5
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
    bg = np.array(_BACKGROUND_MEAN[scene.background], dtype=np.float32)
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


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


@torch.no_grad()
def vae_psnr(pipe: object, scenes: Sequence[WorldScene]) -> float:
    """Mean PSNR (dB, 0-255 scale) of VAE reconstructions (posterior mean)."""
    vae = pipe.vae  # type: ignore[attr-defined]
    images = np.stack([s.image for s in scenes])
    x = _to_tensor(images)
    recon = vae.decode(vae.encode(x).latent_dist.mean).sample
    out = ((recon.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    mse = ((out - images.astype(np.float64)) ** 2).reshape(len(images), -1).mean(axis=1)
    return float(np.mean([10 * math.log10(255.0**2 / max(m, 1e-10)) for m in mse]))


def main(argv: list[str] | None = None) -> None:
    """Print the quality gate of a pipeline folder."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--samples", type=Path, default=None, help="PNG grid of 32 generated images.")
    args = ap.parse_args(argv)
    pipe = StableDiffusionPipeline.from_pretrained(args.model)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    scenes = [sample_scene(HELDOUT_SEED_BASE + i) for i in range(args.scenes)]
    psnr = vae_psnr(pipe, scenes)
    gen = torch.Generator().manual_seed(0)
    images = []
    for i in range(0, len(scenes), 50):
        chunk = [s.caption for s in scenes[i : i + 50]]
        out = pipe(
            chunk,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=gen,
            output_type="np",
        ).images
        images.append((out * 255).round().astype(np.uint8))
    generated = np.concatenate(images)
    colour, both = [], []
    for image, scene in zip(generated, scenes, strict=True):
        p = presence(image, scene)
        colour += p.colour
        both += p.colour_and_shape
    result = {
        "vae_psnr_db": round(psnr, 2),
        "presence_colour": round(float(np.mean(colour)), 3),
        "presence_colour_and_shape": round(float(np.mean(both)), 3),
        "scenes": len(scenes),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.samples is not None and len(generated) >= 32:
        from PIL import Image

        rows = [np.concatenate(list(generated[r * 8 : r * 8 + 8]), 1) for r in range(4)]
        Image.fromarray(np.concatenate(rows)).save(args.samples)


if __name__ == "__main__":
    main()
