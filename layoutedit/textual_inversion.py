"""Stage 1 step 2: masked textual inversion of the scene's objects (method.md).

Only the placeholder rows of the text encoder's embedding table learn. For object k, a
sample's text is, at random, the scene prompt with only `w_k` replaced by `<w_k>` or
`a photo of a <w_k>`; the loss is the MSE between the UNet's prediction and its target over
the latent elements inside object k's mask only. After every optimiser step all other rows
of the table are restored.

Sequential mode (the published code) runs one stage per object; joint mode runs one stage
for all objects, each sample of a batch taking the next object in turn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from layoutedit.config import LearnConfig
from layoutedit.model_loading import LoadedModel
from layoutedit.prompts import scene_prompt
from layoutedit.tokens import embedding_table
from layoutedit.training import (
    Checkpoint,
    CheckpointDir,
    ProgressHook,
    RunTotals,
    adam_state,
    generator_state,
    make_accelerator,
    masked_mse,
    noisy_batch,
    restore_rows,
    scaled_lr,
    set_adam_state,
    trainable,
    training_scheduler,
)


@dataclass
class LearnData:
    """What both stages learn from, prepared once per scene.

    Attributes:
        z0: (1, C, h, w) scaled latent of the (square-padded) scene image.
        masks: (K, 1, h, w) 0/1 float object masks on the latent grid.
        names: object names, e.g. ("red circle", ...).
        tokens: placeholders in object order, e.g. ("<red_circle>", ...).
        token_ids: placeholder -> tokenizer id.
        template: the scene prompt template (with `{objects}`).
    """

    z0: torch.Tensor
    masks: torch.Tensor
    names: tuple[str, ...]
    tokens: tuple[str, ...]
    token_ids: dict[str, int]
    template: str

    def object_prompts(self, k: int, single_template: str) -> tuple[str, str]:
        """The two texts of object k: scene prompt with only `<w_k>`, and the single one."""
        words = [
            t if j == k else n for j, (n, t) in enumerate(zip(self.names, self.tokens, strict=True))
        ]
        return (
            scene_prompt(self.template, words),
            single_template.format(token=self.tokens[k]),
        )


def stage_seed(seed: int, stage: str) -> int:
    """A stable per-stage seed, so each stage's draws do not depend on earlier stages."""
    return (seed * 1_000_003 + sum(ord(c) * 31**i for i, c in enumerate(stage))) % (2**63)


