"""What the recipe's stages (`train`, `decoder_finetune`, `refiner_train`) and the gate
(`evaluate`) share: a run folder's log, the images-to-tensor conversion, the check of a
model folder argument, optimiser checkpoints and EMA weights."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from layoutedit.atomic import write_safetensors_atomic


def log_to_run(run: Path, message: str) -> None:
    """Print `message` with the time and append it to `run/train.log`."""
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    with (run / "train.log").open("a") as log:
        log.write(line + "\n")


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def pipeline_folder(text: str) -> Path:
    """argparse `type` for a model argument: a pipeline folder (with `model_index.json`).

    A wrong path is a usage error (exit 2) before any data is generated or loaded, not a
    traceback from the loader minutes later.
    """
    path = Path(text)
    if not (path / "model_index.json").is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a model folder (no model_index.json)")
    return path


def trained_steps(model: Path) -> int:
    """The UNet steps an exported model was trained for (`TRAINING.json`'s `unet_steps`).

    Raises:
        ValueError: no TRAINING.json, or no step count in it.
    """
    try:
        steps = json.loads((model / "TRAINING.json").read_text())["unet_steps"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"{model}: no TRAINING.json with unet_steps (not a recipe export)"
        ) from None
    return int(steps)


def continuable_model(text: str) -> Path:
    """argparse `type` for a model to continue training: a pipeline folder that the recipe
    exported (its TRAINING.json says where training stopped). A usage error (exit 2)."""
    path = pipeline_folder(text)
    try:
        trained_steps(path)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def save_optimizer(opt: torch.optim.Optimizer, path: Path, step: int) -> None:
    """The optimiser's per-parameter state as safetensors (no pickle), `step` in the header."""
    tensors: dict[str, torch.Tensor] = {}
    for i, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{i}.{name}"] = value.detach().cpu().contiguous()
    write_safetensors_atomic(path, tensors, metadata={"step": str(step)})


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """Restore what `save_optimizer` wrote into `opt` (built over the same parameters)."""
    tensors = load_file(str(path))
    sd = opt.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies of a state dict's tensors (checkpoints are written from these)."""
    return {k: v.detach().cpu() for k, v in state.items()}


def ema_update(ema: dict[str, torch.Tensor], model: Any, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights, for each floating tensor of `model`."""
    for name, p in model.state_dict().items():
        if p.dtype.is_floating_point:
            ema[name].mul_(decay).add_(p.detach(), alpha=1 - decay)


@torch.no_grad()
def posterior_means(vae: Any, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, C, h, w) the VAE posterior's means, unscaled, on the CPU,
    `batch` images a call on the VAE's device."""
    device = next(vae.parameters()).device
    chunks = [
        vae.encode(images_to_tensor(images[i : i + batch]).to(device)).latent_dist.mean.cpu()
        for i in range(0, len(images), batch)
    ]
    return torch.cat(chunks)


def resume_run(
    run: Path, name: str, module: Any, opt: torch.optim.Optimizer
) -> tuple[int, dict[str, torch.Tensor]]:
    """Load `module` and `opt` from `run`'s `{name}_ckpt` / `{name}_opt` safetensors where
    they exist (logged), and return the step reached (0 when new) and the EMA weights
    (`{name}_ema`, else a copy of the module's)."""
    from safetensors.torch import load_file

    step = 0
    ckpt = run / f"{name}_ckpt.safetensors"
    if ckpt.exists():
        module.load_state_dict(load_file(str(ckpt)))
        load_optimizer(opt, run / f"{name}_opt.safetensors")
        step = int(json.loads((run / f"{name}_state.json").read_text())["step"])
        log_to_run(run, f"resumed at step {step}")
    ema_path = run / f"{name}_ema.safetensors"
    if ema_path.exists():
        return step, load_file(str(ema_path))
    return step, {k: v.detach().clone() for k, v in module.state_dict().items()}


def save_run(
    run: Path,
    name: str,
    module: Any,
    opt: torch.optim.Optimizer,
    ema: dict[str, torch.Tensor],
    step: int,
) -> None:
    """What `resume_run` reads: weights, optimiser, EMA weights and the step, each file
    written whole."""
    write_safetensors_atomic(run / f"{name}_ckpt.safetensors", on_cpu(module.state_dict()))
    save_optimizer(opt, run / f"{name}_opt.safetensors", step)
    write_safetensors_atomic(run / f"{name}_ema.safetensors", on_cpu(ema))
    (run / f"{name}_state.json").write_text(json.dumps({"step": step}))


def optimiser_step(
    loss: torch.Tensor,
    opt: torch.optim.Optimizer,
    module: Any,
    ema: dict[str, torch.Tensor],
    step: int,
) -> None:
    """One update of `module` from `loss` (gradients clipped to norm 1), then its EMA
    weights, whose decay warms up towards 0.999 over the first steps."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    opt.step()
    ema_update(ema, module, min(0.999, (1 + step) / (10 + step)))


BUDGET_PROBE = 30
"""Steps timed before a wall-clock budget sets where the schedule ends."""


def budget_end(start: int, done: int, seconds: float, budget_seconds: float) -> int:
    """The last step (exclusive) that fits a time budget at the rate measured so far.

    Args:
        start: the step this call began at.
        done: the step reached after `seconds` of this call.
        seconds: wall seconds spent on steps start..done (the first ones carry any warm-up,
            so the estimate errs short).
        budget_seconds: the whole call's budget.

    Returns:
        A step >= done: `done` plus the steps that the remaining time holds at that rate,
        less 5 % for checkpoints.
    """
    rate = (done - start) / max(seconds, 1e-9)
    left = max(0.0, budget_seconds - seconds) * 0.95
    return done + int(rate * left)


def budget_checked(
    run: Path, max_minutes: float | None, first: int, done: int, began: float, steps: int
) -> int:
    """The schedule's end, shortened once `BUDGET_PROBE` steps after `first` (at step
    `done`) to what `max_minutes` holds at the rate measured since `began`
    (`time.monotonic()`), and the shorter end logged; `steps` unchanged at any other step,
    without a budget, or when the budget holds the whole schedule."""
    if max_minutes is None or done != first + BUDGET_PROBE:
        return steps
    spent = time.monotonic() - began
    ends = budget_end(first, done, spent, max_minutes * 60)
    if ends >= steps:
        return steps
    rate = BUDGET_PROBE / max(spent, 1e-9)
    log_to_run(
        run,
        f"budget {max_minutes:g} min at {rate:.1f} steps/s: the schedule ends at step {ends}",
    )
    return ends


def recipe_wrote(folder: Path, info_name: str, recipe: str) -> bool:
    """Whether `folder` is absent or holds a net that `recipe` exported (its JSON file
    `info_name` names the recipe): only those may be replaced by an export."""
    if not folder.exists():
        return True
    try:
        info = json.loads((folder / info_name).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and str(info.get("recipe", "")).startswith(recipe)
