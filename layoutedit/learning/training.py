"""What the two learning stages share: the step loop, the noising step and the losses.

A training step (method.md Stage 1): sample timesteps `t ~ U[0, T)` and noise `e`, make
`z_t = add_noise(z0, e, t)`, predict with the UNet and compare with the target (`e`, or the
velocity `v` for v-prediction models). The random numbers come from one CPU `torch.Generator`
whose state is saved in every checkpoint, so a resumed run draws exactly what an
uninterrupted run would have drawn.

`run_stage` is the optimiser-step loop of both stages (`textual_inversion`, `finetune`); each
stage gives it its micro-batch loss, and saves and resumes through
`layoutedit.learning.checkpoints`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from diffusers import DDPMScheduler

from layoutedit.errors import UserError
from layoutedit.learning.attention_supervision import (
    LayerProbabilities,
    mask_attention_loss,
    recording_attention,
)
from layoutedit.learning.checkpoints import Checkpoint, CheckpointDir, RunTotals
from layoutedit.loading.model_loading import LoadedModel
from layoutedit.precision import Precision, unet_forward


class ProgressHook(Protocol):
    """Receives progress of a learning run (the CLI draws Rich bars from it)."""

    def stage(self, name: str, total: int, done: int) -> None:
        """A stage starts: `total` optimiser steps, `done` of them already (resumed)."""
        ...

    def step(self, loss: float) -> None:
        """One optimiser step finished with this loss."""
        ...


class NoProgress:
    """A progress hook that shows nothing."""

    def stage(self, name: str, total: int, done: int) -> None:
        """Ignored."""

    def step(self, loss: float) -> None:
        """Ignored."""


def training_scheduler(model: LoadedModel) -> Any:
    """The model's noise schedule as a DDPM scheduler (for `add_noise` / `get_velocity`)."""
    return DDPMScheduler.from_config(model.scheduler_config)


