"""The corrector's recipe (`editing/correct.py`): image/truth pairs in, a pixel-space
correction net out.

Reads the pairs `refiner_pairs.py --stage final` writes (the `no-model` row's finished
image, the re-rendered truth, the changed zone), or `--stage full` (the `full` row's, its
corrector off: the model's redraw included); `--more-pairs` folders add to the training
pairs, `--more-share` of each batch. The last `HELD_OUT` pairs of `--pairs` are never
trained on: every `CHECKPOINT_EVERY` steps the log gives their mean image PSNR before and
after the correction, so a run says whether it helps on scenes it did not see. The loss is
the log of each pair's mean squared error (`log_mse`): the benchmark averages each edit's
PSNR, so an edit already near the truth counts as much as one far from it, and a change
that costs a good edit dB is not bought by a bad edit's gain. Flips of the whole pair (the
world's light comes from any side) multiply the pairs by four. Checkpoints (safetensors
+ JSON) every `CHECKPOINT_EVERY` steps; a rerun resumes. `--export` writes the EMA weights
as the model folder's `corrector/`.
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

from layoutedit.bench.metrics_v2 import (
    LUMA,
    MAGNITUDE_EDGES,
    ORIENTATION_BINS,
    TEXTURE_CELL,
)
from layoutedit.loading.corrector import (
    CORRECTOR_FOLDER,
    CORRECTOR_INFO,
    GUIDE_MASKS,
    Corrector,
    load_weights,
    save_corrector,
    to_unit,
)
from layoutedit.shapes.refiner_pairs import add_training_options, require_pairs
from layoutedit.shapes.training_io import (
    budget_checked,
    log_to_run,
    optimiser_step,
    recipe_wrote,
    resume_run,
    save_run,
)

HELD_OUT = 400
"""Pairs at the end of the last shard kept out of training, for the log's check
(`--held-out`)."""

CHECKPOINT_EVERY = 250


MSE_FLOOR = 1e-5
"""Added to each pair's mean squared error (in [-1, 1] units; 1e-5 is about 54 dB) before
its log: an exact pair has no gradient to chase."""


def log_mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of log(each pair's mean squared error + `MSE_FLOOR`): (N, 3, H, W)
    images in [-1, 1]. Up to a constant, minus the mean PSNR over pairs / (10 / ln 10)."""
    return torch.log(((pred - truth) ** 2).mean(dim=(1, 2, 3)) + MSE_FLOOR).mean()


def soft_texture_codes(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images in [-1, 1] -> (N, `TEXTURE_BINS`, H, W) each pixel's soft
    membership of the benchmark's texture codes (`metrics_v2.gradient_codes`: flat, or a
    gradient magnitude band x an orientation bin), summing to 1 per pixel, differentiable."""
    weights = images.new_tensor(LUMA)[None, :, None, None]
    luma = ((images + 1.0) * 127.5 * weights).sum(dim=1, keepdim=True)
    padded = F.pad(luma, (1, 1, 1, 1), mode="replicate")
    gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    magnitude = torch.sqrt(gx**2 + gy**2 + 1e-6)
    edges = images.new_tensor(MAGNITUDE_EDGES)[None, :, None, None]
    above = torch.sigmoid((magnitude - edges) / (0.15 * edges))  # (N, 5, H, W)
    bands = above - torch.cat([above[:, 1:], torch.zeros_like(above[:, :1])], dim=1)
    angle = torch.atan2(gy, gx)
    bins = torch.arange(ORIENTATION_BINS, device=images.device)
    centres = (bins + 0.5) * math.pi / ORIENTATION_BINS
    orient = torch.softmax(4.0 * torch.cos(2 * (angle - centres[None, :, None, None])), dim=1)
    coded = (bands[:, :, None] * orient[:, None]).flatten(1, 2)  # (N, bands x bins, H, W)
    return torch.cat([1.0 - above[:, :1], coded], dim=1)


def texture_loss(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of the total-variation distance of soft gradient histograms in
    `TEXTURE_CELL` squares over `mask` ((N, 1, H, W) 0/1), weighted by each square's mask
    pixels (the benchmark's `vacated_texture_distance`, made differentiable): a blur moves
    pixels into the flat and weak bands, so the squared error alone would buy dB with it."""
    cell = TEXTURE_CELL
    counts = [F.avg_pool2d(soft_texture_codes(x) * mask, cell) * cell * cell for x in (pred, truth)]
    distance = 0.5 * (counts[0] - counts[1]).abs().sum(dim=(1, 2, 3))
    return (distance / mask.sum(dim=(1, 2, 3)).clamp(min=1)).mean()


