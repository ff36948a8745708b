"""Stage 1 step 2: masked textual inversion of the scene's objects (method.md).

Only the placeholder rows of the text encoder's embedding table learn (of both tables on
SDXL, which has two text encoders). For object k, a
sample's text is, at random, the scene prompt with only `w_k` replaced by `<w_k>` or
`a photo of a <w_k>`; the loss is the MSE between the UNet's prediction and its target over
the latent elements inside object k's mask only. The optimiser holds only the placeholder
rows (`trained_rows.TrainedRows`, spliced into the embedding lookup); the tables stay frozen.

Sequential mode (the published code) runs one stage per object; joint mode runs one stage
for all objects, each sample of a batch taking the next object in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from layoutedit.config import LearnConfig
from layoutedit.learning.checkpoints import (
    Checkpoint,
    CheckpointDir,
    RunTotals,
    resume_from,
    stage_checkpoint,
)
from layoutedit.learning.trained_rows import TrainedRows
from layoutedit.learning.training import (
    Predictor,
    ProgressHook,
    StageSpec,
    masked_mse,
    placeholder_attention_loss,
    run_stage,
    scaled_lr,
    shifted_batch,
)
from layoutedit.loading.model_loading import LoadedModel
from layoutedit.precision import learn_precision
from layoutedit.scenes.prompts import scene_prompt, token_positions

_ADAM = "adam."  # checkpoint name prefix of the placeholder rows' optimiser moments


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
    """Train the placeholder rows of `object_ids` (in place in `model`'s text encoders).

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
    # Only the placeholders of `object_ids` learn: (n, D) rows per table, not the tables.
    rows = TrainedRows.of(model, [data.tokens[k] for k in object_ids])
    keep = rows.ids[0]
    batch, accum = cfg.ti_batch_size, cfg.gradient_accumulation
    generator = torch.Generator().manual_seed(stage_seed(cfg.seed, stage))
    lr = scaled_lr(cfg.ti_lr, batch, accum, cfg.scale_lr)
    optimizer = torch.optim.AdamW(rows.params, lr=lr)
    start = 0
    resumed = ckpts.load(stage)
    if resumed is not None and resumed.extra.get("ids") == keep and rows.fits(resumed.tensors):
        rows.load_state(resumed.tensors, optimizer, _ADAM)
        start = resume_from(resumed, generator, totals)
    # else: nothing saved, or another vocabulary layout: start the stage again
    prompts = [data.object_prompts(k, cfg.ti_single_template) for k in range(len(data.names))]
    # position of object k's placeholder in each of its two texts
    where = [
        [token_positions(model.tokenizer, text, [data.tokens[k]])[data.tokens[k]] for text in pair]
        for k, pair in enumerate(prompts)
    ]
    supervise = cfg.attention_loss_weight > 0

    def micro_batch(index: int, predict: Predictor) -> tuple[torch.Tensor, int]:
        first = index * batch
        ks = [object_ids[(first + i) % len(object_ids)] for i in range(batch)]
        which = torch.randint(0, 2, (batch,), generator=generator).tolist()
        texts = [prompts[k][w] for k, w in zip(ks, which, strict=True)]
        scene = data.z0.expand(batch, -1, -1, -1)
        shifted = shifted_batch(scene, data.masks[ks], cfg.augment_shift, generator)
        pred, target = predict(shifted.z0, texts, generator)
        loss = masked_mse(pred, target, shifted.masks)  # (batch, 1, h, w): object k's mask
        if supervise:
            positions = [[where[k][w]] for k, w in zip(ks, which, strict=True)]
            attention = placeholder_attention_loss(predict, shifted.masks, positions)
            loss = loss + cfg.attention_loss_weight * attention
        return loss, batch

    def checkpoint(step: int) -> Checkpoint:
        tensors = rows.state(optimizer, _ADAM)
        return stage_checkpoint(stage, step, tensors, keep, generator, totals)

    spec = StageSpec(
        label=f"textual inversion {stage}",
        seconds_key="textual_inversion",
        steps=cfg.ti_steps,
        accumulation=accum,
        checkpoint_every=cfg.checkpoint_every,
        precision=learn_precision(cfg, model.device),
        record_attention=supervise,
    )
    with rows.spliced():
        run_stage(
            model,
            spec,
            optimizer=optimizer,
            params=rows.params,
            start=start,
            micro_batch=micro_batch,
            after_step=rows.write_back,
            checkpoint=checkpoint,
            ckpts=ckpts,
            totals=totals,
            progress=progress,
        )
