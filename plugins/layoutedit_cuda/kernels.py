"""Which fused attention kernel the CUDA backend puts on the layers that are not recorded.

xformers is chosen only when it runs here, not merely when it imports: a wheel built for
another torch or CUDA imports fine and fails on its first call (or, for a C++ extension
mismatch, prints a warning at import and has no kernels). So `kernel_name` makes one tiny
real call of `xformers.ops.memory_efficient_attention` on the device the backend runs on and
takes PyTorch's SDPA, with one warning line saying what to do, when that call fails.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

import torch

_log = logging.getLogger(__name__)

_checked: dict[str, str | None] = {}
"""Device -> why xformers failed there (None: it works), so the check runs once per process."""
_warned: set[str] = set()


def xformers_available() -> bool:
    """True when the `xformers` package can be found here (it may still not run)."""
    return importlib.util.find_spec("xformers") is not None


def xformers_failure(device: torch.device | str) -> str | None:
    """None when xformers' memory-efficient attention runs on `device`, else why not.

    One call on (1, 8, 1, 8) fp16 tensors (fp32 on the CPU), compared with PyTorch's SDPA.
    The answer is kept for the rest of the process.
    """
    key = str(device)
    if key in _checked:
        return _checked[key]
    reason: str | None
    try:
        ops = importlib.import_module("xformers.ops")
        dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
        generator = torch.Generator().manual_seed(0)
        q, k, v = (
            torch.randn(1, 8, 1, 8, generator=generator).to(device=device, dtype=dtype)
            for _ in range(3)
        )  # (B, Q, heads, C) as xformers takes them
        out = ops.memory_efficient_attention(q, k, v)
        expected = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        ).transpose(1, 2)
        if out.shape != expected.shape or not torch.allclose(
            out.float(), expected.float(), atol=1e-2, rtol=1e-2
        ):
            reason = "its attention disagrees with PyTorch's"
        else:
            reason = None
    except Exception as exc:  # any failure of a foreign build means: do not use it
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    _checked[key] = reason
    return reason


def kernel_name(prefer_xformers: bool = True, device: torch.device | str | None = None) -> str:
    """`xformers` when preferred, installed and working on `device`, else `sdpa`.

    Args:
        prefer_xformers: try xformers at all.
        device: where the kernel runs (default: the current CUDA device when there is one,
            else the CPU).

    An xformers that is installed but fails its check gives `sdpa` and, once per process
    and device, one warning line (logged on `layoutedit_cuda.kernels`) naming the fix.
    """
    if not (prefer_xformers and xformers_available()):
        return "sdpa"
    if device is None:
        device = (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    failure = xformers_failure(device)
    if failure is None:
        return "xformers"
    if str(device) in _warned:
        return "sdpa"
    _warned.add(str(device))
    _log.warning(
        "xformers is installed but does not run on %s (%s); using PyTorch SDPA attention. "
        "Install the xformers build made for torch %s (pip install --no-deps "
        "xformers==<that version>) or uninstall xformers",
        device,
        failure,
        torch.__version__,
    )
    return "sdpa"


def make_processor(name: str) -> Any:
    """A diffusers attention processor for the kernel `name` (`xformers` or `sdpa`)."""
    from diffusers.models.attention_processor import AttnProcessor2_0, XFormersAttnProcessor

    if name == "xformers":
        return XFormersAttnProcessor()
    if name == "sdpa":
        return AttnProcessor2_0()
    raise ValueError(f"unknown attention kernel {name!r}")
