"""One step of every phase of the method, run through the project's own functions.

Each phase function sets up what persists across steps (trained parameters, the optimiser
state as after the first step, the recorded attention layers), then calls `measure`, which
runs one step under the memory tracker and `torch.utils.flop_counter.FlopCounterMode`. On a
`meta` model nothing is computed: shapes, dtypes and bytes only, in about a second.

Phases: `vae-encode`, `textual-inversion` (one micro-batch and optimiser step: the
placeholder rows train, spliced into the embedding lookup, as
`textual_inversion.run_textual_inversion` does), `fine-tune` (attn2 to_k/to_v from
`finetune.kv_parameters` plus the extra tokens' rows; both with the placeholder attention
loss, its recording processors and maps when `attention_loss_weight` > 0), `inversion` (one
conditional prediction), `guided` (the attention-guidance gradient pass of
`sampling.AttentionGuide`, recording processors on the guidance layers), `unguided`
(`denoising.cfg_prediction` and one DDIM step) and `vae-decode`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from layoutedit.attention_recording import AttentionStore, choose_attention_res
from layoutedit.config import EditConfig, LearnConfig
from layoutedit.counting import UNetCounter
from layoutedit.editing.denoising import UNetRunner, cfg_prediction, scheduler_pair
from layoutedit.editing.guidance import text_attention
from layoutedit.editing.low_memory import vae_tiling
from layoutedit.editing.sampling import AttentionGuide
from layoutedit.learning.attention_supervision import (
    LayerProbabilities,
    mask_attention_loss,
    recording_attention,
)
from layoutedit.learning.finetune import kv_parameters
from layoutedit.learning.trained_rows import TrainedRows
from layoutedit.learning.training import (
    masked_mse,
    noisy_batch,
    scaled_lr,
    trainable,
    training_scheduler,
)
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.planning.fused import use_fused_model
from layoutedit.planning.meta_model import PlanModel
from layoutedit.planning.optimizers import planned_optimizer
from layoutedit.planning.rss import peak_rss, reset_peak_rss
from layoutedit.planning.tracker import CATEGORIES, AutocastEmulation, MemoryTracker


@dataclass
class PhaseCost:
    """What one step of a phase costs.

    Attributes:
        name: the phase.
        peak: bytes per category at the moment of the phase's peak.
        flops: floating-point operations of the step (FlopCounterMode: matrix products,
            convolutions and attention; elementwise ops are not counted).
        batch: samples per UNet call in the step.
        reference_flops: FlopCounterMode's count of the same step, when asked for
            (`PhaseContext.check_flops`; not for `guided`, see `MemoryTracker.flops`).
        seconds: wall-clock seconds of the step on a real device (None on `meta`).
        device_peak: on CUDA, `torch.cuda.max_memory_allocated` during the step (bytes,
            all live tensors, allocator rounding included).
        rss_growth: on a real CPU run, how far the process's peak resident memory rose
            during the step (bytes; Linux only, else None): an independent, coarse check
            of `peak` (it also sees the allocator's and Python's own memory).
    """

    name: str
    peak: dict[str, int]
    flops: int
    batch: int = 1
    rss_growth: int | None = None
    reference_flops: int | None = None
    seconds: float | None = None
    device_peak: int | None = None

    @property
    def peak_total(self) -> int:
        """Bytes live at the peak, all categories."""
        return sum(self.peak.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "peak_bytes": self.peak_total,
            "by_category": dict(self.peak),
            "flops": self.flops,
            "batch": self.batch,
            "rss_growth_bytes": self.rss_growth,
            "reference_flops": self.reference_flops,
            "seconds": self.seconds,
            "device_peak_bytes": self.device_peak,
        }


@dataclass
class PhaseContext:
    """How the phases run.

    Attributes:
        plan: the model.
        tracker: the memory tracker (its weights are registered already).
        low_memory: gradient checkpointing in the UNet's backward passes.
        objects: objects in the scene (K).
        check_flops: also count each step with `FlopCounterMode` (`reference_flops`).
    """

    plan: PlanModel
    tracker: MemoryTracker
    low_memory: bool = False
    objects: int = 3
    check_flops: bool = False

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent."""
        model = self.plan.model
        return (model.latent_channels, model.latent_size, model.latent_size)


