"""The refiner's recipe: a copy of a model's UNet that also reads the edit's start image.

The edit's start (`refiner_pairs.py`) is right in most places and wrong in known ways: hidden
parts painted flat, shadows a little off, rims and re-lit colours approximate. The base
model, sampled from the noised start, does not know what the start got wrong (it sees only
the noised image), so its redraw ties with the start at best. The refiner is the base UNet
with `REFINER_EXTRA_CHANNELS` more input channels: the start's latent and the zone the edit
changed (`refine.refiner_input`). Seeded from the base weights with those channels' kernels
at zero (at step 0 it is the base model), trained with the DDPM epsilon loss on the truth's
latent, the loss weighted towards the changed zone. A share of each batch (`--start-share`)
is noised from the start instead, as the edit hands it over, with the target whose one-step
estimate is the truth (`noised_pairs`): noised from the truth alone, the refiner learns to
trust a lightly noised image, and the start's errors pass through it.

`make refiner` writes the pairs, then runs this module (`--pairs runs/refiner-pairs
--run-dir runs/refiner --export layoutedit/models/shapes-tiny-v2`).
Checkpoints (safetensors + JSON) every `CHECKPOINT_EVERY` steps; a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

from layoutedit.editing.refine import (
    REFINER_EXTRA_CHANNELS,
    refiner_input,
    zone_cells,
)
from layoutedit.loading.model_loading import REFINER_FOLDER
from layoutedit.shapes.refiner_pairs import add_training_options, require_pairs
from layoutedit.shapes.training_io import (
    budget_checked,
    log_to_run,
    optimiser_step,
    pipeline_folder,
    posterior_means,
    resume_run,
    save_run,
)

ZONE_WEIGHT = 4.0
"""Loss weight of a latent cell in the changed zone against one outside it (where the truth
is the start and the refiner only has to copy its input)."""

START_TIMESTEPS = (100, 800)
"""Timesteps (low inclusive, high exclusive) of the examples noised from the start."""

CHECKPOINT_EVERY = 200


def noised_pairs(
    truth: torch.Tensor,
    start: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    from_start: torch.Tensor,
    alphas_cumprod: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each example's noisy latent, epsilon target and loss scale.

    An example noised from the truth is the usual DDPM one (target: the noise). One noised
    from the start is what the edit hands the refiner: its target is the epsilon whose
    one-step clean estimate is the truth, n + sqrt(a / (1 - a)) (start - truth), and its
    loss is scaled by (1 - a), which makes it a ||clean estimate - truth||^2 loss weighted
    by a (a = alphas_cumprod[t]).

    Args:
        truth, start, noise: (B, C, h, w).
        t: (B,) int64 timesteps; from_start: (B,) bool.

    Returns:
        (z_t, target, scale): (B, C, h, w) twice and (B, 1, 1, 1).
    """
    a = alphas_cumprod.to(truth.device)[t].float()[:, None, None, None]
    pick = from_start[:, None, None, None]
    base = torch.where(pick, start, truth)
    noisy = a.sqrt() * base + (1 - a).sqrt() * noise
    towards = noise + (a / (1 - a)).sqrt() * (start - truth)
    target = torch.where(pick, towards, noise)
    scale = torch.where(pick, 1 - a, torch.ones_like(a))
    return noisy, target, scale


