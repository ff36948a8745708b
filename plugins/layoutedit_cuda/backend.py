"""The CUDA backend: fused attention, fp16 mixed precision, batched classifier-free guidance.

What differs from the CPU reference, and only that (the maths is the core's):
- layers that are not recorded run a fused kernel: xformers' memory-efficient attention when
  the package runs here (one tiny call checks it, `kernels.kernel_name`), else PyTorch's
  `scaled_dot_product_attention`
  (`AttnProcessor2_0`); recorded layers run `RecordingAttnProcessor`, which uses the same
  fused kernel whenever it is not recording;
- weights in fp16 and forward passes under fp16 autocast (latents and the guidance
  arithmetic stay fp32);
- the unconditional and conditional predictions share one UNet call (batch of 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch

from layoutedit_cuda.kernels import kernel_name, make_processor

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel


class CudaBackend:
    """One NVIDIA GPU: `LOCAL_RANK`'s under a launcher, else the current CUDA device."""

    name: ClassVar[str] = "cuda"
    description: ClassVar[str] = (
        "CUDA: PyTorch SDPA or xformers attention, fp16 mixed precision, batched CFG."
    )
    priority: ClassVar[int] = 10

    def __init__(self, prefer_xformers: bool = True) -> None:
        # Checked on this process's GPU (a build may import and still not run there).
        device = self.device if torch.cuda.is_available() else None
        self.kernel = kernel_name(prefer_xformers, device)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None on a machine with a usable CUDA device, else why not."""
        if not torch.cuda.is_available():
            if torch.version.cuda is None:
                return "CUDA not available: this PyTorch is a CPU-only build"
            return "CUDA not available: no NVIDIA GPU or driver found"
        return None

    @property
    def device(self) -> torch.device:
        """The CUDA device of this process: `LOCAL_RANK`'s under a launcher (one GPU per
        process), else the current device."""
        from layoutedit.editing.sharding import cuda_device_index

        try:
            return torch.device("cuda", cuda_device_index())
        except ValueError as exc:
            from layoutedit.errors import UserError

            raise UserError(str(exc)) from None

    @property
    def dtype(self) -> torch.dtype:
        """fp16 weights for inference."""
        return torch.float16

    @property
    def batch_cfg(self) -> bool:
        """True: one UNet call of batch 2 for the two predictions."""
        return True

    @property
    def batch_seeds(self) -> bool:
        """False: on a GPU a sampling pass is far from call-bound, and a seed keeps its image
        whatever other seeds the edit asks for (not measured batched on a GPU yet)."""
        return False

    def install_attention(self, unet: UNet2DConditionModel, record_layers: Sequence[str]) -> None:
        """Recording processors on `record_layers`, the fused kernel everywhere else.

        Args:
            unet: the model's UNet (processors are replaced in place).
            record_layers: keys of `unet.attn_processors` (ending in `.processor`) or module
                names without it.
        """
        from layoutedit.attention_recording import install_processors

        kernel = self.kernel
        wanted = [n if n.endswith(".processor") else f"{n}.processor" for n in record_layers]
        install_processors(
            unet,
            wanted,
            make_default=lambda: make_processor(kernel),
            make_idle=lambda: make_processor(kernel),
        )

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """fp16 autocast on the GPU."""
        return torch.autocast("cuda", dtype=torch.float16)
