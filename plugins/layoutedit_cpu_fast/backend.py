"""The `cpu-fast` backend: the `cuda` backend's techniques on the CPU.

What differs from the `cpu` reference, and only that (the maths is the core's):
- every layer that is not recorded runs PyTorch's fused `scaled_dot_product_attention`
  (`AttnProcessor2_0`; on the CPU a flash-attention kernel that never materialises the
  Q x K probability matrix); recorded layers run `RecordingAttnProcessor`, which uses the
  same kernel whenever it is not recording;
- the unconditional and conditional predictions share one UNet call (batch of 2);
- the UNet's weights in channels-last layout, which sends its convolutions to oneDNN instead
  of PyTorch's im2col fallback (the reference's largest single cost on the embedded model);
- the UNet compiled once (`torch.compile`, inductor's C++ code), see `compile.py`;
- every seed of an edit sampled in one batch (`batch_seeds`, `editing/seed_batch.py`): a
  guidance pass of batch S and a CFG pass of batch 2S cost well under S passes of batch 1
  and 2 on tensors this small (the compiled CFG pass compiles once more per number of seeds).

Reproducibility: a seed's image is the same from run to run, but it may differ by rounding
with how many seeds the edit asks for, since the kernels (oneDNN's choice of convolution,
inductor's code compiled per batch size) sum in another order at another batch size. The
difference stays within the parity tolerance with the reference (2/255 per pixel,
`tests/test_cpu_fast_backend.py`); an edit of one seed samples it alone, as `cpu` does.

Weights stay fp32: bf16 autocast is slower than fp32 on CPUs without native bf16 matrix
units and moves the images further from the reference's, so it is off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch

from layoutedit_cpu import CpuBackend
from layoutedit_cpu_fast.compile import compile_unet, is_compiled

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel


def _sdpa() -> object:
    from diffusers.models.attention_processor import AttnProcessor2_0

    return AttnProcessor2_0()


def _installed(unet: Any, wanted: Sequence[str]) -> bool:
    """Whether `unet` has exactly this backend's processors for recording `wanted`."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from layoutedit.attention_recording import RecordingAttnProcessor

    for name, proc in unet.attn_processors.items():
        if isinstance(proc, RecordingAttnProcessor):
            if name not in wanted or not isinstance(proc.idle, AttnProcessor2_0):
                return False
        elif name in wanted or not isinstance(proc, AttnProcessor2_0):
            return False
    return True


class CpuFastBackend(CpuBackend):
    """The CPU with fused attention, batched classifier-free guidance and a compiled UNet
    (device, dtype and the absent autocast are the reference's)."""

    name: ClassVar[str] = "cpu-fast"
    description: ClassVar[str] = "CPU: fused SDPA attention, batched CFG, compiled UNet, fp32."
    priority: ClassVar[int] = -1
    """Below `cpu`: `--backend auto` keeps the reference until cpu-fast is the default."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when PyTorch has `scaled_dot_product_attention` (2.0 and later)."""
        if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
            return "needs PyTorch 2.0 or later (scaled_dot_product_attention)"
        return None

    @property
    def batch_cfg(self) -> bool:
        """True: one UNet call of batch 2 for the two predictions."""
        return True

    @property
    def batch_seeds(self) -> bool:
        """True: all seeds of an edit are sampled as one batch (guidance pass of batch S,
        CFG pass of batch 2S). See the module docstring for what that does to a seed's
        image."""
        return True

    def install_attention(self, unet: UNet2DConditionModel, record_layers: Sequence[str]) -> None:
        """Recording processors on `record_layers`, SDPA everywhere else; then, for an edit
        (some layer recorded), the UNet is compiled (once per UNet object).

        Args:
            unet: the model's UNet (processors are replaced in place).
            record_layers: keys of `unet.attn_processors` (ending in `.processor`) or module
                names without it.
        """
        from layoutedit.attention_recording import install_processors

        wanted = [n if n.endswith(".processor") else f"{n}.processor" for n in record_layers]
        if not (is_compiled(unet) and _installed(unet, wanted)):
            # A compiled UNet keeps the processors it has when they are already these: new
            # processor objects would fail the compiled graph's guards and recompile it.
            install_processors(unet, wanted, make_default=_sdpa, make_idle=_sdpa)
        # Here because the protocol has no other hook before the UNet runs; idempotent.
        cast(Any, unet).to(memory_format=torch.channels_last)
        if wanted:
            # Learning and planning (nothing recorded) keep eager: their few steps with
            # trainable weights would not repay a compile.
            compile_unet(unet)
