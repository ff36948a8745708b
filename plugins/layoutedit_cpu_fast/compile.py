"""Compiling the UNet for `cpu-fast`: once per UNet object, eager when compiling fails.

On the embedded 64 px model the UNet's tensors are tiny, so an eager forward spends a
quarter of its time in Python and in launching ~600 small operators; inductor fuses the
pointwise tails (group norm + SiLU, GEGLU, residual adds) into C++ loops and drops the
per-operator dispatch (batched CFG pass: 27 -> 20 ms, inversion pass: 18 -> 12 ms).

Only the inference passes (no gradients, no attention recorded: the CFG predictions and the
inversion) run compiled. The guidance pass stays eager: it records attention through
Python side effects and stops the UNet early by raising `AttentionCollected`, and every way
of tracing that into graphs measured slower than eager (the graph splits at each recorded
layer, and the pieces recompile per shape until dynamo gives up on them).

The routing sits in `nn.Module`'s own slot for a compiled call (`Module.compile` fills the
same slot), so the UNet object, its forward and every caller stay as they are.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from typing import Any

import torch

from layoutedit.attention_recording import RecordingAttnProcessor

log = logging.getLogger(__name__)

COMPILE_ENV = "LAYOUTEDIT_CPU_FAST_COMPILE"
"""Set to 0 to keep the UNet eager (debugging, or when the first edit's compile time matters
more than the later edits' speed)."""

_ROUTER_ATTR = "_layoutedit_compiled_router"


class _Router:
    """Sends each UNet call to the compiled or the eager forward.

    Args:
        unet: the UNet (its `_call_impl` is the eager forward).
        compiled: `torch.compile` of that forward.
    """

    def __init__(self, unet: Any, compiled: Any) -> None:
        self.unet = unet
        self.compiled = compiled
        self.recorders: Sequence[RecordingAttnProcessor] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled() or any(
            r.store is not None and r.store.active for r in self.recorders
        ):
            return self.unet._call_impl(*args, **kwargs)
        return self.compiled(*args, **kwargs)


def compile_skip_reason(unet: Any) -> str | None:
    """None when `unet` can be compiled here; else why not (one line)."""
    if os.environ.get(COMPILE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{COMPILE_ENV}=0"
    if not hasattr(torch, "compile") or not hasattr(unet, "_compiled_call_impl"):
        return "this PyTorch has no torch.compile / Module.compile"
    devices = {p.device.type for p in unet.parameters()}
    if devices != {"cpu"}:
        return f"weights on {', '.join(sorted(devices))}, not the CPU"
    if not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++") if c):
        return "no C++ compiler for inductor (install g++ or set CXX)"
    return None


def is_compiled(unet: Any) -> bool:
    """Whether `unet` already routes through a compiled forward (see `compile_unet`)."""
    return getattr(unet, _ROUTER_ATTR, None) is not None


def compile_unet(unet: Any) -> bool:
    """Route `unet`'s inference passes through `torch.compile` of its forward (once per UNet
    object; later calls only refresh which processors record).

    A reason not to compile leaves the UNet eager with a one-line note in the log; a pass that
    fails to compile (at its first call) runs eager too (dynamo's `suppress_errors`, with
    torch's own warning).

    Returns:
        True when the UNet's inference passes are (now) compiled.
    """
    router: _Router | None = getattr(unet, _ROUTER_ATTR, None)
    if router is None:
        reason = compile_skip_reason(unet)
        if reason is not None:
            log.info("cpu-fast: UNet stays eager (%s)", reason)
            return False
        try:
            import torch._dynamo.config as dynamo_config

            # A pass that fails to compile runs eager instead of failing the edit.
            dynamo_config.suppress_errors = True
            # Static shapes: each pass has a fixed batch (1 or 2), and shape-generic
            # kernels are slower on tensors this small.
            router = _Router(unet, torch.compile(unet._call_impl, dynamic=False))
        except Exception as exc:  # an optimisation: the edit must run without it
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("cpu-fast: UNet stays eager (compile failed: %s)", first)
            return False
        unet._compiled_call_impl = router
        setattr(unet, _ROUTER_ATTR, router)
    router.recorders = [
        p for p in unet.attn_processors.values() if isinstance(p, RecordingAttnProcessor)
    ]
    return True
