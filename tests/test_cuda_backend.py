"""The CUDA backend: registry entry and reason everywhere; processors on any device; the edit
itself only on a GPU (marked `gpu`, skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from edit_support import fast_config, load_tiny, moved_layout, shapes_scene

from layoutedit.attention_recording import AttentionStore, RecordingAttnProcessor
from layoutedit.backend import list_backends
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.shapes.architecture import ModelSize, build_unet
from layoutedit_cuda import CudaBackend
from layoutedit_cuda.kernels import kernel_name, make_processor

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_listed_with_a_reason_when_unusable() -> None:
    info = {i.name: i for i in list_backends()}["cuda"]
    assert info.priority > {i.name: i for i in list_backends()}["cpu"].priority
    if torch.cuda.is_available():
        assert info.available
    else:
        assert info.unavailable_reason is not None
        assert "CUDA not available" in info.unavailable_reason


def test_kernels() -> None:
    assert isinstance(make_processor("sdpa"), AttnProcessor2_0)
    assert kernel_name(prefer_xformers=False) == "sdpa"
    with pytest.raises(ValueError):
        make_processor("flash-magic")


def test_installs_fused_kernel_and_recorders_with_the_same_prediction() -> None:
    """The processor set works on any device; on the CPU it must match the reference."""
    unet = build_unet(ModelSize(unet_channels=(8, 16, 16), unet_layers=1, heads=2, text_width=16))
    unet.eval()
    torch.manual_seed(0)
    latents, context = torch.randn(1, 4, 16, 16), torch.randn(1, 6, 16)
    unet.set_attn_processor(AttnProcessor())
    with torch.no_grad():
        expected = unet(latents, 10, encoder_hidden_states=context).sample
    sides = cross_attention_sides(unet, 16)
    record = [n for n, s in sides.items() if s == 8]
    backend = CudaBackend(prefer_xformers=False)
    backend.install_attention(unet, [n.removesuffix(".processor") for n in record])
    procs = unet.attn_processors
    assert all(isinstance(procs[n], RecordingAttnProcessor) for n in record)
    assert all(isinstance(procs[n].idle, AttnProcessor2_0) for n in record)
    others = [p for n, p in procs.items() if n not in record]
    assert others and all(isinstance(p, AttnProcessor2_0) for p in others)
    store = AttentionStore(8)
    store.attach(unet)
    with torch.no_grad():
        fused = unet(latents, 10, encoder_hidden_states=context).sample
        with store.recording():
            recorded = unet(latents, 10, encoder_hidden_states=context).sample
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(recorded, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@needs_cuda
def test_edit_on_the_gpu(tiny_model_dir: Path) -> None:
    from layoutedit.editing.session import EditSession

    backend = CudaBackend()
    model = load_tiny(tiny_model_dir)
    for module in (model.unet, model.vae, model.text_encoder):
        module.to(device=backend.device, dtype=backend.dtype)
    scene = shapes_scene(crop=48)
    layout = moved_layout(scene)
    session = EditSession(model, scene, fast_config(), backend)
    first = session.edit(layout, seeds=(0, 1))
    again = session.edit(layout, seeds=(0,))
    a = first.candidates[0]
    assert a.image.shape == (48, 64, 3)
    # Same seed, same image, up to the GPU's kernels: some CUDA reductions (atomics in the
    # guidance's backward pass) are not bit-reproducible between two runs. Off by at most a
    # few levels of 255 where rounding tips a pixel; another seed differs by tens.
    diff = np.abs(a.image.astype(np.int16) - again.candidates[0].image.astype(np.int16))
    assert diff.mean() < 0.5 and diff.max() <= 8
    assert np.isfinite(a.loss) and 0 <= a.loss <= 2
    guided = first.unet_evaluations["sampling"]
    assert guided["backward"] >= 2 * 3  # guided steps of both seeds
