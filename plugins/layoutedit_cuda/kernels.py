"""Which fused attention kernel the CUDA backend puts on the layers that are not recorded."""

from __future__ import annotations

import importlib.util
from typing import Any


def xformers_available() -> bool:
    """True when the `xformers` package can be imported here."""
    return importlib.util.find_spec("xformers") is not None


def kernel_name(prefer_xformers: bool = True) -> str:
    """`xformers` when importable and preferred, else `sdpa` (PyTorch's fused attention)."""
    return "xformers" if prefer_xformers and xformers_available() else "sdpa"


def make_processor(name: str) -> Any:
    """A diffusers attention processor for the kernel `name` (`xformers` or `sdpa`)."""
    from diffusers.models.attention_processor import AttnProcessor2_0, XFormersAttnProcessor

    if name == "xformers":
        return XFormersAttnProcessor()
    if name == "sdpa":
        return AttnProcessor2_0()
    raise ValueError(f"unknown attention kernel {name!r}")
