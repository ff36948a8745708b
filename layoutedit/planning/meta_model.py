"""Build a model's components from their configs on the `meta` device (no memory, no data).

The result is a `LoadedModel` like the one `model_loading.load_model` returns, so the
method's own functions (`training.noisy_batch`, `finetune.kv_parameters`,
`tokens.embedding_table`, `denoising.UNetRunner`, `sampling.AttentionGuide`, ...) run on it
unchanged. It has no tokenizer: the planner feeds token ids directly (`PlanModel.encode`).
SDXL's UNet also needs pooled text embeddings and time ids; a forward pre-hook supplies
them, so callers use the SD 1.x call signature.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from layoutedit.loading.model_loading import LoadedModel
from layoutedit.planning.archs import ArchSpec


def _clean(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def _text_encoder(config: dict[str, Any]) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = (
        CLIPTextModelWithProjection
        if config.get("_class") == "CLIPTextModelWithProjection"
        or "CLIPTextModelWithProjection" in config.get("architectures", [])
        else CLIPTextModel
    )
    allowed = {k: v for k, v in _clean(config).items() if k not in ("architectures", "dtype")}
    return cls(CLIPTextConfig(**allowed))


@dataclass
class PlanModel:
    """A model to plan or measure: the `LoadedModel` plus every text encoder.

    Attributes:
        model: components as the method sees them (`text_encoder` is the first encoder).
        text_encoders: all text encoders (two for SDXL).
        family: `sd1`, `sd2` or `sdxl`.
    """

    model: LoadedModel
    text_encoders: list[Any]
    family: str
    hooks: list[Any] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.model.device

    def token_ids(self, batch: int) -> torch.Tensor:
        """(B, L) int64 token ids (their values do not change memory or FLOPs)."""
        return torch.zeros(batch, self.model.max_length, dtype=torch.long, device=self.device)

    def encode(self, batch: int) -> torch.Tensor:
        """(B, L, D) text embeddings, as the UNet reads them (SDXL: both encoders' penultimate
        hidden states concatenated)."""
        ids = self.token_ids(batch)
        if len(self.text_encoders) == 1:
            return self.text_encoders[0](ids)[0]
        states = [
            enc(ids, output_hidden_states=True).hidden_states[-2] for enc in self.text_encoders
        ]
        return torch.cat(states, dim=-1)

    def embedding_tables(self) -> list[torch.nn.Parameter]:
        """The input embedding weight of every text encoder (what textual inversion trains)."""
        return [enc.get_input_embeddings().weight for enc in self.text_encoders]


def _sdxl_conditioning(unet: Any, text_width: int) -> Any:
    """A forward pre-hook giving SDXL's UNet its pooled text embedding and time ids."""

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs.get("added_cond_kwargs") is not None:
            return None
        sample = args[0] if args else kwargs["sample"]
        batch = sample.shape[0]
        extra = {
            "text_embeds": torch.zeros(batch, text_width, device=sample.device, dtype=sample.dtype),
            "time_ids": torch.zeros(batch, 6, device=sample.device, dtype=sample.dtype),
        }
        return args, {**kwargs, "added_cond_kwargs": extra}

    return unet.register_forward_pre_hook(hook, with_kwargs=True)


def build_plan_model(
    arch: ArchSpec, *, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32
) -> PlanModel:
    """Components of `arch` with random (or, on `meta`, no) weights.

    Args:
        arch: the configs.
        device: `meta` to plan; `cpu`/`cuda` for a real random-weight model (gpu_check).
        dtype: weight dtype.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with quiet_diffusers():
        return _build(arch, device, dtype, UNet2DConditionModel, AutoencoderKL)


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """diffusers' warnings off for the block: `.to(dtype)` on a model built from a config
    warns about fp32 modules it has none of."""
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)


def _build(
    arch: ArchSpec, device: str | torch.device, dtype: torch.dtype, unet_cls: Any, vae_cls: Any
) -> PlanModel:
    with torch.device(device):
        unet = unet_cls.from_config(_clean(arch.unet))
        vae = vae_cls.from_config(_clean(arch.vae))
        encoders = [_text_encoder(cfg) for cfg in arch.text_encoders]
    modules: list[Any] = [unet, vae, *encoders]
    for module in modules:
        module.to(dtype=dtype)
        module.requires_grad_(False)
        module.eval()
    model = LoadedModel(
        spec=arch.name,
        path=Path(arch.name),
        tokenizer=None,
        text_encoder=encoders[0],
        vae=vae,
        unet=unet,
        scheduler_config=dict(arch.scheduler),
        fingerprint="plan",
        # SDXL's second encoder belongs to the model as a loaded one's does, so that what
        # acts on `model.text_encoders` (the low-memory cast to fp16) reaches it too.
        text_encoder_2=encoders[1] if len(encoders) > 1 else None,
    )
    plan = PlanModel(model=model, text_encoders=encoders, family=arch.family)
    if arch.family == "sdxl":
        pooled = int(arch.text_encoders[-1].get("projection_dim", 1280))
        plan.hooks.append(_sdxl_conditioning(unet, pooled))
    return plan


def from_loaded(model: LoadedModel) -> PlanModel:
    """A `PlanModel` over a model loaded from disk (measuring a real run the planner's way)."""
    plan = PlanModel(model=model, text_encoders=list(model.text_encoders), family=model.family)
    if plan.family == "sdxl":  # the planner's calls pass embeddings only, as on the meta model
        pooled = int(model.text_encoder_2.config.projection_dim)
        plan.hooks.append(_sdxl_conditioning(model.unet, pooled))
    return plan
