"""Counting UNet evaluations, the cost unit that learn and edit report."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class UNetCounter:
    """UNet evaluations of one run. A batch of N samples in one call counts as N forwards
    (so batched and unbatched classifier-free guidance compare fairly); `backward` counts
    gradient passes through the UNet per sample the same way (textual inversion, fine-tune,
    attention guidance: a guidance pass over the S seeds of a batched edit counts S)."""

    forward: int = 0
    backward: int = 0

    def add(self, forward: int = 0, backward: int = 0) -> None:
        self.forward += forward
        self.backward += backward

    @property
    def total(self) -> int:
        return self.forward + self.backward

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}