def noisy_batch(
    model: LoadedModel,
    scheduler: Any,
    z0: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise a batch of clean latents at random timesteps.

    Args:
        z0: (B, C, h, w) clean scaled latents on the model's device.
        generator: CPU generator (draws are device-independent and resumable).

    Returns:
        z_t (B, C, h, w), timesteps (B,) int64, and the target the UNet should predict
        (B, C, h, w): the noise, or the velocity for v-prediction models.
    """
    batch = z0.shape[0]
    steps = int(scheduler.config.num_train_timesteps)
    t = torch.randint(0, steps, (batch,), generator=generator)
    noise = torch.randn(z0.shape, generator=generator, dtype=torch.float32)
    t, noise = t.to(z0.device), noise.to(z0.device, z0.dtype)
    z_t = scheduler.add_noise(z0, noise, t)
    if model.prediction_type == "v_prediction":
        target = scheduler.get_velocity(z0, noise, t)
    elif model.prediction_type == "epsilon":
        target = noise
    else:
        raise ValueError(f"unsupported prediction type {model.prediction_type!r}")
    return z_t, t, target


@dataclass(frozen=True)
class ShiftedBatch:
    """A batch of the scene, each sample translated by whole latent pixels.

    Attributes:
        z0: (B, C, h, w) latents; the part shifted in from outside repeats the edge.
        masks: (B, K, h, w) the object masks moved with them (zero where shifted in).
        valid: (B, 1, h, w) 1 where a latent pixel came from the scene, 0 where padded.
    """

    z0: torch.Tensor
    masks: torch.Tensor
    valid: torch.Tensor


def shifted_batch(
    z0: torch.Tensor, masks: torch.Tensor, limit: float, generator: torch.Generator
) -> ShiftedBatch:
    """Translate each sample by a random offset of up to `limit` x the latent side.

    A learned concept otherwise ties each object to where it stands in the one training
    image, and an edit that moves it fights that memory. With `limit` 0 nothing moves and
    no random number is drawn (a run without augmentation keeps its draws).

    Args:
        z0: (B, C, h, w) clean latents (the scene's, repeated).
        masks: (B, K, h, w) 0/1 object masks on the latent grid.
        limit: largest shift as a share of the side (0-0.5).
        generator: CPU generator of the stage (checkpointed, so a resume draws the same).
    """
    batch, _, h, w = z0.shape
    valid = torch.ones(batch, 1, h, w, dtype=z0.dtype, device=z0.device)
    reach = round(limit * min(h, w))
    if reach == 0:
        return ShiftedBatch(z0, masks, valid)
    offsets = torch.randint(-reach, reach + 1, (batch, 2), generator=generator).tolist()
    zs, ms, vs = [], [], []
    for b, (dy, dx) in enumerate(offsets):
        ys = torch.arange(h, device=z0.device) - dy  # source row of each output row
        xs = torch.arange(w, device=z0.device) - dx
        inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
        yc, xc = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
        zs.append(z0[b][:, yc][:, :, xc])
        ms.append(masks[b][:, yc][:, :, xc] * inside.to(masks.dtype))
        vs.append(inside.to(z0.dtype)[None])
    return ShiftedBatch(torch.stack(zs), torch.stack(ms), torch.stack(vs))


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the latent elements inside a mask only.

    Args:
        pred, target: (B, C, h, w).
        mask: (B, 1, h, w) 0/1 (broadcast over channels); elements where it is 0 do not
            change the loss or its gradient at all.

    Returns:
        Scalar: sum(mask * (pred - target)^2) / (C * sum(mask)).
    """
    mask = mask.to(pred.dtype)
    sq = (pred.float() - target.float()) ** 2 * mask  # (B, C, h, w)
    inside = mask.sum() * pred.shape[1]
    return sq.sum() / inside.clamp_min(1.0)


def scaled_lr(base: float, batch: int, accumulation: int, scale: bool) -> float:
    """Learning rate scaled by batch size x gradient accumulation (the published rule)."""
    return base * batch * accumulation if scale else base


def make_optimizer(
    kind: str, params: Sequence[torch.Tensor], lr: float, device: torch.device
) -> torch.optim.Optimizer:
    """The optimiser `LearnConfig.optimizer` names, over `params`.

    Args:
        kind: `adamw` (torch) or `adamw8bit` (bitsandbytes: moments kept in 8 bits, on CUDA).
        params: the trained tensors.
        lr: learning rate (weight decay and betas are each optimiser's defaults).
        device: where `params` live.

    Raises:
        UserError: `adamw8bit` off CUDA or without bitsandbytes installed.
    """
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if kind != "adamw8bit":
        raise ValueError(f"unknown optimiser {kind!r}")
    if device.type != "cuda":
        raise UserError(
            f"learn.optimizer = 'adamw8bit' runs on CUDA only (this run is on {device.type}); "
            "use 'adamw'"
        )
    try:
        import bitsandbytes
    except ImportError:
        raise UserError(
            "learn.optimizer = 'adamw8bit' needs bitsandbytes: pip install bitsandbytes"
        ) from None
    optimizer: torch.optim.Optimizer = bitsandbytes.optim.AdamW8bit(params, lr=lr)
    return optimizer


class StepRunner:
    """Gradient accumulation and the fp16 loss scale of one stage, with no shared state.

    A micro-batch's loss is divided by the accumulation and back-propagated (scaled when the
    precision wants a `GradScaler`); `step` then updates the weights once per optimiser
    step. What an `accelerate.Accelerator` did here, without its process-wide state: a
    second stage or a second learn in another `mixed_precision` in the same process (serve,
    the API) was refused by it.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, precision: Precision, accumulation: int
    ) -> None:
        self.optimizer, self.accumulation = optimizer, accumulation
        self.scaler = precision.grad_scaler()

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate one micro-batch's share of the step's loss."""
        share = loss / self.accumulation
        (self.scaler.scale(share) if self.scaler is not None else share).backward()

    def step(self) -> None:
        """Update the weights with the accumulated gradients, then clear them (a step whose
        fp16 gradients overflowed is skipped by the scaler, which lowers its scale)."""
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad()


@contextlib.contextmanager
def trainable(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Enable gradients on `params` for a block, and turn them off again afterwards."""
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None


def add_seconds(totals: RunTotals, key: str, since: float) -> None:
    """Add the seconds since `since` (a `time.perf_counter()` reading) to `totals.seconds[key]`."""
    totals.seconds[key] = totals.seconds.get(key, 0.0) + time.perf_counter() - since


@dataclass(frozen=True)
class StageSpec:
    """How one learning stage runs.

    Attributes:
        label: progress-bar label.
        seconds_key: key of `RunTotals.seconds` the stage's time is added to.
        steps: optimiser steps in all.
        accumulation: micro-batches per optimiser step.
        checkpoint_every: save every N steps (0: only at the end).
        precision: the forward passes' weights dtype and autocast (`layoutedit.precision`).
    """

    label: str
    seconds_key: str
    steps: int
    accumulation: int
    checkpoint_every: int
    precision: Precision
    record_attention: bool = False
    """Record the cross-attention probabilities of each pass (for `placeholder_attention_loss`)."""


@dataclass
class Predictor:
    """Noises clean latents and runs the UNet on them, under the stage's autocast."""

    model: LoadedModel
    scheduler: Any
    precision: Precision
    recorder: LayerProbabilities | None = None
    """Holds the last pass's cross-attention probabilities when the stage records them."""

    def __call__(
        self, z0: torch.Tensor, texts: Sequence[str], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict at random timesteps (`noisy_batch`).

        Args:
            z0: (B, C, h, w) clean scaled latents.
            texts: B prompts.
            generator: the stage's CPU generator.

        Returns:
            The UNet's prediction and its target, both (B, C, h, w).
        """
        z_t, t, target = noisy_batch(self.model, self.scheduler, z0, generator)
        if self.recorder is not None:
            self.recorder.reset()
        with self.precision.autocast():
            cond = self.model.encode_text(list(texts))  # (B, L, D) (+ SDXL's pooled, time ids)
        pred = unet_forward(self.model.unet, self.precision, z_t, t, cond)
        return pred, target


def placeholder_attention_loss(
    predict: Predictor, masks: torch.Tensor, positions: Sequence[Sequence[int]]
) -> torch.Tensor:
    """How far each placeholder's attention of the last pass lies off its object's mask.

    Args:
        predict: the stage's predictor, recording (`StageSpec.record_attention`).
        masks: (B, K, h, w) 0/1 object masks on the latent grid, per sample.
        positions: per sample, the K placeholder positions in `input_ids`.

    Returns:
        Scalar mean of (1 - share)^2 over recorded layers, samples and placeholders.
    """
    if predict.recorder is None or not predict.recorder.probs:
        raise RuntimeError("the stage does not record attention")
    batch = masks.shape[0]
    # The batch may go on with prior-preservation samples: only the first `batch` are scored.
    probs = [p[:batch] for p in predict.recorder.probs]
    selection = torch.zeros(batch, masks.shape[1], probs[0].shape[-1], device=masks.device)
    for b, sample in enumerate(positions):
        for k, position in enumerate(sample):
            selection[b, k, position] = 1.0
    loss, _ = mask_attention_loss(probs, masks.float(), selection)
    return loss


MicroBatch = Callable[[int, Predictor], tuple[torch.Tensor, int]]
"""`(index, predict) -> (loss, samples)`: the loss of micro-batch `index` of the whole stage
(step x accumulation + micro, so a resumed run picks the same data) and how many samples
went through the UNet."""


def run_stage(
    model: LoadedModel,
    spec: StageSpec,
    *,
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    start: int,
    micro_batch: MicroBatch,
    after_step: Callable[[], None],
    checkpoint: Callable[[int], Checkpoint],
    ckpts: CheckpointDir,
    totals: RunTotals,
    progress: ProgressHook,
) -> None:
    """The optimiser-step loop both learning stages share, from step `start` to the end.

    Each step runs `spec.accumulation` micro-batches and updates the weights once
    (`StepRunner`), then `after_step` (writing the trained rows into their tables), reports
    the mean loss, and saves a checkpoint every `spec.checkpoint_every` steps and at the end.

    Args:
        optimizer: over `params`, which get gradients only while the loop runs.
        start: the first step (a resumed run's checkpoint step).
        checkpoint: the stage's checkpoint after a number of steps.
    """
    progress.stage(spec.label, spec.steps, start)
    if start >= spec.steps:
        return
    runner = StepRunner(optimizer, spec.precision, spec.accumulation)
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        recorder = (
            stack.enter_context(recording_attention(model.unet, model.latent_size))
            if spec.record_attention
            else None
        )
        predict = Predictor(model, training_scheduler(model), spec.precision, recorder)
        stack.enter_context(trainable(params))
        for step in range(start, spec.steps):
            losses = []
            for micro in range(spec.accumulation):
                loss, samples = micro_batch(step * spec.accumulation + micro, predict)
                runner.backward(loss)
                totals.counter.add(forward=samples, backward=samples)
                losses.append(float(loss.detach()))
            runner.step()
            after_step()
            progress.step(sum(losses) / len(losses))
            done = step + 1
            if spec.checkpoint_every and done % spec.checkpoint_every == 0 and done < spec.steps:
                add_seconds(totals, spec.seconds_key, began)
                began = time.perf_counter()
                ckpts.save(checkpoint(done))
    add_seconds(totals, spec.seconds_key, began)
    ckpts.save(checkpoint(spec.steps))
