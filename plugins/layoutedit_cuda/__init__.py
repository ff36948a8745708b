"""Accelerated CUDA backend (placeholder)."""

from __future__ import annotations


class CudaBackend:
    name = "cuda"
    description = "CUDA: PyTorch SDPA or xformers attention, mixed precision, batched CFG."
    priority = 10

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return "not yet implemented"
