"""Accelerated CUDA backend for layoutedit (entry point `layoutedit.backends: cuda`)."""

from __future__ import annotations

from layoutedit_cuda.backend import CudaBackend

__all__ = ["CudaBackend"]
