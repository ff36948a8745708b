"""CPU reference backend: fp32, explicit attention, the published schedule literally.

The reference every other backend is compared with. It computes attention with diffusers'
explicit `AttnProcessor` (softmax of Q K^T, no fused kernel), runs the unconditional and the
conditional predictions as two separate UNet calls (as the published code does), and uses no
autocast. The method's maths lives in the core; this class only says how to run it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel


class CpuBackend:
    """The reference backend: always usable, slowest, simplest."""

    name: ClassVar[str] = "cpu"
    description: ClassVar[str] = "Reference backend: fp32, explicit attention, separate CFG calls."
    priority: ClassVar[int] = 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Always usable."""
        return None

    @property
    def device(self) -> torch.device:
        """The CPU."""
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """fp32: the reference does no reduced-precision arithmetic."""
        return torch.float32

    @property
    def batch_cfg(self) -> bool:
        """False: unconditional and conditional predictions are two UNet calls."""
        return False

    @property
    def batch_seeds(self) -> bool:
        """False: seeds are sampled one after another, so a seed's image does not depend on
        which other seeds the edit asked for."""
        return False

    def install_attention(self, unet: UNet2DConditionModel, record_layers: Sequence[str]) -> None:
        """Recording processors on `record_layers`, diffusers' explicit `AttnProcessor` elsewhere.

        Args:
            unet: the model's UNet (processors are replaced in place).
            record_layers: layer names as keys of `unet.attn_processors` (ending in
                `.processor`) or as module names (without it); both are accepted.
        """
        from diffusers.models.attention_processor import AttnProcessor

        # Imported here: the core's attention module needs the model stack, the registry not.
        from layoutedit.attention_recording import install_processors

        wanted = [n if n.endswith(".processor") else f"{n}.processor" for n in record_layers]
        install_processors(unet, wanted, make_default=AttnProcessor)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """No autocast: everything runs in fp32."""
        return contextlib.nullcontext()
