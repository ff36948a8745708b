"""Accelerated CPU backend for layoutedit (entry point `layoutedit.backends: cpu-fast`)."""

from __future__ import annotations

from layoutedit_cpu_fast.backend import CpuFastBackend

__all__ = ["CpuFastBackend"]
