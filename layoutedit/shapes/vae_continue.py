"""Continue the whole VAE (encoder and decoder) on a new world's images.

World v2 brings what the v1 VAE never saw (structured backgrounds, shadows, an illumination
ramp): it reconstructs v2 scenes at about 20 dB against 30 dB on v1 (bricks 16 dB). The
UNet is retrained on the new latents afterwards, so the latent space may move a little; a
low rate and the v1 weights as the start keep it close. Resumable like every recipe stage.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from layoutedit.atomic import write_safetensors_atomic
from layoutedit.shapes.training_io import images_to_tensor, log_to_run

DONE = "continued"


def continue_vae(run: Path, images: np.ndarray, steps: int, batch: int, lr: float = 2e-4) -> None:
    """Fine-tune `run/vae` on random 32x32 crops of `images` ((N, 64, 64, 3) uint8) for
    `steps` optimiser steps, cosine rate from `lr`; writes the result back to `run/vae`.

    Checkpoints every 100 steps into `run/vae_continue*`; a finished stage is skipped.
    """
    if steps <= 0 or (run / "vae" / DONE).exists():
        return
    vae: Any = AutoencoderKL.from_pretrained(run / "vae")
    ckpt, state_path = run / "vae_continue.safetensors", run / "vae_continue.json"
    start = 0
    if ckpt.exists() and state_path.exists():
        vae.load_state_dict(load_file(str(ckpt)))
        start = int(json.loads(state_path.read_text())["step"])
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(4321 + start)
    crop = 32
    for step in range(start, steps):
        cur = lr * min(1.0, (step + 1 - start) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = cur
        idx = rng.integers(0, len(images), batch)
        y0, x0 = rng.integers(0, 64 - crop + 1, 2)
        x = images_to_tensor(images[idx, y0 : y0 + crop, x0 : x0 + crop])
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.sample()).sample
        mse = F.mse_loss(recon, x)
        loss = mse + 0.5 * F.l1_loss(recon, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))
            log_to_run(run, f"vae-continue step {step} psnr {psnr:.2f} lr {cur:.2e}")
        if (step + 1) % 100 == 0 or step == steps - 1:
            write_safetensors_atomic(ckpt, {k: v.contiguous() for k, v in vae.state_dict().items()})
            state_path.write_text(json.dumps({"step": step + 1}))
    vae.eval()
    vae.save_pretrained(run / "vae")
    (run / "vae" / DONE).write_text("ok")
    (run / "latents.safetensors").unlink(missing_ok=True)  # encoded by the old VAE
