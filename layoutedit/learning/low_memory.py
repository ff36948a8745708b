"""The `low_memory` setting of learning (`LearnConfig.low_memory`), also applied by the
planner (`layoutedit plan --low-memory`) to its `meta` model:

- gradient checkpointing in the UNet: its blocks keep only their inputs for backward and
  recompute the rest (about a third more compute, most activations gone);
- with `mixed_precision` fp16/bf16, the frozen weights are *stored* in that dtype as well
  (autocast casts them to it anyway), the embedding tables included (they are frozen: the
  learned rows train as fp32 `TrainedRows` parameters), while attn2 to_k/to_v stay fp32 for
  the optimiser. `layoutedit.precision` runs every forward pass of such a model (inputs
  cast to the stored dtype, autocast), on CUDA and on the CPU alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from layoutedit.learning.finetune import kv_parameters

if TYPE_CHECKING:
    from layoutedit.config import LearnConfig
    from layoutedit.loading.model_loading import LoadedModel

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def frozen_dtype(cfg: LearnConfig) -> torch.dtype | None:
    """Dtype the frozen weights are stored in while learning; None keeps them as loaded."""
    if not cfg.low_memory or cfg.mixed_precision == "no":
        return None
    return _DTYPES[cfg.mixed_precision]


def trained_parameters(model: LoadedModel) -> list[torch.Tensor]:
    """What learning trains in place: every attn2 to_k/to_v parameter (the embedding rows
    train as separate `TrainedRows` parameters, always fp32)."""
    return list(kv_parameters(model).values())


def store_frozen(model: LoadedModel, dtype: torch.dtype) -> None:
    """Cast the UNet's and text encoders' weights to `dtype`, then the trained parameters
    back to fp32 (in place). The VAE follows its `force_upcast` (`layoutedit.precision`)."""
    from layoutedit.precision import cast_weights, force_upcast

    for module in (model.unet, *model.text_encoders):
        cast_weights(module, dtype)
    if not force_upcast(model.vae):
        cast_weights(model.vae, dtype)
    for param in trained_parameters(model):
        param.data = param.data.float()


def prepare_learning(model: LoadedModel, cfg: LearnConfig) -> None:
    """Apply `cfg.low_memory` to a model about to learn (no-op when it is off)."""
    if not cfg.low_memory:
        return
    model.unet.enable_gradient_checkpointing()
    dtype = frozen_dtype(cfg)
    if dtype is not None:
        store_frozen(model, dtype)


def learn_overrides(backend_name: str) -> dict[str, Any]:
    """The `[learn]` settings `learn --low-memory` sets on backend `backend_name` (or `auto`):
    low_memory, and where the backend computes in fp16 (CUDA) fp16 mixed precision and,
    when bitsandbytes is installed, the fine-tune's Adam moments in 8 bits (`adamw8bit`:
    SDXL's K/V moments are 2.5 GiB in fp32, 0.6 GiB in 8 bits)."""
    from layoutedit.backend import get_backend

    overrides: dict[str, Any] = {"low_memory": True}
    if get_backend(backend_name).dtype == torch.float16:
        overrides["mixed_precision"] = "fp16"
        if eight_bit_available():
            overrides["optimizer"] = "adamw8bit"
    return overrides


def eight_bit_available() -> bool:
    """Whether bitsandbytes (`learn.optimizer = "adamw8bit"`) can be imported."""
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None