def zone_log_mse(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the pairs whose `mask` ((N, 1, H, W) 0/1) is not empty of log(the mean
    squared error over its pixels + `MSE_FLOOR`); 0 when every mask is empty. (N, 3, H, W)
    images in [-1, 1]. The benchmark scores an uncovered part by its own PSNR per edit: a
    few hundred pixels that the whole image's error hardly weighs."""
    pixels = mask.sum(dim=(1, 2, 3))
    some = pixels > 0
    if not bool(some.any()):
        return pred.new_zeros(())
    mse = (((pred - truth) ** 2) * mask).sum(dim=(1, 2, 3)) / (3 * pixels.clamp(min=1))
    return torch.log(mse[some] + MSE_FLOOR).mean()


def image_psnrs(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(N,) each pair's PSNR (dB, 8-bit scale, pixels rounded as an image would be):
    (N, 3, H, W) images in [-1, 1]."""
    a, b = ((pred + 1) * 127.5).round().clamp(0, 255), ((truth + 1) * 127.5).round()
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-3)
    return 10 * torch.log10(255**2 / mse)


def flipped(*tensors: torch.Tensor, rng: np.random.Generator) -> list[torch.Tensor]:
    """The same random horizontal and vertical flips of each (N, C, H, W) tensor, per item."""
    n = tensors[0].shape[0]
    fh = torch.from_numpy(rng.random(n) < 0.5)[:, None, None, None]
    fv = torch.from_numpy(rng.random(n) < 0.5)[:, None, None, None]
    out = []
    for t in tensors:
        t = torch.where(fh, t.flip(-1), t)
        out.append(torch.where(fv, t.flip(-2), t))
    return out


RECIPE = "layoutedit.shapes.corrector_train"
"""What `CORRECTOR.json`'s `recipe` says of an export of this module."""


def pair_count(folder: Path) -> int:
    """Pairs in `folder`'s shards, read from their headers."""
    total = 0
    for path in sorted(folder.glob("pairs-*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            total += int(fh.get_slice("start").get_shape()[0])
    return total


def load_final_pairs(*folders: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every shard of `folders`, in order: images and truths (N, 3, S, S) in [-1, 1], the
    guide masks (N, 4, S, S) 0/1 (`loading.corrector.GUIDE_MASKS`)."""
    images, truths, masks = [], [], []
    for folder in folders:
        for path in sorted(folder.glob("pairs-*.safetensors")):
            with safe_open(str(path), framework="pt") as fh:
                images.append(to_unit(fh.get_tensor("start").numpy()))
                truths.append(to_unit(fh.get_tensor("truth").numpy()))
                masks.append(fh.get_tensor("masks").float())
    return torch.cat(images), torch.cat(truths), torch.cat(masks)


def batch_indices(
    rng: np.random.Generator, n_main: int, n_more: int, batch: int, more_share: float
) -> torch.Tensor:
    """(batch,) indices into the main pairs (0..`n_main` - 1) followed by the more pairs
    (`n_main`..`n_main` + `n_more` - 1): `more_share` of the batch (rounded) from the
    latter, when there are any."""
    from_more = round(more_share * batch) if n_more > 0 else 0
    main = rng.integers(0, n_main, batch - from_more)
    more = n_main + rng.integers(0, max(n_more, 1), from_more)
    return torch.from_numpy(np.concatenate([main, more]))


def train(args: argparse.Namespace) -> None:
    run: Path = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    images, truths, masks = load_final_pairs(args.pairs)
    n = images.shape[0] - args.held_out
    log_to_run(run, f"{n} training pairs, {args.held_out} held out, from {args.pairs}")
    held = images[n:], truths[n:], masks[n:]
    n_more = 0
    if args.more_pairs:
        more = load_final_pairs(*args.more_pairs)
        n_more = more[0].shape[0]
        # The held-out pairs stay out: the more pairs follow the main ones' first n.
        images, truths, masks = (
            torch.cat([a[:n], b]) for a, b in zip((images, truths, masks), more, strict=True)
        )
        folders = ", ".join(map(str, args.more_pairs))
        log_to_run(run, f"{n_more} more training pairs from {folders}")
    net = Corrector()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    if args.init_from is not None and not (run / "corrector_ckpt.safetensors").exists():
        load_weights(net, args.init_from)
        log_to_run(run, f"starting from {args.init_from}")
    step, ema = resume_run(run, "corrector", net, opt)
    rng = np.random.default_rng(11 + step)
    steps, warmup, began, first = args.steps, 100, time.monotonic(), step
    # `--stop-after` ends the run early on the schedule of `--steps` (its learning rate).
    end = steps if args.stop_after is None else min(steps, args.stop_after)
    ema_net = Corrector()
    while step < end:
        lr = args.lr * min(1.0, (step + 1) / warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * step / steps)) * 0.95 + 0.05
        for group in opt.param_groups:
            group["lr"] = lr
        idx = batch_indices(rng, n, n_more, args.batch, args.more_share)
        x, y, m = flipped(images[idx], truths[idx], masks[idx], rng=rng)
        pred = x + net(x, m)
        loss = log_mse(pred, y)
        if args.hidden_weight > 0:
            hidden = m[:, GUIDE_MASKS.index("hidden")][:, None]
            loss = loss + args.hidden_weight * zone_log_mse(pred, y, hidden)
        if args.texture_weight > 0:
            # The texture of what the edit guessed: the zone less the pasted objects.
            background = m[:, :1] * (1 - m[:, 1:2])
            loss = loss + args.texture_weight * texture_loss(pred, y, background)
        optimiser_step(loss, opt, net, ema, step)
        if step % 25 == 0:
            log_to_run(run, f"corrector step {step} loss {loss.item():.5f} lr {lr:.2e}")
        steps = budget_checked(run, args.max_minutes, first, step + 1, began, steps)
        end = min(end, steps)
        step += 1
        if step % CHECKPOINT_EVERY == 0 or step == end:
            save_run(run, "corrector", net, opt, ema, step)
            ema_net.load_state_dict(ema)
            with torch.no_grad():
                fixed = held[0] + ema_net.eval()(held[0], held[2])
            before, after = image_psnrs(held[0], held[1]), image_psnrs(fixed, held[1])
            worse = float((after < before - 0.05).float().mean()) * 100
            log_to_run(
                run,
                f"held-out image PSNR at step {step}: before {before.mean():.2f} dB, "
                f"corrected {after.mean():.2f} dB, worse in {worse:.0f} % of pairs",
            )
    if args.export is not None:
        ema_net.load_state_dict(ema)
        out = args.export / CORRECTOR_FOLDER
        save_corrector(
            ema_net,
            out,
            {
                "steps": step,
                "pairs": n,
                "more_pairs": n_more,
                "texture_weight": args.texture_weight,
                "hidden_weight": args.hidden_weight,
                "init_from": None if args.init_from is None else str(args.init_from),
                "recipe": RECIPE,
            },
        )
        log_to_run(run, f"exported step {step} to {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the corrector on image/truth pairs.")
    add_training_options(parser, steps=6000, batch=16, lr=1e-3)
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="end after this step, on the learning-rate schedule of --steps",
    )
    parser.add_argument(
        "--texture-weight",
        type=float,
        default=0.0,
        help="weight of the soft texture-histogram loss beside the log squared error",
    )
    parser.add_argument(
        "--hidden-weight",
        type=float,
        default=0.0,
        help="weight of the log squared error where a hidden part may show, per pair",
    )
    parser.add_argument(
        "--more-pairs",
        type=Path,
        action="append",
        default=[],
        help="another folder of final or full pairs to train on (repeatable)",
    )
    parser.add_argument(
        "--more-share",
        type=float,
        default=0.5,
        help="share of each batch drawn from --more-pairs (0..1)",
    )
    parser.add_argument(
        "--init-from", type=Path, default=None, help="corrector weights to start from"
    )
    parser.add_argument(
        "--held-out", type=int, default=HELD_OUT, help="last pairs kept for the log's check"
    )
    args = parser.parse_args(argv)
    for folder in (args.pairs, *args.more_pairs):
        require_pairs(parser, folder, "final", "full")
    for folder in args.more_pairs:
        if folder.resolve() == args.pairs.resolve():  # its held-out pairs would be trained on
            parser.error(f"--more-pairs {folder}: the --pairs folder itself")
    if not 0 <= args.more_share <= 1:
        parser.error(f"--more-share {args.more_share}: must lie in 0..1")
    for flag, weight in (
        ("--texture-weight", args.texture_weight),
        ("--hidden-weight", args.hidden_weight),
    ):
        if weight < 0:  # a negative weight would reward the error it names
            parser.error(f"{flag} {weight}: must be 0 or more")
    count = pair_count(args.pairs)
    if count <= args.held_out:
        parser.error(f"{args.pairs}: {count} pairs, more than --held-out needed")
    if args.init_from is not None:
        try:
            load_weights(Corrector(), args.init_from)
        except ValueError as exc:
            parser.error(str(exc))
    target = None if args.export is None else args.export / CORRECTOR_FOLDER
    if target is not None and not recipe_wrote(target, CORRECTOR_INFO, RECIPE):
        # Not one this recipe wrote: replacing it would lose someone's weights.
        parser.error(f"{target}: a corrector this recipe did not write")
    torch.set_num_threads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