def load_pairs(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Every shard in `folder`: start, truth (N, S, S, 3) uint8, zone (N, S, S) bool,
    prompts (N)."""
    shards = sorted(folder.glob("pairs-*.safetensors"))
    starts, truths, zones, prompts = [], [], [], []
    for path in shards:
        with safe_open(str(path), framework="pt") as fh:
            prompts += json.loads(fh.metadata()["prompts"])
            starts.append(fh.get_tensor("start").numpy())
            truths.append(fh.get_tensor("truth").numpy())
            zones.append(fh.get_tensor("zone").numpy().astype(bool))
    return np.concatenate(starts), np.concatenate(truths), np.concatenate(zones), prompts


def shard_count(folder: Path) -> int:
    """Shards written so far (`refiner_pairs` writes each whole or not at all)."""
    return len(list(folder.glob("pairs-*.safetensors")))


@dataclass
class EncodedPairs:
    """Every pair's latents, zone cells and prompt, ready for training batches."""

    starts: torch.Tensor
    """(N, C, h, w) the start images' scaled latents."""
    truths: torch.Tensor
    """(N, C, h, w) the truths' scaled latents."""
    zones: torch.Tensor
    """(N, 1, h, w) `zone_cells` of each changed zone."""
    table: torch.Tensor
    """(P, L, D) embeddings of the P distinct prompts."""
    prompt_index: torch.Tensor
    """(N,) int64 each pair's row of `table`."""
    shards: int

    @property
    def count(self) -> int:
        return int(self.starts.shape[0])

    def text(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, L, D) the prompt embeddings of pairs `idx`."""
        return self.table[self.prompt_index[idx]]

    @classmethod
    def load(cls, folder: Path, model: Any) -> EncodedPairs:
        shards = shard_count(folder)
        start_img, truth_img, zone_px, prompts = load_pairs(folder)
        scale = model.scaling_factor  # the edit hands the refiner scaled latents
        starts = posterior_means(model.vae, start_img) * scale
        unique = sorted(set(prompts))
        with torch.no_grad():
            table = model.encode_text(unique).embeddings.float()
        return cls(
            starts=starts,
            truths=posterior_means(model.vae, truth_img) * scale,
            zones=zone_cells(torch.from_numpy(zone_px)[:, None].float(), starts.shape[-1]),
            table=table,
            prompt_index=torch.tensor([unique.index(p) for p in prompts]),
            shards=shards,
        )


def widen_unet(base: Any) -> Any:
    """A UNet2DConditionModel like `base` with `REFINER_EXTRA_CHANNELS` more input channels,
    the base weights copied and the new channels' kernels zero."""
    config = dict(base.config)
    config["in_channels"] = base.config.in_channels + REFINER_EXTRA_CHANNELS
    unet: Any = UNet2DConditionModel.from_config(config)
    state = base.state_dict()
    weight = state["conv_in.weight"]
    extra = torch.zeros(weight.shape[0], REFINER_EXTRA_CHANNELS, *weight.shape[2:])
    state["conv_in.weight"] = torch.cat([weight, extra], dim=1)
    unet.load_state_dict(state)
    return unet


def train(args: argparse.Namespace) -> None:
    from layoutedit.loading.model_loading import load_model

    run: Path = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    model = load_model(str(args.base))
    data = EncodedPairs.load(args.pairs, model)
    log_to_run(run, f"{data.count} pairs from {args.pairs}")
    unet = widen_unet(model.unet)
    unet.train().requires_grad_(True)
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    scheduler: Any = DDPMScheduler.from_config(model.scheduler_config)
    abar = scheduler.alphas_cumprod
    step, ema = resume_run(run, "refiner", unet, opt)
    rng = np.random.default_rng(7 + step)
    torch.manual_seed(7 + step)
    steps, warmup, began, first = args.steps, 100, time.monotonic(), step
    while step < steps:
        lr = args.lr * min(1.0, (step + 1) / warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.from_numpy(rng.integers(0, data.count, args.batch))
        z0, cond, zone = data.truths[idx], data.starts[idx], data.zones[idx]
        noise = torch.randn_like(z0)
        from_start = torch.from_numpy(rng.random(args.batch) < args.start_share)
        # Examples from the truth: every timestep (the edit may start from pure noise).
        t = torch.randint(0, len(abar), (args.batch,))
        low, high = START_TIMESTEPS
        t = torch.where(from_start, torch.randint(low, high, (args.batch,)), t)
        zt, target, scale = noised_pairs(z0, cond, noise, t, from_start, abar)
        pred = unet(refiner_input(zt, cond, zone), t, data.text(idx)).sample
        weight = (1.0 + (ZONE_WEIGHT - 1.0) * zone) * scale
        loss = (F.mse_loss(pred, target, reduction="none") * weight).mean() / weight.mean()
        optimiser_step(loss, opt, unet, ema, step)
        if step % 25 == 0:
            log_to_run(run, f"refiner step {step} loss {loss.item():.5f} lr {lr:.2e}")
        steps = budget_checked(run, args.max_minutes, first, step + 1, began, steps)
        step += 1
        if step % CHECKPOINT_EVERY == 0 or step == steps:
            save_run(run, "refiner", unet, opt, ema, step)
            if data.shards != shard_count(args.pairs):  # pairs still being written
                data = EncodedPairs.load(args.pairs, model)
                log_to_run(run, f"{data.count} pairs from {args.pairs}")
    if args.export is not None:
        export(run, model.unet, args.export, data.count)


def export(run: Path, base_unet: Any, model_dir: Path, pairs: int) -> Path:
    """The EMA weights as `model_dir/refiner` (a diffusers UNet folder, safetensors) with
    the steps and pairs it learned from in `REFINER.json`."""
    unet = widen_unet(base_unet)
    unet.load_state_dict(load_file(str(run / "refiner_ema.safetensors")))
    out = model_dir / REFINER_FOLDER
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    unet.save_pretrained(tmp, safe_serialization=True)
    step = int(json.loads((run / "refiner_state.json").read_text())["step"])
    info = {"steps": step, "pairs": pairs, "recipe": "layoutedit.shapes.refiner_train"}
    (tmp / "REFINER.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    log_to_run(run, f"exported step {step} to {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the refiner on start/truth pairs.")
    add_training_options(parser, steps=3000, batch=32, lr=2e-4)
    parser.add_argument(
        "--base", type=pipeline_folder, default=Path("layoutedit/models/shapes-tiny-v2")
    )
    parser.add_argument(
        "--start-share",
        type=float,
        default=0.5,
        help="share of each batch noised from the start image instead of the truth",
    )
    args = parser.parse_args(argv)
    require_pairs(parser, args.pairs, "start")
    if args.export is not None:
        refiner = args.export / REFINER_FOLDER
        if refiner.exists() and not (refiner / "REFINER.json").exists():
            # Not one this recipe wrote: replacing it would lose someone's weights.
            parser.error(f"{refiner}: a refiner this recipe did not write; move it first")
    torch.set_num_threads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
