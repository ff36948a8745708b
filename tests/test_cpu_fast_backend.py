"""The `cpu-fast` backend: what it installs, parity with the `cpu` reference, bench --backends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from edit_support import fast_config, load_tiny, moved_layout, shapes_scene
from typer.testing import CliRunner

from layoutedit.attention_recording import RecordingAttnProcessor
from layoutedit.backend import get_backend, list_backends
from layoutedit.cli.app import app
from layoutedit.editing.session import edit
from layoutedit_cpu_fast import compile as fast_compile

# Same seed and edit on both backends: SDPA and the batched CFG call change only the order
# of floating-point sums, so the 8-bit images may differ by rounding at a few pixels.
MAX_PIXEL_DIFF = 2
MEAN_PIXEL_DIFF = 0.05


def test_cpu_fast_is_registered_below_the_reference() -> None:
    infos = {i.name: i for i in list_backends()}
    assert infos["cpu-fast"].available
    assert infos["cpu-fast"].priority < infos["cpu"].priority  # auto keeps the reference
    backend = get_backend("cpu-fast")
    assert backend.batch_cfg and backend.device.type == "cpu"
    assert backend.batch_seeds and not get_backend("cpu").batch_seeds


def test_cpu_fast_fuses_every_layer_it_does_not_record(tiny_model_dir: Path) -> None:
    model = load_tiny(tiny_model_dir)
    names = list(model.unet.attn_processors)
    recorded = [n for n in names if ".attn2." in n][:1]
    get_backend("cpu-fast").install_attention(model.unet, recorded)
    procs = model.unet.attn_processors
    for name in names:
        proc = procs[name]
        if name in recorded:
            assert isinstance(proc, RecordingAttnProcessor)
            assert isinstance(proc.idle, AttnProcessor2_0)
        else:
            assert isinstance(proc, AttnProcessor2_0)


def test_cpu_fast_compiles_the_unet_for_edits_only(tiny_model_dir: Path) -> None:
    backend = get_backend("cpu-fast")
    model = load_tiny(tiny_model_dir)
    backend.install_attention(model.unet, [])  # learning, planning: nothing recorded
    assert not fast_compile.is_compiled(model.unet)
    recorded = [n for n in model.unet.attn_processors if ".attn2." in n][:1]
    backend.install_attention(model.unet, recorded)
    assert fast_compile.is_compiled(model.unet)
    procs = model.unet.attn_processors
    backend.install_attention(model.unet, recorded)  # same layers: same processors (no recompile)
    assert all(procs[n] is p for n, p in model.unet.attn_processors.items())


def test_cpu_fast_stays_eager_when_compiling_is_off_or_fails(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_tiny(tiny_model_dir)
    monkeypatch.setenv(fast_compile.COMPILE_ENV, "0")
    assert not fast_compile.compile_unet(model.unet)
    monkeypatch.delenv(fast_compile.COMPILE_ENV)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no inductor here")

    monkeypatch.setattr(torch, "compile", broken)
    recorded = [n for n in model.unet.attn_processors if ".attn2." in n][:1]
    get_backend("cpu-fast").install_attention(model.unet, recorded)
    assert not fast_compile.is_compiled(model.unet)
    cfg = model.unet.config
    z = torch.zeros(1, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    with torch.no_grad():  # and the eager UNet still runs
        out = model.unet(z, 10, encoder_hidden_states=torch.zeros(1, 4, cfg.cross_attention_dim))
    assert out.sample.shape == z.shape


def test_cpu_fast_edits_like_the_reference(tiny_model_dir: Path) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene)
    cfg = fast_config(seeds=(0, 8))
    images = {}
    losses = {}
    for name in ("cpu", "cpu-fast"):  # cpu-fast: compiled, the two seeds in one batch
        [result] = edit(load_tiny(tiny_model_dir), scene, [layout], cfg, get_backend(name))
        images[name] = np.stack([c.image for c in result.candidates]).astype(np.int16)
        losses[name] = [c.loss for c in result.candidates]
    diff = np.abs(images["cpu"] - images["cpu-fast"])
    assert diff.max() <= MAX_PIXEL_DIFF
    assert diff.mean() <= MEAN_PIXEL_DIFF
    assert np.allclose(losses["cpu"], losses["cpu-fast"], atol=1e-3)


def test_cpu_fast_seed_alone_or_in_a_batch_stays_within_the_parity_tolerance(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batching, not the compiler (the test above compiles): eager keeps it quick.
    monkeypatch.setenv(fast_compile.COMPILE_ENV, "0")
    scene = shapes_scene()
    layout = moved_layout(scene)
    model = load_tiny(tiny_model_dir)
    backend = get_backend("cpu-fast")
    [batch] = edit(model, scene, [layout], fast_config(seeds=(0, 8, 88)), backend)
    [alone] = edit(model, scene, [layout], fast_config(seeds=(8,)), backend)
    # The seeds' batch may round differently from the seed alone (batch-size-dependent
    # kernels), never by more than the backend may differ from the reference.
    diff = np.abs(batch.candidates[1].image.astype(np.int16) - alone.candidates[0].image)
    assert diff.max() <= MAX_PIXEL_DIFF
    assert diff.mean() <= MEAN_PIXEL_DIFF
    assert batch.candidates[1].loss == pytest.approx(alone.candidates[0].loss, abs=1e-3)


def test_bench_backends_times_both_on_the_same_cases(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bench's plumbing, not the compiler (the test above compiles): eager keeps it quick.
    monkeypatch.setenv(fast_compile.COMPILE_ENV, "0")
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        [
            "--model",
            str(tiny_model_dir),
            "--quiet",
            "bench",
            "--backends",
            "cpu,cpu-fast",
            "--quick",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "backends.json").read_text())
    rows = {r["backend"]: r for r in payload["backends"]}
    assert set(rows) == {"cpu", "cpu-fast"}
    assert rows["cpu"]["edit_speedup"] == 1.0
    assert rows["cpu-fast"]["learn_s"] > 0 and rows["cpu-fast"]["edit_s"] > 0
    assert rows["cpu-fast"]["prepare_s"] > 0 and rows["cpu"]["prepare_speedup"] == 1.0
    assert rows["cpu-fast"]["max_pixel_diff"] <= 255
    assert rows["cpu-fast"]["warm_up_s"] > 0  # the untimed warm-up, reported apart
    bad = CliRunner().invoke(app, ["bench", "--backends", "cpu,cpu"])
    assert bad.exit_code == 2
