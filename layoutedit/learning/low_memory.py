"""The `low_memory` setting of learning (`LearnConfig.low_memory`), also applied by the
planner (`layoutedit plan --low-memory`) to its `meta` model:

- gradient checkpointing in the UNet: its blocks keep only their inputs for backward and
  recompute the rest (about a third more compute, most activations gone);
- on CUDA with `mixed_precision` fp16/bf16, the frozen weights are *stored* in that dtype as
  well (autocast casts them to it anyway), while the trained parameters (the text encoder's
  embedding tables, attn2 to_k/to_v) stay fp32 for the optimiser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from layoutedit.learning.finetune import kv_parameters
from layoutedit.learning.tokens import embedding_tables

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
    """What learning trains: every text encoder's embedding table and every attn2
    to_k/to_v parameter."""
    tables = [table.weight for table in embedding_tables(model)]
    return [*tables, *kv_parameters(model).values()]


def store_frozen(model: LoadedModel, dtype: torch.dtype) -> None:
    """Cast every weight to `dtype`, then the trained parameters back to fp32 (in place)."""
    for module in model.modules:
        module.to(dtype=dtype)
    for param in trained_parameters(model):
        param.data = param.data.float()


def prepare_learning(model: LoadedModel, cfg: LearnConfig) -> None:
    """Apply `cfg.low_memory` to a model about to learn (no-op when it is off)."""
    if not cfg.low_memory:
        return
    model.unet.enable_gradient_checkpointing()
    dtype = frozen_dtype(cfg)
    # CUDA only: CPU autocast leaves layer norms in the input's dtype, so an fp32 embedding
    # row would meet fp16 norm weights in the text encoder.
    if dtype is not None and model.device.type == "cuda":
        store_frozen(model, dtype)


def learn_overrides(backend_name: str) -> dict[str, Any]:
    """The `[learn]` settings `learn --low-memory` sets on backend `backend_name` (or `auto`):
    low_memory, and fp16 mixed precision where the backend computes in fp16 (CUDA)."""
    from layoutedit.backend import get_backend

    overrides: dict[str, Any] = {"low_memory": True}
    if get_backend(backend_name).dtype == torch.float16:
        overrides["mixed_precision"] = "fp16"
    return overrides
