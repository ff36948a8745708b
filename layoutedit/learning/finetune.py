"""Stage 1 step 3: fine-tune the cross-attention keys/values and two extra tokens (method.md).

Trained together: `attn2.to_k` and `attn2.to_v` of every cross-attention layer of the UNet,
and the embedding rows of `<new0>` `<new1>` (in every text encoder's table), which are
appended to the prompt in which every object is its placeholder. Loss: plain MSE over the
whole latent; with prior preservation, plus `prior_weight` x the same loss on regularisation
latents with their own captions (the batch is doubled: one UNet call on instance + prior
samples).
"""

from __future__ import annotations

import torch

from layoutedit.config import LearnConfig
from layoutedit.learning.checkpoints import (
    Checkpoint,
    CheckpointDir,
    RunTotals,
    adam_state,
    resume_from,
    set_adam_state,
    stage_checkpoint,
)
from layoutedit.learning.prior import PriorSet
from layoutedit.learning.textual_inversion import LearnData, stage_seed
from layoutedit.learning.trained_rows import TrainedRows
from layoutedit.learning.training import (
    Predictor,
    ProgressHook,
    StageSpec,
    make_optimizer,
    masked_mse,
    placeholder_attention_loss,
    run_stage,
    scaled_lr,
    shifted_batch,
)
from layoutedit.loading.model_loading import LoadedModel
from layoutedit.precision import learn_precision
from layoutedit.scenes.prompts import token_positions

STAGE = "ft"
_ADAM_TABLE = "adam.table."  # checkpoint name prefix of the extra-token rows' moments


def kv_parameters(model: LoadedModel) -> dict[str, torch.nn.Parameter]:
    """UNet state-dict key -> parameter of every `attn2.to_k` / `attn2.to_v` weight (and bias)."""
    return {
        name: param
        for name, param in model.unet.named_parameters()
        if ".attn2.to_k." in name or ".attn2.to_v." in name
    }


def run_finetune(
    model: LoadedModel,
    data: LearnData,
    cfg: LearnConfig,
    prompt: str,
    extra_ids: list[int],
    prior: PriorSet | None,
    ckpts: CheckpointDir,
    totals: RunTotals,
    progress: ProgressHook,
) -> None:
    """Fine-tune K/V weights and the extra-token rows in place.

    Args:
        model: model with all placeholders (learned) and the extra tokens added.
        data: the scene's latent.
        cfg: learning settings (ft_steps, ft_batch_size, ft_lr, prior_weight, ...).
        prompt: scene prompt with every placeholder and the extra tokens.
        extra_ids: first-tokenizer ids of `<new0>`, `<new1>` (the only embedding rows that
            change, in every text encoder's table).
        prior: regularisation latents and captions, or None without prior preservation.
        ckpts, totals, progress: as in `run_textual_inversion`.
    """
    kv = kv_parameters(model)
    kv_names = sorted(kv)
    # Rows that learn here: the extra tokens, and with ft_train_tokens the placeholders too.
    extra_tokens = list(model.tokenizer.convert_ids_to_tokens(extra_ids))
    rows = TrainedRows.of(model, extra_tokens + (list(data.tokens) if cfg.ft_train_tokens else []))
    row_ids = rows.ids[0]
    supervise = cfg.attention_loss_weight > 0
    found = token_positions(model.tokenizer, prompt, data.tokens)
    positions = [[found[t] for t in data.tokens]] * cfg.ft_batch_size
    params: list[torch.Tensor] = [kv[n] for n in kv_names]
    batch, accum = cfg.ft_batch_size, cfg.gradient_accumulation
    generator = torch.Generator().manual_seed(stage_seed(cfg.seed, STAGE))
    lr = scaled_lr(cfg.ft_lr, batch, accum, cfg.scale_lr)
    optimizer = make_optimizer(cfg.optimizer, [*params, *rows.params], lr, model.device)
    start = 0
    resumed = ckpts.load(STAGE)
    if resumed is not None and _fits(resumed, kv, row_ids) and rows.fits(resumed.tensors):
        _load_kv(resumed, kv, rows, optimizer)
        start = resume_from(resumed, generator, totals)

    def micro_batch(index: int, predict: Predictor) -> tuple[torch.Tensor, int]:
        masks = data.masks[:, 0].expand(batch, -1, -1, -1)  # (batch, K, h, w)
        scene = data.z0.expand(batch, -1, -1, -1)
        shifted = shifted_batch(scene, masks, cfg.augment_shift, generator)
        z0 = shifted.z0
        texts = [prompt] * batch
        if prior is not None:
            picks = [(index * batch + i) % len(prior.captions) for i in range(batch)]
            z0 = torch.cat([z0, prior.latents[picks].to(z0.device, z0.dtype)])
            texts += [prior.captions[i] for i in picks]
        pred, target = predict(z0, texts, generator)  # batch instance (+ batch prior) samples
        err = (pred.float() - target.float()) ** 2
        if cfg.augment_shift > 0:  # what was shifted in from outside the scene is not learned
            loss = masked_mse(pred[:batch], target[:batch], shifted.valid)
        else:
            loss = err[:batch].mean()
        if supervise:
            attention = placeholder_attention_loss(predict, shifted.masks, positions)
            loss = loss + cfg.attention_loss_weight * attention
        if prior is not None:
            loss = loss + cfg.prior_weight * err[batch:].mean()
        return loss, len(texts)

    def checkpoint(step: int) -> Checkpoint:
        tensors = rows.state(optimizer, _ADAM_TABLE)
        for name, param in kv.items():
            tensors[f"kv.{name}"] = param.detach()
            for key, value in adam_state(optimizer, param).items():
                tensors[f"adam.{name}.{key}"] = value
        return stage_checkpoint(STAGE, step, tensors, row_ids, generator, totals)

    spec = StageSpec(
        label="fine-tune",
        seconds_key="finetune",
        steps=cfg.ft_steps,
        accumulation=accum,
        checkpoint_every=cfg.checkpoint_every,
        precision=learn_precision(cfg, model.device),
        record_attention=supervise,
    )
    with rows.spliced():  # the extra rows learn as (n, D) parameters, the tables stay frozen
        run_stage(
            model,
            spec,
            optimizer=optimizer,
            params=[*params, *rows.params],
            start=start,
            micro_batch=micro_batch,
            after_step=rows.write_back,
            checkpoint=checkpoint,
            ckpts=ckpts,
            totals=totals,
            progress=progress,
        )


def _fits(ckpt: Checkpoint, kv: dict[str, torch.nn.Parameter], extra_ids: list[int]) -> bool:
    """Whether a checkpoint is of this vocabulary layout and this UNet's K/V weights."""
    return ckpt.extra.get("ids") == extra_ids and all(f"kv.{n}" in ckpt.tensors for n in kv)


def _load_kv(
    ckpt: Checkpoint,
    kv: dict[str, torch.nn.Parameter],
    rows: TrainedRows,
    optimizer: torch.optim.Optimizer,
) -> None:
    rows.load_state(ckpt.tensors, optimizer, _ADAM_TABLE)
    with torch.no_grad():
        for name, param in kv.items():
            param.copy_(ckpt.tensors[f"kv.{name}"])
    for name, param in kv.items():
        state = {
            k: ckpt.tensors[f"adam.{name}.{k}"]
            for k in ("step", "exp_avg", "exp_avg_sq")
            if f"adam.{name}.{k}" in ckpt.tensors
        }
        set_adam_state(optimizer, param, state)
