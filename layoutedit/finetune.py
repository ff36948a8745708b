"""Stage 1 step 3: fine-tune the cross-attention keys/values and two extra tokens (method.md).

Trained together: `attn2.to_k` and `attn2.to_v` of every cross-attention layer of the UNet,
and the embedding rows of `<new0>` `<new1>`, which are appended to the prompt in which every
object is its placeholder. Loss: plain MSE over the whole latent; with prior preservation,
plus `prior_weight` x the same loss on regularisation latents with their own captions (the
batch is doubled: one UNet call on instance + prior samples).
"""

from __future__ import annotations

import time

import torch

from layoutedit.config import LearnConfig
from layoutedit.model_loading import LoadedModel
from layoutedit.prior import PriorSet
from layoutedit.textual_inversion import LearnData, stage_seed
from layoutedit.tokens import embedding_table
from layoutedit.training import (
    Checkpoint,
    CheckpointDir,
    ProgressHook,
    RunTotals,
    adam_state,
    generator_state,
    make_accelerator,
    noisy_batch,
    restore_rows,
    scaled_lr,
    set_adam_state,
    trainable,
    training_scheduler,
)

STAGE = "ft"


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
        extra_ids: token ids of `<new0>`, `<new1>` (the only embedding rows that change).
        prior: regularisation latents and captions, or None without prior preservation.
        ckpts, totals, progress: as in `run_textual_inversion`.
    """
    kv = kv_parameters(model)
    kv_names = sorted(kv)
    table = embedding_table(model).weight
    original = table.detach().clone()
    params: list[torch.Tensor] = [kv[n] for n in kv_names]
    batch, accum, steps = cfg.ft_batch_size, cfg.gradient_accumulation, cfg.ft_steps
    generator = torch.Generator().manual_seed(stage_seed(cfg.seed, STAGE))
    optimizer = torch.optim.AdamW(
        [*params, table], lr=scaled_lr(cfg.ft_lr, batch, accum, cfg.scale_lr)
    )
    start = 0
    resumed = ckpts.load(STAGE)
    if resumed is not None:
        start = _restore(resumed, kv, table, extra_ids, optimizer, generator, totals)
    progress.stage("fine-tune", steps, start)
    if start >= steps:
        return
    accelerator = make_accelerator(cfg.mixed_precision, accum, table.device)
    prepared = accelerator.prepare(optimizer)
    scheduler = training_scheduler(model)
    began = time.perf_counter()
    with trainable([*params, table]):
        for step in range(start, steps):
            losses = []
            for micro in range(accum):
                z0 = data.z0.expand(batch, -1, -1, -1)
                texts = [prompt] * batch
                if prior is not None:
                    first = (step * accum + micro) * batch
                    picks = [(first + i) % len(prior.captions) for i in range(batch)]
                    z0 = torch.cat([z0, prior.latents[picks].to(z0.device, z0.dtype)])
                    texts += [prior.captions[i] for i in picks]
                with accelerator.accumulate(model.unet):
                    z_t, t, target = noisy_batch(model, scheduler, z0, generator)
                    with accelerator.autocast():
                        embeddings = model.encode_prompts(texts)  # (B or 2B, L, D)
                        pred = model.unet(z_t, t, encoder_hidden_states=embeddings).sample
                    err = (pred.float() - target.float()) ** 2
                    loss = err[:batch].mean()
                    if prior is not None:
                        loss = loss + cfg.prior_weight * err[batch:].mean()
                    accelerator.backward(loss)
                    prepared.step()
                    prepared.zero_grad()
                totals.counter.add(forward=len(texts), backward=len(texts))
                losses.append(float(loss.detach()))
            restore_rows(table, original, extra_ids)
            progress.step(sum(losses) / len(losses))
            done = step + 1
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < steps:
                totals.seconds["finetune"] = (
                    totals.seconds.get("finetune", 0.0) + time.perf_counter() - began
                )
                began = time.perf_counter()
                ckpts.save(_checkpoint(done, kv, table, extra_ids, optimizer, generator, totals))
    totals.seconds["finetune"] = totals.seconds.get("finetune", 0.0) + time.perf_counter() - began
    ckpts.save(_checkpoint(steps, kv, table, extra_ids, optimizer, generator, totals))


def _checkpoint(
    step: int,
    kv: dict[str, torch.nn.Parameter],
    table: torch.Tensor,
    extra_ids: list[int],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    totals: RunTotals,
) -> Checkpoint:
    idx = torch.tensor(extra_ids, device=table.device)
    tensors: dict[str, torch.Tensor] = {
        "rows": table.detach()[idx],
        "rng": generator_state(generator),
    }
    for name, param in kv.items():
        tensors[f"kv.{name}"] = param.detach()
        for key, value in adam_state(optimizer, param).items():
            tensors[f"adam.{name}.{key}"] = value
    for key, value in adam_state(optimizer, table).items():
        tensors[f"adam.table.{key}"] = value if key == "step" else value[idx]
    copy = RunTotals.from_dict(totals.as_dict())
    return Checkpoint(STAGE, step, tensors, copy, {"ids": extra_ids})


def _restore(
    ckpt: Checkpoint,
    kv: dict[str, torch.nn.Parameter],
    table: torch.Tensor,
    extra_ids: list[int],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    totals: RunTotals,
) -> int:
    if ckpt.extra.get("ids") != extra_ids or any(f"kv.{n}" not in ckpt.tensors for n in kv):
        return 0
    idx = torch.tensor(extra_ids, device=table.device)
    with torch.no_grad():
        table[idx] = ckpt.tensors["rows"].to(table.device, table.dtype)
        for name, param in kv.items():
            param.copy_(ckpt.tensors[f"kv.{name}"])
    for name, param in kv.items():
        state = {
            k: ckpt.tensors[f"adam.{name}.{k}"]
            for k in ("step", "exp_avg", "exp_avg_sq")
            if f"adam.{name}.{k}" in ckpt.tensors
        }
        set_adam_state(optimizer, param, state)
    if "adam.table.exp_avg" in ckpt.tensors:
        moments: dict[str, torch.Tensor] = {"step": ckpt.tensors["adam.table.step"]}
        for key in ("exp_avg", "exp_avg_sq"):
            full = torch.zeros_like(table)
            full[idx] = ckpt.tensors[f"adam.table.{key}"].to(table.device, table.dtype)
            moments[key] = full
        set_adam_state(optimizer, table, moments)
    generator.set_state(ckpt.tensors["rng"])
    totals.counter = ckpt.totals.counter
    totals.seconds = ckpt.totals.seconds
    return ckpt.step
