"""The CPU reference backend: registry entry, settings, and attention processors."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor

from layoutedit.backend import Backend, get_backend, list_backends
from layoutedit.loading.model_loading import load_model
from layoutedit_cpu import CpuBackend

# Tiny ops: one intra-op thread is much faster on a busy 2-core machine.


def test_registered_and_usable() -> None:
    info = {b.name: b for b in list_backends()}["cpu"]
    assert info.available and info.cls is CpuBackend
    backend = get_backend("cpu")
    assert isinstance(backend, Backend)
    assert backend.device == torch.device("cpu")
    assert backend.dtype == torch.float32
    assert backend.batch_cfg is False
    assert isinstance(backend.autocast(), contextlib.nullcontext)


def test_install_attention(tiny_model_dir: Path, tmp_path: Path) -> None:
    from layoutedit.attention_recording import RecordingAttnProcessor

    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    emb = model.encode_prompts(["a red circle"]).detach()
    with torch.no_grad():
        before = model.unet(x, 10, emb).sample
    layers = [layer for layer in model.cross_attention_layers if layer.query_side == 8]
    # Module names and processor names are both accepted.
    wanted = [layers[0].name, *(layer.processor_name for layer in layers[1:])]
    CpuBackend().install_attention(model.unet, wanted)
    procs = model.unet.attn_processors
    recording = {n for n, p in procs.items() if isinstance(p, RecordingAttnProcessor)}
    assert recording == {layer.processor_name for layer in layers}
    others = [p for n, p in procs.items() if n not in recording]
    assert others and all(type(p) is AttnProcessor for p in others)
    with torch.no_grad():
        after = model.unet(x, 10, emb).sample
    # Explicit attention computes what the fused default computed.
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_unknown_layer_is_an_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    with pytest.raises(ValueError):
        CpuBackend().install_attention(model.unet, ["no_such_block.attn2"])