def measure(
    name: str, ctx: PhaseContext, step: Callable[[], object], batch: int = 1, *, check: bool = True
) -> PhaseCost:
    """Run `step` once under the tracker; the peak starts at what is live.

    `check`: the step may run under `FlopCounterMode` when `ctx.check_flops` (False for a
    step that takes `torch.autograd.grad` of a leaf, which its module hooks break).
    """
    tracker = ctx.tracker
    tracker.reset_peak()
    flops_before = tracker.flops
    reference = FlopCounterMode(display=False) if ctx.check_flops and check else None
    device = ctx.plan.device
    dtype = tracker.autocast_dtype
    autocast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if dtype is not None:
        # torch.autocast does not act on `meta` tensors: emulate its policy there.
        meta = device.type == "meta"
        autocast = AutocastEmulation(dtype) if meta else torch.autocast(device.type, dtype)
    before = reset_peak_rss() if device.type == "cpu" else None
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    with tracker, reference or contextlib.nullcontext(), autocast:
        step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    growth = None if before is None else max(0, (peak_rss() or before) - before)
    return PhaseCost(
        name,
        dict(tracker.peak),
        tracker.flops - flops_before,
        batch,
        rss_growth=growth,
        reference_flops=None if reference is None else int(reference.get_total_flops()),
        seconds=None if device.type == "meta" else seconds,
        device_peak=int(torch.cuda.max_memory_allocated(device)) if cuda else None,
    )


@contextlib.contextmanager
def _checkpointing(unet: Any, on: bool, autocast: torch.dtype | None = None) -> Iterator[None]:
    """Gradient checkpointing in the UNet for the block; the recomputation in backward runs
    under the same autocast emulation as the forward (as torch.autocast is replayed)."""
    if on and autocast is not None:
        import torch.utils.checkpoint

        def contexts() -> tuple[Any, Any]:
            return contextlib.nullcontext(), AutocastEmulation(autocast)

        def run(module: Any, *args: Any) -> Any:
            return torch.utils.checkpoint.checkpoint(
                module, *args, use_reentrant=False, context_fn=contexts
            )

        unet.enable_gradient_checkpointing(run)
    elif on:
        unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        if on:
            unet.disable_gradient_checkpointing()


@contextlib.contextmanager
def _supervision(ctx: PhaseContext, on: bool) -> Iterator[LayerProbabilities | None]:
    """With `on` (`LearnConfig.attention_loss_weight` > 0), the learning stages' recording
    processors (`attention_supervision.recording_attention`, as `training.run_stage`
    installs them) for the block; each map they keep is counted as `attention`."""
    if not on:
        yield None
        return
    model = ctx.plan.model
    with recording_attention(model.unet, model.latent_size) as recorder:
        keep = recorder.add

        def add(name: str, probs: torch.Tensor) -> None:
            kept = len(recorder.probs)
            keep(name, probs)
            if len(recorder.probs) > kept:  # kept for the loss (and its backward)
                ctx.tracker.track(probs, "attention")

        recorder.add = add  # type: ignore[method-assign]
        try:
            yield recorder
        finally:
            del recorder.add  # the closure's cycle would keep the last maps to the next phase


def _supervision_loss(ctx: PhaseContext, recorder: LayerProbabilities) -> torch.Tensor:
    """`training.placeholder_attention_loss` of the last pass: every object's placeholder
    (positions 1..K) against full-cover masks (the values change no byte or FLOP)."""
    probs = recorder.probs
    batch, objects, side = probs[0].shape[0], ctx.objects, ctx.plan.model.latent_size
    device = probs[0].device
    covers = torch.ones(batch, objects, side, side, device=device)
    selection = torch.zeros(batch, objects, probs[0].shape[-1], device=device)
    selection[:, torch.arange(objects), torch.arange(1, objects + 1)] = 1.0
    loss, _ = mask_attention_loss(probs, covers, selection)
    return loss


