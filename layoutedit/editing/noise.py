"""Seeded noise of an edit, drawn the same way on every backend.

Every random number an edit draws (the starting noise z_T, the `eta` noise of each DDIM step)
comes from a CPU `torch.Generator` in float32 and is then moved to the run's device and
dtype. A CUDA generator draws another sequence from the same seed, so an edit seeded on
`cuda` would start from another z_T than on `cpu`, and a backend comparison (bench
`--backends`, gpu-check's pixel difference) would compare different samples. The copy to
the device costs one latent's bytes per draw. Learning draws the same way (`training`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def seed_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed` (whatever device the edit runs on)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def cpu_normal(
    shape: Sequence[int],
    generator: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of `shape`, drawn in float32 on the CPU from `generator`, then
    moved to `device` in `dtype` (so the values do not depend on the device or dtype).

    Raises:
        ValueError: `generator` is not a CPU generator (its draws would depend on the device).
    """
    if generator.device.type != "cpu":
        raise ValueError(f"seeded noise needs a CPU generator, got one on {generator.device}")
    noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


def seeded_normal(
    seed: int, shape: Sequence[int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """float32 standard normal noise of `shape` from a fresh CPU generator seeded `seed`, on
    `device` (z_T of an edit: the same values on every device)."""
    return cpu_normal(shape, seed_generator(seed), device)
