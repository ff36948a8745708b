"""The optimisers a learning stage builds, as the planner holds them (no CUDA, no bitsandbytes).

`training.make_optimizer` builds torch's AdamW or bitsandbytes' 8-bit AdamW; the second runs
on CUDA only, so the planner's `meta` model gets a stand-in that keeps the same state:

- a tensor of at least `MIN_8BIT_SIZE` elements: both moments in 8 bits (uint8, one byte an
  element) and one fp32 scale per block of `BLOCK` elements for each (block-wise dynamic
  quantisation), about 2.03 bytes an element instead of AdamW's 8;
- a smaller one (biases, the embedding rows): fp32 moments, as AdamW's.

Those are bitsandbytes' defaults (`Optimizer2State`: `min_8bit_size=4096`, block-wise with
blocks of 256). The update the stand-in makes is no 8-bit Adam: on `meta` no value exists,
and memory and FLOPs do not depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

MIN_8BIT_SIZE = 4096
"""Elements below which a tensor keeps fp32 moments (bitsandbytes' `min_8bit_size`)."""
BLOCK = 256
"""Elements that share one fp32 scale of an 8-bit moment (bitsandbytes' block size)."""


class PlannedAdamW8bit(torch.optim.Optimizer):
    """bitsandbytes' `AdamW8bit` state, for the planner (see the module docstring)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    def _init_state(self, p: torch.Tensor) -> None:
        state = self.state[p]
        state["step"] = torch.zeros((), dtype=torch.float32)
        if p.numel() < MIN_8BIT_SIZE:
            state["state1"] = torch.zeros_like(p, dtype=torch.float32)
            state["state2"] = torch.zeros_like(p, dtype=torch.float32)
            return
        blocks = math.ceil(p.numel() / BLOCK)
        for i in (1, 2):
            state[f"state{i}"] = torch.zeros_like(p, dtype=torch.uint8)
            state[f"absmax{i}"] = torch.zeros(blocks, dtype=torch.float32, device=p.device)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """Create the state on the first call; move each parameter against its gradient
        (in place, no temporary the size of the parameters: the 8-bit kernel has none)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p not in self.state or not self.state[p]:
                    self._init_state(p)
                self.state[p]["step"] += 1
                p.add_(p.grad.to(p.dtype), alpha=-group["lr"])


def planned_optimizer(kind: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """The optimiser `training.make_optimizer` would build for `kind`, as the planner holds it.

    Args:
        kind: `adamw` (torch's, fp32 moments) or `adamw8bit` (`PlannedAdamW8bit`).
        params: the trained tensors (any device, `meta` included).
        lr: learning rate.
    """
    if kind == "adamw8bit":
        return PlannedAdamW8bit(params, lr)
    if kind != "adamw":
        raise ValueError(f"unknown optimiser {kind!r}")
    return torch.optim.AdamW(params, lr=lr)
