"""CPU reference backend (placeholder until the method lands)."""

from __future__ import annotations


class CpuBackend:
    name = "cpu"
    description = "Reference backend: fp32, explicit attention, separate CFG calls."
    priority = 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None
