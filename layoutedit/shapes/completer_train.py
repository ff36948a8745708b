"""The completer's recipe (`editing.complete`): the samples `completer_data` writes in, a
net that completes an object's whole shape under the objects over it out.

The loss is the binary cross-entropy on the covered pixels only (elsewhere the answer is
known: the visible pixels are the object's, the rest are not). A sample mirrored left to
right is a sample of the world too (`mirrored`). The last `HELD_OUT` samples of the last
shard are never trained on: every `CHECKPOINT_EVERY` steps the log gives their covered
parts' IoU with the truth, beside the convex hull's (`occlusion_fit.amodal_estimate`'s
rule). Checkpoints (safetensors + JSON) every `CHECKPOINT_EVERY` steps; a rerun resumes.
`--export` writes the EMA weights as the model folder's `completer/`.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

from layoutedit.editing.complete import WHOLE_THRESHOLD
from layoutedit.loading.completer import (
    COMPLETER_FOLDER,
    COMPLETER_INFO,
    Completer,
    save_completer,
)
from layoutedit.scenes.masks import convex_hull_mask
from layoutedit.shapes.training_io import (
    budget_checked,
    log_to_run,
    optimiser_step,
    pipeline_folder,
    recipe_wrote,
    resume_run,
    save_run,
)

HELD_OUT = 1000
CHECKPOINT_EVERY = 500
RECIPE = "layoutedit.shapes.completer_train"
"""What `COMPLETER.json`'s `recipe` says of an export of this module."""


