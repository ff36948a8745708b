"""Every random draw of an edit comes from a CPU generator: the same seed gives the same z_T
and the same eta noise on every backend and device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from edit_support import fast_config, load_tiny, moved_layout, shapes_scene

from layoutedit.backend import get_backend
from layoutedit.editing.noise import cpu_normal, seed_generator, seeded_normal
from layoutedit.editing.session import EditSession


def test_seeded_noise_is_the_cpu_draw_on_any_device() -> None:
    expected = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(seeded_normal(7, (1, 4, 8, 8)), expected)
    # A device without a generator of its own (meta stands in for cuda here): the draw is
    # the CPU's, moved there.
    on_meta = seeded_normal(7, (1, 4, 8, 8), "meta")
    assert on_meta.device.type == "meta" and on_meta.dtype == torch.float32
    half = cpu_normal((1, 4, 8, 8), seed_generator(7), "cpu", torch.float16)
    torch.testing.assert_close(half.float(), expected, atol=2e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="CPU generator"):
        cpu_normal((2,), _not_cpu(), "cpu")


def _not_cpu() -> torch.Generator:
    """A generator that says it lives on another device (none other exists on a CPU box)."""

    class Elsewhere:
        device = torch.device("meta")

    return Elsewhere()  # type: ignore[return-value]


def test_the_same_seed_gives_the_same_z_t_on_every_backend(tiny_model_dir: Path) -> None:
    scene = shapes_scene()
    starts = []
    for name in ("cpu", "cpu-fast"):
        session = EditSession(load_tiny(tiny_model_dir), scene, fast_config(), get_backend(name))
        starts.append(session.start_noise(5))
        # The session's latents on another device (meta has no generator of its own, as a
        # CUDA device has one of its own): z_T is the CPU draw moved there, not a device draw.
        session.source = session.source.to("meta")
        moved = session.start_noise(5)
        assert moved.device.type == "meta" and moved.shape == starts[-1].shape
    torch.testing.assert_close(starts[0], starts[1], rtol=0, atol=0)
    torch.testing.assert_close(starts[0], seeded_normal(5, starts[0].shape))


def test_eta_noise_is_the_same_on_both_sampling_paths(tiny_model_dir: Path) -> None:
    """With eta > 0 the one-seed loop and the batched loop (`batch_seeds`, as cpu-fast runs
    it, here without its compile) draw each seed's step noise from its CPU generator: the
    images agree within rounding, and differ from another seed's by far more."""
    import numpy as np

    from layoutedit_cpu import CpuBackend

    class BatchedCpu(CpuBackend):
        @property
        def batch_seeds(self) -> bool:
            return True

    scene = shapes_scene()
    layout = moved_layout(scene)
    images = {}
    for name, backend in (("one by one", CpuBackend()), ("batched", BatchedCpu())):
        config = fast_config(eta=1.0, seeds=(0, 1))
        session = EditSession(load_tiny(tiny_model_dir), scene, config, backend)
        result = session.edit(layout)
        images[name] = [c.image.astype(np.int16) for c in result.candidates]
    for a, b in zip(images["one by one"], images["batched"], strict=True):
        assert np.abs(a - b).max() <= 3
    assert np.abs(images["batched"][0] - images["batched"][1]).mean() > 1.0
