"""The shapes-tiny recipe: data, VAE, latents, then UNet + text encoder, then export.

Run `python -m layoutedit.shapes.train --run-dir runs/shapes-tiny --export DIR` (`make model`).
Every phase checkpoints into the run folder (safetensors + JSON, no pickle) and is skipped or
resumed when the folder already holds its result, so an interrupted run continues where it
stopped. Losses go to `train.log` in the run folder; each invocation's settings are appended
to `history.json`, which the exported model carries in its `TRAINING.json`.

Beyond the denoising loss, the UNet stage trains on the method's own prompt forms
(`captions.py`) and, with `--attention-weight`, pushes each object word's cross-attention onto
the object's mask (`attention_loss.py`): layout guidance needs localised attention.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
from safetensors.torch import load_file
from transformers import CLIPTokenizer

from layoutedit.atomic import write_safetensors_atomic
from layoutedit.shapes.architecture import (
    SHAPES_TINY,
    TEST_TINY,
    ModelSize,
    build_scheduler,
    build_text_encoder,
    build_unet,
    build_vae,
)
from layoutedit.shapes.attention_loss import (
    attach_recorders,
    mask_attention_loss,
    phrase_token_positions,
    token_selection,
)
from layoutedit.shapes.captions import caption_variants
from layoutedit.shapes.dataset import TRAIN_SEED_BASE, load_or_generate_both
from layoutedit.shapes.tokenizer import write_tokenizer
from layoutedit.shapes.training_io import (
    budget_checked,
    continuable_model,
    ema_update,
    images_to_tensor,
    load_optimizer,
    log_to_run,
    on_cpu,
    posterior_means,
    save_optimizer,
    trained_steps,
)
from layoutedit.shapes.vae_continue import continue_vae
from layoutedit.shapes.world import VOCABULARY
from layoutedit.shapes.world_v2 import VOCABULARY_V2_EXTRA, WORLDS

SIZES = {"shapes-tiny": SHAPES_TINY, "test-tiny": TEST_TINY}


def train_vae(run: Path, images: np.ndarray, size: ModelSize, steps: int, batch: int) -> None:
    """AutoencoderKL on random 32x32 crops (the VAE has no attention, so crops suffice)."""
    done = run / "vae" / "done"
    if done.exists():
        return
    vae = build_vae(size)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    ckpt = run / "vae_ckpt.safetensors"
    start = 0
    if ckpt.exists():
        vae.load_state_dict(load_file(str(ckpt)))
        load_optimizer(opt, run / "vae_opt.safetensors")
        start = int(json.loads((run / "vae_state.json").read_text())["step"])
    rng = np.random.default_rng(1234 + start)
    crop = 32
    for step in range(start, steps):
        lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = rng.integers(0, len(images), batch)
        y0, x0 = rng.integers(0, 64 - crop + 1, 2)
        x = images_to_tensor(images[idx, y0 : y0 + crop, x0 : x0 + crop])
        if rng.random() < 0.5:
            x = x.flip(-1)
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.sample()).sample
        mse = F.mse_loss(recon, x)
        loss = mse + 0.5 * F.l1_loss(recon, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))
            log_to_run(run, f"vae step {step} loss {loss.item():.5f} psnr {psnr:.2f} lr {lr:.2e}")
        if (step + 1) % 250 == 0 or step == steps - 1:
            write_safetensors_atomic(ckpt, vae.state_dict())
            save_optimizer(opt, run / "vae_opt.safetensors", step + 1)
            (run / "vae_state.json").write_text(json.dumps({"step": step + 1}))
    vae.save_pretrained(run / "vae")
    done.write_text("ok")


@torch.no_grad()
def encode_latents(run: Path, images: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """Posterior means of every training image, on the CPU (cached in the run folder).

    The UNet trains on these means as they are, unscaled: `export` writes a scaling factor
    of 1 so that the pipeline's encoder hands the editor latents of the same scale."""
    path = run / "latents.safetensors"
    if path.exists():
        return load_file(str(path))["latents"]
    vae: Any = AutoencoderKL.from_pretrained(run / "vae").eval().to(device)
    latents = posterior_means(vae, images)
    write_safetensors_atomic(path, {"latents": latents})
    log_to_run(run, f"latents {tuple(latents.shape)} std {latents.std().item():.4f}")
    return latents


CAPTION_MIX = (0.6, 0.25, 0.15)
"""Share of world captions, scene-template captions and photo captions in training."""


