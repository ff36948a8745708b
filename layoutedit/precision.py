"""The one place that decides, per phase, the dtype weights are stored in and the autocast
every forward pass runs under.

A phase is learning (the training steps, the prior it generates, the concept check after
it) or editing (inversion, guidance, sampling); the VAE's encode and decode belong to
whichever phase calls them. Each gets a `Precision`:

- learning: `LearnConfig.mixed_precision` `no` keeps fp32 weights and no autocast;
  `fp16`/`bf16` autocasts to that dtype, and with `low_memory` the frozen weights are
  stored in it as well (the trained parameters, the learned embedding rows and attn2
  K/V, stay fp32 for the optimiser). The concept check after learning runs as learning ran.
- the prior (sampling from the base model while learning) stores weights as learning
  does and autocasts to the backend's half dtype when it has one.
- editing: the backend's dtype (`Backend.dtype`) for the weights, autocast to it when it is
  a half dtype.
- the VAE: the phase's weight dtype, except fp32 whenever the VAE's config says
  `force_upcast` (SDXL's VAE overflows in fp16; diffusers' SDXL pipeline upcasts for the
  same reason), and never under autocast (an fp32 VAE under an fp16 autocast would
  overflow all the same).

Every forward pass casts its inputs to the weight dtype before the call: an fp32
activation entering an fp16 LayerNorm or GroupNorm is what the CPU's autocast does not fix
(CUDA's promotes norms to fp32; the CPU's leaves them), so the same code runs on both.
Non-finite latents or images are reported (`NonFiniteError`) instead of becoming a black
picture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from layoutedit.errors import UserError

if TYPE_CHECKING:
    from layoutedit.backend import Backend
    from layoutedit.config import LearnConfig
    from layoutedit.loading.conditioning import Conditioning

HALF = (torch.float16, torch.bfloat16)
"""The reduced-precision dtypes a phase may store weights in or autocast to."""

MIXED_PRECISION: Mapping[str, torch.dtype | None] = {
    "no": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
"""`LearnConfig.mixed_precision` -> autocast dtype."""


class NonFiniteError(UserError):
    """A latent or image came out with NaN or infinite values (half-precision overflow)."""


@dataclass(frozen=True)
class Precision:
    """How one phase's forward passes run on one device.

    Attributes:
        device: where the weights and activations live.
        weights: dtype the frozen weights of the UNet and the text encoders are stored in.
        compute: autocast dtype of the forward passes (None: no autocast, the weights' dtype).
    """

    device: torch.device
    weights: torch.dtype = torch.float32
    compute: torch.dtype | None = None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward-pass context: autocast to `compute` on the device, or nothing."""
        if self.compute is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute)

    def vae_dtype(self, force_upcast: bool) -> torch.dtype:
        """The VAE's dtype in this phase: fp32 when its config forces it, else `weights`."""
        return torch.float32 if force_upcast else self.weights

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 training (fp16 gradients underflow without one); None for
        bf16 (fp32's range) and fp32."""
        if self.compute != torch.float16:
            return None
        return torch.amp.GradScaler(self.device.type)


def learn_precision(cfg: LearnConfig, device: torch.device | str) -> Precision:
    """Learning's precision: `cfg.mixed_precision` autocast; with `cfg.low_memory` the frozen
    weights stored in it too (on every device: the inputs are cast, so the CPU runs it)."""
    compute = MIXED_PRECISION[cfg.mixed_precision]
    weights = compute if (cfg.low_memory and compute is not None) else torch.float32
    return Precision(torch.device(device), weights, compute)


def prior_precision(cfg: LearnConfig, backend: Backend | None, device: torch.device) -> Precision:
    """The prior's precision: learning's weights, autocast to learning's dtype or else to the
    backend's half dtype (fp16 on CUDA), as inference elsewhere runs."""
    learn = learn_precision(cfg, device)
    preferred = getattr(backend, "dtype", torch.float32)
    compute = learn.compute or (preferred if preferred in HALF else None)
    return Precision(learn.device, learn.weights, compute)


def edit_precision(backend: Backend) -> Precision:
    """Editing's precision: the backend's weight dtype, autocast to it when it is half."""
    dtype = backend.dtype
    return Precision(torch.device(backend.device), dtype, dtype if dtype in HALF else None)


def stored_precision(model: Any) -> Precision:
    """The precision a model's weights imply as they are stored (a caller with no phase of its
    own, such as the bench's concept check): autocast to the UNet's dtype when it is half."""
    weights = _module_dtype(model.unet)
    return Precision(_module_device(model.unet), weights, weights if weights in HALF else None)


def _module_dtype(module: Any) -> torch.dtype:
    # The first floating parameter: diffusers' `.dtype` reads the first parameter too, but a
    # trained fp32 K/V weight must not decide a half UNet's dtype, so take conv_in's if any.
    first = getattr(module, "conv_in", None)
    source = first if first is not None else module
    return next(p.dtype for p in source.parameters() if p.is_floating_point())


def _module_device(module: Any) -> torch.device:
    return next(module.parameters()).device


def force_upcast(vae: Any) -> bool:
    """The VAE config's `force_upcast` (diffusers' default, True, when absent)."""
    return bool(getattr(vae.config, "force_upcast", True))


def apply_precision(model: Any, precision: Precision) -> None:
    """Store a loaded model's weights as `precision` says (in place): the UNet and the text
    encoders in `weights`, the VAE in `vae_dtype`. Casting to a wider dtype than the weights
    were loaded in gains nothing: load the model again instead (`load_model(dtype=...)`)."""
    refiner = () if model.refiner is None else (model.refiner,)
    for module in (model.unet, *model.text_encoders, *refiner):
        cast_weights(module, precision.weights)
    cast_weights(model.vae, precision.vae_dtype(force_upcast(model.vae)))


def cast_weights(module: Any, dtype: torch.dtype) -> None:
    """Every floating weight of `module` in `dtype` (in place; nothing happens when they all
    are already, a low-memory learn's fp32 K/V in a half UNet being cast as well)."""
    if floating_dtypes([module]) <= {dtype}:
        return
    from diffusers.utils import logging as diffusers_logging

    # diffusers warns on `.to(dtype)` about fp32-only modules, listing none for these models.
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        module.to(dtype=dtype)
    finally:
        diffusers_logging.set_verbosity(verbosity)


def unet_forward(
    unet: Any,
    precision: Precision,
    latents: torch.Tensor,
    timestep: torch.Tensor | int,
    cond: Conditioning,
) -> torch.Tensor:
    """One UNet call as the phase runs it: inputs cast to the weight dtype, under the phase's
    autocast, output as fp32.

    Args:
        unet: a `UNet2DConditionModel`.
        latents: (B, C, h, w).
        timestep: a scalar or (B,) timesteps.
        cond: (B, L, D) embeddings or a `TextConditioning` of B rows.

    Returns:
        (B, C, h, w) fp32 prediction (gradients flow back to `latents` when enabled).
    """
    from layoutedit.loading.conditioning import as_conditioning

    text = as_conditioning(cond).to(precision.weights)
    with precision.autocast():
        out = unet(latents.to(precision.weights), timestep, **text.unet_kwargs()).sample
    return out.float()


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """A block that runs in its tensors' own dtypes even inside an autocast (the VAE)."""
    return torch.autocast(device.type, enabled=False)


def check_finite(tensor: torch.Tensor, what: str, dtype: torch.dtype) -> torch.Tensor:
    """`tensor` unchanged when every value is finite.

    Args:
        tensor: any shape.
        what: what it is, for the message ("decoded image", "source latent").
        dtype: the dtype it was computed in.

    Raises:
        NonFiniteError: a NaN or infinite value (one line saying what to do).
    """
    if bool(torch.isfinite(tensor).all()):
        return tensor
    hint = (
        "the model overflows in half precision: run it in float32 (--backend cpu), or give "
        "its VAE force_upcast: true in vae/config.json"
        if dtype in HALF
        else "the model's weights give NaN or infinite values; check the model files"
    )
    raise NonFiniteError(f"the {what} has non-finite values ({_dtype_name(dtype)}): {hint}")


def finite_rows(values: torch.Tensor) -> torch.Tensor:
    """(B,) bool: which rows of a (B, ...) tensor are finite everywhere."""
    return torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def floating_dtypes(modules: Iterable[Any]) -> set[torch.dtype]:
    """Every floating dtype the modules' parameters are stored in (for reports and tests)."""
    return {p.dtype for m in modules for p in m.parameters() if p.is_floating_point()}