def _prime(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> None:
    """Create the optimiser state, as it is during every step after the first."""
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _training_step(
    ctx: PhaseContext,
    name: str,
    params: list[torch.Tensor],
    lr: float,
    batch: int,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    supervise: float = 0.0,
    optimizer_kind: str = "adamw",
) -> PhaseCost:
    """One micro-batch and optimiser step; `supervise` > 0 adds the placeholder attention
    loss with that weight, its recording processors and the maps they keep.
    `optimizer_kind`: `LearnConfig.optimizer` (`planning.optimizers.planned_optimizer`)."""
    model = ctx.plan.model
    tracker = ctx.tracker
    scheduler = training_scheduler(model)
    generator = torch.Generator().manual_seed(0)
    with trainable(params), _supervision(ctx, supervise > 0) as recorder:
        optimizer = planned_optimizer(optimizer_kind, params, lr)
        _prime(optimizer, params)
        tracker.track_optimizer(optimizer)
        handles = tracker.watch_gradients(params)

        def step() -> None:
            z0 = torch.zeros(batch, *ctx.latent_shape, device=model.device)
            embeddings = ctx.plan.encode(batch)  # (B, L, D)
            z_t, t, target = noisy_batch(model, scheduler, z0, generator)
            if recorder is not None:
                recorder.reset()
            pred = model.unet(z_t, t, encoder_hidden_states=embeddings).sample
            loss = loss_of(pred, target)
            if recorder is not None:
                loss = loss + supervise * _supervision_loss(ctx, recorder)
            loss.backward()
            with tracker.as_category("optimizer"):
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        try:
            # On a real device torch.autocast is replayed by checkpoint itself.
            emulated = tracker.autocast_dtype if model.device.type == "meta" else None
            with _checkpointing(model.unet, ctx.low_memory, emulated):
                return measure(name, ctx, step, batch)
        finally:
            for handle in handles:
                handle.remove()


def _planned_rows(ctx: PhaseContext, count: int) -> TrainedRows:
    """`count` trained rows in every text encoder's table, as a learning stage holds them (the
    ids are placeholders: on `meta` their values change nothing, and the meta model has no
    tokenizer to add tokens to)."""
    embeddings = [enc.get_input_embeddings() for enc in ctx.plan.text_encoders]
    ids = [list(range(count)) for _ in embeddings]
    return TrainedRows.for_ids(embeddings, ids)


def textual_inversion_step(ctx: PhaseContext, cfg: LearnConfig) -> PhaseCost:
    """One micro-batch and optimiser step of masked textual inversion: the placeholder rows of
    every text encoder's table train, spliced into the lookup (`trained_rows.TrainedRows`);
    one per stage, every object's in joint mode."""
    rows = _planned_rows(ctx, ctx.objects if cfg.ti_joint else 1)
    batch = cfg.ti_batch_size
    device = ctx.plan.device
    mask = torch.ones(batch, 1, *ctx.latent_shape[1:], device=device)
    lr = scaled_lr(cfg.ti_lr, batch, cfg.gradient_accumulation, cfg.scale_lr)
    with rows.spliced():
        return _training_step(
            ctx,
            "textual-inversion",
            list(rows.params),
            lr,
            batch,
            lambda pred, target: masked_mse(pred, target, mask),
            cfg.attention_loss_weight,
        )


def finetune_step(ctx: PhaseContext, cfg: LearnConfig) -> PhaseCost:
    """One micro-batch and optimiser step of the K/V fine-tune and the extra tokens' rows (with
    prior preservation the batch is doubled, as `finetune.run_finetune` does)."""
    kv = kv_parameters(ctx.plan.model)
    extra = 2 + (ctx.objects if cfg.ft_train_tokens else 0)  # <new0>, <new1> (+ placeholders)
    rows = _planned_rows(ctx, extra)
    batch = cfg.ft_batch_size * (2 if cfg.prior_preservation else 1)
    lr = scaled_lr(cfg.ft_lr, cfg.ft_batch_size, cfg.gradient_accumulation, cfg.scale_lr)
    params: list[torch.Tensor] = [*(kv[n] for n in sorted(kv)), *rows.params]
    with rows.spliced():
        return _training_step(
            ctx,
            "fine-tune",
            params,
            lr,
            batch,
            lambda pred, target: ((pred.float() - target.float()) ** 2).mean(),
            cfg.attention_loss_weight,
            optimizer_kind=cfg.optimizer,  # textual inversion's is always AdamW
        )


def vae_encode(ctx: PhaseContext) -> PhaseCost:
    """Encoding the (square) source image once."""
    model = ctx.plan.model
    side = model.image_size

    def step() -> None:
        with torch.no_grad():
            image = torch.zeros(1, 3, side, side, device=model.device, dtype=model.vae.dtype)
            model.vae.encode(image).latent_dist.mean * model.scaling_factor

    return measure("vae-encode", ctx, step)


def vae_decode(ctx: PhaseContext) -> PhaseCost:
    """Decoding one seed's latent (the editor decodes seeds one at a time; in low memory a
    large one tile by tile, `editing.low_memory.vae_tiling`)."""
    model = ctx.plan.model

    def step() -> None:
        side = model.latent_size
        with torch.no_grad(), vae_tiling(model.vae, side, ctx.low_memory):
            z = torch.zeros(1, *ctx.latent_shape, device=model.device, dtype=model.vae.dtype)
            model.vae.decode(z / model.scaling_factor)

    return measure("vae-decode", ctx, step)


class _PlanGuide(AttentionGuide):
    """`AttentionGuide` whose loss avoids the data-dependent position check of
    `guidance.object_losses` (a `bool()` of a tensor, impossible on `meta`); same formula."""

    def losses(self, maps: torch.Tensor) -> torch.Tensor:
        text = text_attention(maps, self.last, self.softmax_scale)  # (res, res, last-1)
        index = torch.as_tensor([p - 1 for p in self.positions], device=maps.device)
        per_object = text[:, :, index].permute(2, 0, 1)  # (K, res, res)
        inside = (per_object * self.regions.to(per_object)).sum(dim=(1, 2))
        return 1.0 - inside / per_object.sum(dim=(1, 2))


@dataclass
class EditPhases:
    """The recorded-attention setup of an edit, shared by its phases."""

    store: AttentionStore
    res: int
    layers: tuple[str, ...]


def install_edit_attention(ctx: PhaseContext, backend: Any, cfg: EditConfig) -> EditPhases:
    """What `editing.EditSession` does: record the cross-attention layers at the attention
    grid, the backend's kernel elsewhere (on `meta`, fused kernels are modelled)."""
    unet = ctx.plan.model.unet
    latent = ctx.plan.model.latent_size
    sides = cross_attention_sides(unet, latent)
    res = choose_attention_res(sides, latent, cfg.attention_res)
    wanted = sorted(name for name, side in sides.items() if side == res)
    backend.install_attention(unet, wanted)
    if ctx.plan.device.type == "meta":
        use_fused_model(unet)
    store = AttentionStore(res)
    layers = tuple(store.attach(unet))
    tracker = ctx.tracker
    plain_add = store.add

    def add(name: str, probs: torch.Tensor) -> None:
        tracker.track(probs, "attention")  # kept by autograd for the guidance's backward
        plain_add(name, probs)

    store.add = add  # type: ignore[method-assign]
    return EditPhases(store, res, layers)


def _embeddings(ctx: PhaseContext) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        both = ctx.plan.encode(2).float()
    return both[:1], both[1:]


def guided_step(ctx: PhaseContext, edit: EditPhases, cfg: EditConfig) -> PhaseCost:
    """One attention-guidance gradient pass (`AttentionGuide.loss_and_grad`)."""
    model = ctx.plan.model
    sampler, _ = scheduler_pair(model.scheduler_config, cfg.steps)
    cond, _ = _embeddings(ctx)
    k = ctx.objects
    guide = _PlanGuide(
        store=edit.store,
        positions=list(range(1, k + 1)),
        regions=torch.zeros(k, edit.res, edit.res, device=model.device),
        last=k + 1,
        steps=cfg.steps,
        softmax_scale=cfg.softmax_scale,
    )
    runner = UNetRunner(model.unet, model.unet.dtype, contextlib.nullcontext, UNetCounter())

    def step() -> None:
        latents = torch.zeros(1, *ctx.latent_shape, device=model.device)
        guide.loss_and_grad(runner, latents, sampler.timesteps[0], cond, runner.counter)

    return measure("guided", ctx, step, check=False)


def unguided_step(ctx: PhaseContext, backend: Any, cfg: EditConfig) -> PhaseCost:
    """One classifier-free-guided prediction and DDIM step (`denoising.cfg_prediction`)."""
    model = ctx.plan.model
    sampler, _ = scheduler_pair(model.scheduler_config, cfg.steps)
    cond, uncond = _embeddings(ctx)
    runner = UNetRunner(model.unet, model.unet.dtype, contextlib.nullcontext, UNetCounter())
    t = sampler.timesteps[0]

    def step() -> None:
        with torch.no_grad():
            latents = torch.zeros(1, *ctx.latent_shape, device=model.device)
            guided, _ = cfg_prediction(
                runner, latents, t, cond, uncond, cfg.guidance_scale, batch=backend.batch_cfg
            )
            sampler.step(guided, int(t), latents, return_dict=False)

    batch = 2 if backend.batch_cfg and cfg.guidance_scale != 1.0 else 1
    return measure("unguided", ctx, step, batch)


def inversion_step(ctx: PhaseContext, cfg: EditConfig) -> PhaseCost:
    """One step of the source's DDIM inversion: a conditional prediction."""
    model = ctx.plan.model
    _, inverter = scheduler_pair(model.scheduler_config, cfg.steps)
    cond, _ = _embeddings(ctx)
    runner = UNetRunner(model.unet, model.unet.dtype, contextlib.nullcontext, UNetCounter())
    t = inverter.timesteps[0]

    def step() -> None:
        with torch.no_grad():
            latents = torch.zeros(1, *ctx.latent_shape, device=model.device)
            inverter.step(runner(latents, t, cond), int(t), latents, return_dict=False)

    return measure("inversion", ctx, step)


__all__ = [
    "CATEGORIES",
    "EditPhases",
    "PhaseContext",
    "PhaseCost",
    "finetune_step",
    "guided_step",
    "install_edit_attention",
    "inversion_step",
    "measure",
    "textual_inversion_step",
    "unguided_step",
    "vae_decode",
    "vae_encode",
]