def encode_captions(
    tokenizer: Any, captions: list[str], phrases: list[list[str]], size: ModelSize, objects: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and object-word selections of every caption variant of every scene.

    Returns:
        ids: (N, V, T) int64, V = len(CAPTION_MIX), T = size.max_length.
        selection: (N, V, objects, T) float32, 1 where token t names object k.
    """
    texts, positions = [], []
    for caption, scene_phrases in zip(captions, phrases, strict=True):
        for variant in caption_variants(caption, scene_phrases):
            texts.append(variant)
            positions.append(
                phrase_token_positions(tokenizer, variant, scene_phrases, size.max_length)
            )
    ids = tokenizer(
        texts, padding="max_length", max_length=size.max_length, truncation=True,
        return_tensors="pt",
    ).input_ids  # fmt: skip
    selection = torch.from_numpy(token_selection(positions, objects, size.max_length))
    n, v = len(captions), len(CAPTION_MIX)
    return ids.reshape(n, v, -1), selection.reshape(n, v, objects, -1)


def train_unet(
    run: Path,
    latents: torch.Tensor,
    captions: list[str],
    size: ModelSize,
    steps: int,
    batch: int,
    lr: float,
    truth: tuple[np.ndarray, list[list[str]]],
    attention_weight: float = 0.0,
    device: str = "cpu",
    max_minutes: float | None = None,
) -> None:
    """UNet and text encoder together, DDPM epsilon loss, 10% caption dropout, EMA weights.

    Each example's caption is drawn from its `captions.caption_variants` by `CAPTION_MIX`.
    With a positive `attention_weight`, the mask-supervised cross-attention loss of
    `attention_loss` is added: each object word's attention is pushed onto its object (the
    covers of `truth`, from `load_or_generate_both`) in every layer.

    Args:
        device: `cpu`, or `cuda` (forward passes in bfloat16 autocast; weights, optimiser
            and EMA stay float32; checkpoints are written from CPU copies).
        max_minutes: a wall-clock budget for this call: after `BUDGET_PROBE` steps the
            measured rate sets where the schedule ends (`training_io.budget_checked`), so
            the cosine decay finishes inside the budget instead of being cut off mid-way.
    """
    tokenizer = CLIPTokenizer.from_pretrained(run / "tokenizer")
    unet, text = build_unet(size), build_text_encoder(size, tokenizer)
    covers_all = torch.from_numpy(truth[0].astype(np.float32))
    ids_all, selection_all = encode_captions(
        tokenizer, captions, truth[1], size, covers_all.shape[1]
    )
    latents, covers_all = latents.to(device), covers_all.to(device)
    ids_all, selection_all = ids_all.to(device), selection_all.to(device)
    # On the device before the optimiser exists: loading its state then puts it there too.
    unet.to(device)
    torch.nn.Module.to(text, device)  # transformers types .to for its own arguments
    supervise = attention_weight > 0
    if supervise:
        collector = attach_recorders(unet, size.latent_size)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    noise_sched: Any = DDPMScheduler.from_config(build_scheduler().config)
    empty = tokenizer(
        [""], padding="max_length", max_length=size.max_length, return_tensors="pt"
    ).input_ids.to(device)
    start = warm_from = 0
    ckpt = run / "unet_ckpt.safetensors"
    if ckpt.exists():
        state = load_file(str(ckpt))
        unet.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("unet.")})
        text.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("text.")})
        fresh_optimizer = not (run / "unet_opt.safetensors").exists()  # seeded from a model
        if not fresh_optimizer:
            load_optimizer(opt, run / "unet_opt.safetensors")
        start = int(json.loads((run / "unet_state.json").read_text())["step"])
        # Adam's moments start at zero after seeding: warm the rate up again from here.
        warm_from = start if fresh_optimizer else 0
    ema_path = run / "ema.safetensors"
    if ema_path.exists():
        ema = load_file(str(ema_path))
    else:
        ema = {f"unet.{k}": v.clone() for k, v in unet.state_dict().items()}
        ema |= {f"text.{k}": v.clone() for k, v in text.state_dict().items()}
    ema_unet = {k[5:]: v.to(device) for k, v in ema.items() if k.startswith("unet.")}
    ema_text = {k[5:]: v.to(device) for k, v in ema.items() if k.startswith("text.")}
    rng = np.random.default_rng(99 + start)
    torch.manual_seed(99 + start)
    warmup = 200
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
    began = time.monotonic()
    step = start
    while step < steps:
        cur_lr = lr * min(1.0, (step + 1 - warm_from) / warmup)
        cur_lr *= 0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1
        for group in opt.param_groups:
            group["lr"] = cur_lr
        idx = torch.from_numpy(rng.integers(0, len(latents), batch)).to(device)
        z0 = latents[idx]
        variant = torch.from_numpy(rng.choice(len(CAPTION_MIX), size=batch, p=CAPTION_MIX))
        variant = variant.to(device)
        ids = ids_all[idx, variant].clone()
        drop = torch.from_numpy(rng.random(batch) < 0.1).to(device)
        ids[drop] = empty[0]
        noise = torch.randn_like(z0)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,)).to(device)
        zt = noise_sched.add_noise(z0, noise, t)
        if supervise:
            collector.reset()
        with autocast:
            pred = unet(zt, t, text(ids)[0]).sample
        denoise = loss = F.mse_loss(pred.float(), noise)
        share = torch.tensor(float("nan"))
        if supervise:
            selection = selection_all[idx, variant] * (~drop).float()[:, None, None]
            attn_loss, share = mask_attention_loss(collector.probs, covers_all[idx], selection)
            loss = denoise + attention_weight * attn_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text, decay)
        if step % 25 == 0 or step == steps - 1:
            log_to_run(
                run,
                f"unet step {step} loss {denoise.item():.5f} "
                f"attention share {share.item():.3f} lr {cur_lr:.2e}",
            )
        steps = budget_checked(run, max_minutes, start, step + 1, began, steps)
        if (step + 1) % 200 == 0 or step == steps - 1:
            state = {f"unet.{k}": v for k, v in unet.state_dict().items()}
            state |= {f"text.{k}": v for k, v in text.state_dict().items()}
            write_safetensors_atomic(ckpt, on_cpu(state))
            save_optimizer(opt, run / "unet_opt.safetensors", step + 1)
            ema_all = {f"unet.{k}": v for k, v in ema_unet.items()}
            ema_all |= {f"text.{k}": v for k, v in ema_text.items()}
            write_safetensors_atomic(ema_path, on_cpu(ema_all))
            (run / "unet_state.json").write_text(json.dumps({"step": step + 1}))
        step += 1


HISTORY = "history.json"


def _append_history(run: Path, args: argparse.Namespace) -> None:
    """Record this invocation's settings (and the step it starts from) in the run folder."""
    path = run / HISTORY
    history = json.loads(path.read_text()) if path.exists() else []
    state = run / "unet_state.json"
    start = json.loads(state.read_text())["step"] if state.exists() else 0
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    history.append({"date": time.strftime("%Y-%m-%d"), "from_step": start, **settings})
    path.write_text(json.dumps(history, indent=1))