def run_textual_inversion(
    model: LoadedModel,
    data: LearnData,
    cfg: LearnConfig,
    object_ids: Sequence[int],
    stage: str,
    ckpts: CheckpointDir,
    totals: RunTotals,
    progress: ProgressHook,
) -> None:
    """Train the placeholder rows of `object_ids` (in place in `model`'s text encoder).

    Args:
        model: the base model with the placeholders already added.
        data: the scene's latent, masks and tokens.
        cfg: learning settings (ti_steps, ti_batch_size, ti_lr, gradient_accumulation, ...).
        object_ids: objects this stage trains (one in sequential mode, all in joint mode).
        stage: checkpoint name of the stage, e.g. "ti-0" or "ti".
        ckpts: where the stage's checkpoints go (resumed from when present).
        totals: UNet evaluations and seconds, updated in place.
        progress: receives the stage start and each step's loss.
    """
    table = embedding_table(model).weight  # (V, D)
    keep = [data.token_ids[data.tokens[k]] for k in object_ids]
    original = table.detach().clone()  # rows as they are now; everything but `keep` stays
    batch, accum = cfg.ti_batch_size, cfg.gradient_accumulation
    steps = cfg.ti_steps
    generator = torch.Generator().manual_seed(stage_seed(cfg.seed, stage))
    optimizer = torch.optim.AdamW([table], lr=scaled_lr(cfg.ti_lr, batch, accum, cfg.scale_lr))
    start = 0
    resumed = ckpts.load(stage)
    if resumed is not None:
        start = _restore(resumed, table, keep, optimizer, generator, totals)
    progress.stage(f"textual inversion {stage}", steps, start)
    if start >= steps:
        return
    accelerator = make_accelerator(cfg.mixed_precision, accum, table.device)
    prepared = accelerator.prepare(optimizer)
    scheduler = training_scheduler(model)
    prompts = [data.object_prompts(k, cfg.ti_single_template) for k in range(len(data.names))]
    began = time.perf_counter()
    with trainable([table]):
        for step in range(start, steps):
            losses = []
            for micro in range(accum):
                first = (step * accum + micro) * batch
                ks = [object_ids[(first + i) % len(object_ids)] for i in range(batch)]
                which = torch.randint(0, 2, (batch,), generator=generator).tolist()
                texts = [prompts[k][w] for k, w in zip(ks, which, strict=True)]
                with accelerator.accumulate(model.text_encoder):
                    z0 = data.z0.expand(batch, -1, -1, -1)
                    z_t, t, target = noisy_batch(model, scheduler, z0, generator)
                    with accelerator.autocast():
                        embeddings = model.encode_prompts(texts)  # (B, L, D)
                        pred = model.unet(z_t, t, encoder_hidden_states=embeddings).sample
                    loss = masked_mse(pred, target, data.masks[ks])
                    accelerator.backward(loss)
                    prepared.step()
                    prepared.zero_grad()
                totals.counter.add(forward=batch, backward=batch)
                losses.append(float(loss.detach()))
            restore_rows(table, original, keep)
            progress.step(sum(losses) / len(losses))
            done = step + 1
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < steps:
                _add_seconds(totals, "textual_inversion", began)
                began = time.perf_counter()
                ckpts.save(_checkpoint(stage, done, table, keep, optimizer, generator, totals))
    _add_seconds(totals, "textual_inversion", began)
    ckpts.save(_checkpoint(stage, steps, table, keep, optimizer, generator, totals))


def _add_seconds(totals: RunTotals, key: str, since: float) -> None:
    totals.seconds[key] = totals.seconds.get(key, 0.0) + time.perf_counter() - since


def _checkpoint(
    stage: str,
    step: int,
    table: torch.Tensor,
    keep: list[int],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    totals: RunTotals,
) -> Checkpoint:
    # Only the trained rows matter (all others are restored), so only they are saved,
    # with their optimiser moments: a small file even for a 49k-token vocabulary.
    idx = torch.tensor(keep, device=table.device)
    tensors = {"rows": table.detach()[idx], "rng": generator_state(generator)}
    for key, value in adam_state(optimizer, table).items():
        tensors[f"adam.{key}"] = value if key == "step" else value[idx]
    copy = RunTotals.from_dict(totals.as_dict())
    return Checkpoint(stage, step, tensors, copy, {"ids": keep})


def _restore(
    ckpt: Checkpoint,
    table: torch.Tensor,
    keep: list[int],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    totals: RunTotals,
) -> int:
    if ckpt.extra.get("ids") != keep:
        return 0  # another vocabulary layout: start the stage again
    idx = torch.tensor(keep, device=table.device)
    with torch.no_grad():
        table[idx] = ckpt.tensors["rows"].to(table.device, table.dtype)
    moments = {}
    for key in ("exp_avg", "exp_avg_sq"):
        if f"adam.{key}" in ckpt.tensors:
            full = torch.zeros_like(table)
            full[idx] = ckpt.tensors[f"adam.{key}"].to(table.device, table.dtype)
            moments[key] = full
    if moments and "adam.step" in ckpt.tensors:
        set_adam_state(optimizer, table, {**moments, "step": ckpt.tensors["adam.step"]})
    generator.set_state(ckpt.tensors["rng"])
    totals.counter = ckpt.totals.counter
    totals.seconds = ckpt.totals.seconds
    return ckpt.step