def load_samples(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every shard of `folder`, in order: (N, 4, S, S) and (N, 1, S, S) float32 0/1."""
    planes, wholes = [], []
    for path in sorted(folder.glob("samples-*.safetensors")):
        with safe_open(str(path), framework="np") as fh:
            planes.append(np.unpackbits(fh.get_tensor("planes"), axis=-1))
            wholes.append(np.unpackbits(fh.get_tensor("wholes"), axis=-1))
    if not planes:
        return torch.zeros(0, 4, 1, 1), torch.zeros(0, 1, 1, 1)
    p = torch.from_numpy(np.concatenate(planes)).float()
    w = torch.from_numpy(np.concatenate(wholes)).float()[:, None]
    return p, w


def sample_count(folder: Path) -> int:
    """Samples in `folder`'s shards, read from their headers."""
    total = 0
    for path in sorted(folder.glob("samples-*.safetensors")):
        with safe_open(str(path), framework="np") as fh:
            total += int(fh.get_slice("wholes").get_shape()[0])
    return total


def mirrored(
    planes: torch.Tensor, wholes: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with a random half of its samples mirrored left to right, inputs and
    truths alike. Only that: the world's shapes stand upright (a heart points down), so a
    quarter turn or an upside-down sample would teach shapes it never shows."""
    flip = torch.from_numpy(rng.random(planes.shape[0]) < 0.5)
    planes = torch.where(flip[:, None, None, None], planes.flip(-1), planes)
    wholes = torch.where(flip[:, None, None, None], wholes.flip(-1), wholes)
    return planes, wholes


def covered_loss(logits: torch.Tensor, planes: torch.Tensor, wholes: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each sample's cross-entropy over its covered pixels."""
    covered = planes[:, 1:2]
    bce = F.binary_cross_entropy_with_logits(logits, wholes, reduction="none") * covered
    per = bce.sum(dim=(1, 2, 3)) / covered.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return per.mean()


def covered_ious(guess: np.ndarray, planes: np.ndarray, wholes: np.ndarray) -> np.ndarray:
    """(N,) IoU of the guessed and true hidden parts (whole shape inside the covered
    pixels); 1 where both are empty. Arrays (N, H, W) bool, planes (N, 4, H, W)."""
    covered = planes[:, 1] > 0
    g, t = guess & covered, (wholes > 0) & covered
    inter, union = (g & t).sum(axis=(1, 2)), (g | t).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def hull_guess(planes: np.ndarray) -> np.ndarray:
    """(N, H, W) bool the convex-hull rule's whole shapes (visible plus the covered pixels
    inside the visible pixels' convex hull)."""
    visible, covered = planes[:, 0] > 0, planes[:, 1] > 0
    return np.stack([v | (convex_hull_mask(v) & c) for v, c in zip(visible, covered, strict=True)])


def train(args: argparse.Namespace) -> None:
    run: Path = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    planes, wholes = load_samples(args.samples)
    n = planes.shape[0] - args.held_out
    log_to_run(run, f"{n} training samples, {args.held_out} held out, from {args.samples}")
    held_p, held_w = planes[n:], wholes[n:]
    hull_iou = covered_ious(hull_guess(held_p.numpy()), held_p.numpy(), held_w[:, 0].numpy())
    log_to_run(run, f"held-out hidden-part IoU of the convex hull: {hull_iou.mean():.3f}")
    held_truth = held_w[:, 0].numpy() > 0

    def scored(completer: Completer) -> str:
        with torch.no_grad():
            probs = torch.sigmoid(completer.eval()(held_p))[:, 0].numpy()
        guess = (held_p[:, 0].numpy() > 0) | (probs > WHOLE_THRESHOLD)
        ious = covered_ious(guess, held_p.numpy(), held_truth)
        better = float((ious > hull_iou + 0.01).mean()) * 100
        worse = float((ious < hull_iou - 0.01).mean()) * 100
        return (
            f"{ious.mean():.3f} (convex hull {hull_iou.mean():.3f}; better in {better:.0f} %, "
            f"worse in {worse:.0f} % of {len(ious)})"
        )

    side = int(planes.shape[-1])
    net = Completer(side=side)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    step, ema = resume_run(run, "completer", net, opt)
    rng = np.random.default_rng(13 + step)
    steps, warmup, began, first = args.steps, 100, time.monotonic(), step
    ema_net = Completer(side=side)
    while step < steps:
        lr = args.lr * min(1.0, (step + 1) / warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * step / steps)) * 0.95 + 0.05
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.from_numpy(rng.integers(0, n, args.batch))
        p, w = mirrored(planes[idx], wholes[idx], rng)
        loss = covered_loss(net(p), p, w)
        optimiser_step(loss, opt, net, ema, step)
        if step % 50 == 0:
            log_to_run(run, f"completer step {step} loss {loss.item():.4f} lr {lr:.2e}")
        steps = budget_checked(run, args.max_minutes, first, step + 1, began, steps)
        step += 1
        if step % CHECKPOINT_EVERY == 0 or step == steps:
            save_run(run, "completer", net, opt, ema, step)
            ema_net.load_state_dict(ema)
            log_to_run(run, f"held-out hidden-part IoU at step {step}: " + scored(ema_net))
    if args.export is not None:
        ema_net.load_state_dict(ema)
        out = args.export / COMPLETER_FOLDER
        save_completer(
            ema_net,
            out,
            {
                "steps": step,
                "samples": n,
                "lr": args.lr,
                "batch": args.batch,
                "held_out_hidden_part_iou": scored(ema_net),
                "recipe": RECIPE,
            },
        )
        log_to_run(run, f"exported step {step} to {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the completer on whole-shape samples.")
    parser.add_argument("--samples", type=Path, required=True, help="completer_data output")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--held-out", type=int, default=HELD_OUT)
    parser.add_argument(
        "--export", type=pipeline_folder, default=None, help="model folder to add it to"
    )
    args = parser.parse_args(argv)
    if not any(args.samples.glob("samples-*.safetensors")):
        parser.error(f"{args.samples}: no samples-*.safetensors (run completer_data first)")
    count = sample_count(args.samples)
    if count <= args.held_out:
        parser.error(
            f"{args.samples}: {count} samples, more than --held-out ({args.held_out}) needed"
        )
    target = None if args.export is None else args.export / COMPLETER_FOLDER
    if target is not None and not recipe_wrote(target, COMPLETER_INFO, RECIPE):
        parser.error(f"{target}: a completer this recipe did not write")
    torch.set_num_threads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