def _grow_token_table(state: dict[str, torch.Tensor], vocab: int) -> dict[str, torch.Tensor]:
    """The text encoder's token table grown to `vocab` rows when the run's tokenizer adds
    words (`write_tokenizer`'s extra words): old rows keep their ids, new rows start at the
    mean row plus a little noise."""
    out = dict(state)
    for key, table in state.items():
        if key.endswith("token_embedding.weight") and table.shape[0] < vocab:
            gen = torch.Generator().manual_seed(7)
            extra = vocab - table.shape[0]
            noise = torch.randn(extra, table.shape[1], generator=gen) * table.std() * 0.1
            out[key] = torch.cat([table, table.mean(0, keepdim=True) + noise])
    return out


def seed_from_model(run: Path, model_dir: Path) -> None:
    """Start an empty run from an exported pipeline folder, so training goes on where the
    shipped model stopped even without the original run folder (weights only: the optimiser
    state starts fresh; the step count comes from the model's TRAINING.json)."""
    if (run / "unet_ckpt.safetensors").exists() or (run / "vae" / "done").exists():
        return
    shutil.copytree(model_dir / "vae", run / "vae", dirs_exist_ok=True)
    (run / "vae" / "done").write_text("ok")
    unet = load_file(str(model_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    text = load_file(str(model_dir / "text_encoder" / "model.safetensors"))
    state = {f"unet.{k}": v for k, v in unet.items()} | {f"text.{k}": v for k, v in text.items()}
    state = _grow_token_table(state, len(CLIPTokenizer.from_pretrained(run / "tokenizer")))
    write_safetensors_atomic(run / "unet_ckpt.safetensors", state)
    write_safetensors_atomic(run / "ema.safetensors", state)
    training = json.loads((model_dir / "TRAINING.json").read_text())
    step = trained_steps(model_dir)
    (run / "unet_state.json").write_text(json.dumps({"step": step}))
    (run / HISTORY).write_text(json.dumps(training.get("history", []), indent=1))
    log_to_run(run, f"seeded from {model_dir} at step {step}")


def export(run: Path, size: ModelSize, out: Path) -> Path:
    """Write the EMA weights as a Stable-Diffusion-layout pipeline folder at `out`."""
    tokenizer = CLIPTokenizer.from_pretrained(run / "tokenizer")
    ema = load_file(str(run / "ema.safetensors"))
    unet = build_unet(size)
    unet.load_state_dict({k[5:]: v for k, v in ema.items() if k.startswith("unet.")})
    text = build_text_encoder(size, tokenizer)
    text.load_state_dict({k[5:]: v for k, v in ema.items() if k.startswith("text.")})
    vae: Any = AutoencoderKL.from_pretrained(run / "vae")
    # The UNet learned the raw posterior means (`train_unet`): until 2026-11-29 this wrote 1/std
    # (0.747), so every encode handed the UNet latents at 0.75x the scale it was trained on
    # (development bench, seed 2000: object dB 27.1 -> 28.1 and attention share 0.77 -> 0.82
    # with 1; the gate's attention share on true images 0.846 -> 0.873).
    vae.register_to_config(scaling_factor=1.0)
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    # transformers 5 saves only tokenizer.json; older releases' slow CLIPTokenizer reads these.
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        shutil.copy2(run / "tokenizer" / name, tmp / "tokenizer" / name)
    step = json.loads((run / "unet_state.json").read_text())["step"]
    history_path = run / HISTORY
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    (tmp / "TRAINING.json").write_text(
        json.dumps(
            {"unet_steps": step, "recipe": "layoutedit.shapes.train", "history": history},
            indent=1,
        )
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    log_to_run(run, f"exported step {step} to {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point of the recipe."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/shapes-tiny"))
    ap.add_argument(
        "--export", type=Path, default=None, help="Pipeline folder to write at the end."
    )
    ap.add_argument("--scenes", type=int, default=12000)
    ap.add_argument("--vae-steps", type=int, default=2500)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--unet-steps", type=int, default=6000)
    ap.add_argument("--unet-batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--device", default="cpu", help="cpu, or cuda (bfloat16 autocast); the UNet stage."
    )
    ap.add_argument("--workers", type=int, default=2, help="Processes that generate the scenes.")
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="Wall-clock budget of the UNet stage: the schedule is shortened to end in it.",
    )
    ap.add_argument(
        "--attention-weight",
        type=float,
        default=0.3,
        help="Weight of the mask-supervised cross-attention loss (0: denoising loss only).",
    )
    ap.add_argument(
        "--world", choices=WORLDS, default="v1", help="The shapes world the scenes come from."
    )
    ap.add_argument(
        "--vae-continue-steps",
        type=int,
        default=0,
        help="Fine-tune the whole VAE on this run's scenes first (a model continued on a "
        "new world).",
    )
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--size", choices=sorted(SIZES), default="shapes-tiny", help="Model size.")
    ap.add_argument(
        "--init-from",
        type=continuable_model,
        default=None,
        help="Exported model to continue training from.",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run: Path = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    size = SIZES[args.size]
    if args.export_only:
        assert args.export is not None
        export(run, size, args.export)
        return
    extra = VOCABULARY_V2_EXTRA if args.world == "v2" else ()
    write_tokenizer(run / "tokenizer", VOCABULARY, size.max_length, extra)
    if args.init_from is not None:
        seed_from_model(run, args.init_from)
    _append_history(run, args)
    t0 = time.time()
    (images, captions), truth = load_or_generate_both(
        run / "train.npz",
        run / "truth.npz",
        TRAIN_SEED_BASE,
        args.scenes,
        args.workers,
        world=args.world,
    )
    log_to_run(run, f"data {images.shape} in {time.time() - t0:.0f}s")
    train_vae(run, images, size, args.vae_steps, args.vae_batch)
    continue_vae(run, images, args.vae_continue_steps, args.vae_batch)
    latents = encode_latents(run, images, args.device)
    train_unet(
        run,
        latents,
        captions,
        size,
        args.unet_steps,
        args.unet_batch,
        args.lr,
        truth,
        attention_weight=args.attention_weight,
        device=args.device,
        max_minutes=args.max_minutes,
    )
    if args.export is not None:
        export(run, size, args.export)
    log_to_run(run, f"done in {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
