"""The GPU path's precision, proven on the CPU: half-precision frozen weights through learning,
the concept check and editing (tiny SD 1.5 and SDXL models), the VAE's force_upcast and the
non-finite checks, loading in the phase's dtype, a reload releasing the old model, two
learns in different precisions in one process, and guidance gradients that overflow.

CPU half precision is slow but correct; the models are tiny, the step counts minimal.
"""

from __future__ import annotations

import json
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from edit_support import fast_config, moved_layout, shapes_scene
from safetensors.torch import load_file, save_file

from layoutedit.backend import register_backend, unregister_backend
from layoutedit.config import LearnConfig, resolve_settings
from layoutedit.learning.concept_check import source_attention_shares
from layoutedit.learning.finetune import kv_parameters
from layoutedit.learning.learn import learn_concept
from layoutedit.learning.low_memory import store_frozen
from layoutedit.learning.tokens import add_placeholders
from layoutedit.loading.model_loading import load_model
from layoutedit.precision import NonFiniteError, floating_dtypes, learn_precision
from layoutedit.scenes.prompts import token_positions
from layoutedit.shapes.architecture import TEST_TINY, build_sdxl_pipeline_folder
from layoutedit_cpu import CpuBackend

HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
TINY_LEARN = LearnConfig(
    ti_steps=2, ti_batch_size=1, ti_joint=True, ft_steps=2, ft_batch_size=1, checkpoint_every=0
)


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sdxl_pipeline_folder(tmp_path_factory.mktemp("sdxl") / "model", TEST_TINY)


@pytest.fixture(params=["sd", "sdxl"])
def model_dir(request: pytest.FixtureRequest, tiny_model_dir: Path, sdxl_dir: Path) -> Path:
    """The tiny SD 1.5-layout model, then the tiny SDXL one."""
    return tiny_model_dir if request.param == "sd" else sdxl_dir


class HalfCpuBackend(CpuBackend):
    """The CPU reference backend with fp16 weights: the CUDA backend's precision, on the CPU."""

    name: ClassVar[str] = "test-cpu-half"
    half: ClassVar[torch.dtype] = torch.float16

    @property
    def dtype(self) -> torch.dtype:
        return self.half


class Bf16CpuBackend(HalfCpuBackend):
    name: ClassVar[str] = "test-cpu-bf16"
    half: ClassVar[torch.dtype] = torch.bfloat16


@pytest.fixture
def half_backends() -> Iterator[None]:
    for cls in (HalfCpuBackend, Bf16CpuBackend):
        register_backend(cls)
    try:
        yield
    finally:
        for cls in (HalfCpuBackend, Bf16CpuBackend):
            unregister_backend(cls.name)


# --- finding 1: low-memory learning in half precision, and the concept check after it ---


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_concept_check_runs_on_half_frozen_weights(tiny_model_dir: Path, precision: str) -> None:
    """The check `learn` runs after training, on the model a low-memory learn leaves: half
    frozen weights beside fp32 K/V (it raised 'expected m1 and m2 to have the same dtype')."""
    model = load_model(str(tiny_model_dir))
    scene = shapes_scene()
    add_placeholders(model, dict(zip(scene.tokens, scene.names, strict=True)))
    positions = token_positions(model.tokenizer, scene.prompt, scene.tokens)
    where = [positions[t] for t in scene.tokens]
    reference = source_attention_shares(model, scene, scene.prompt, where)
    store_frozen(model, HALF[precision])
    assert floating_dtypes([model.unet]) == {HALF[precision], torch.float32}
    shares = source_attention_shares(model, scene, scene.prompt, where)
    assert np.allclose(shares, reference, atol=0.05)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_memory_learn_in_half_precision_on_the_cpu(model_dir: Path, precision: str) -> None:
    """The 8 GB path end to end (training, the concept check) with the frozen weights loaded
    in half precision, on SD 1.5 and SDXL layouts."""
    dtype = HALF[precision]
    model = load_model(str(model_dir), dtype=dtype)
    cfg = TINY_LEARN.model_copy(update={"low_memory": True, "mixed_precision": precision})
    before = {k: v.float().clone() for k, v in kv_parameters(model).items()}
    result = learn_concept(model, shapes_scene(), cfg, backend=CpuBackend())
    assert model.unet.conv_in.weight.dtype == dtype
    assert model.text_encoder.get_input_embeddings().weight.dtype == dtype
    assert all(p.dtype == torch.float32 for p in kv_parameters(model).values())
    after = result.concept.kv_weights
    assert any(not torch.equal(before[k], v) for k, v in after.items())
    assert all(torch.isfinite(v).all() for v in after.values())
    assert all(torch.isfinite(row).all() for row in result.concept.embeddings.values())
    shares = result.concept.meta["attention_shares"]
    assert all(0.0 <= s <= 1.0 for s in shares.values())


def test_low_memory_learn_then_edit_in_half_precision_loads_once(
    tiny_model_dir: Path, tmp_path: Path, half_backends: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Editor: a low-memory fp16 learn, then the edit, on a backend whose weights are fp16:
    one load, in fp16, and a finite image."""
    loads = _spy_loads(monkeypatch)
    editor = _editor(
        tiny_model_dir,
        tmp_path,
        "test-cpu-half",
        learn={"low_memory": True, "mixed_precision": "fp16"},
    )
    scene = editor.scene(_scene_folder(tmp_path))
    outcome = editor.edit(scene, moved_layout(scene).labels)
    assert [dtype for dtype, _ in loads] == [torch.float16]
    image = outcome.best().image
    assert image.shape == scene.image.shape and image.std() > 0
    assert np.isfinite(outcome.best().loss)


# --- editing with half-precision weights (guidance, inversion, sampling, decoding) ---------


@pytest.mark.parametrize(
    ("family", "backend"), [("sd", "test-cpu-half"), ("sdxl", "test-cpu-bf16")]
)
def test_edit_in_half_precision_matches_fp32(
    tiny_model_dir: Path,
    sdxl_dir: Path,
    tmp_path: Path,
    half_backends: None,
    family: str,
    backend: str,
) -> None:
    """The same edit (no concept) with half weights and with fp32 ones: both finite, the
    images close (random tiny models: a few levels of 255 on average). fp16 on the SD 1.5
    layout, bf16 on SDXL's (the learning tests take every pair)."""
    model_dir = tiny_model_dir if family == "sd" else sdxl_dir
    images = []
    for name in ("cpu", backend):
        editor = _editor(model_dir, tmp_path / name, name, edit={"use_concept": False})
        scene = editor.scene(_scene_folder(tmp_path / name))
        outcome = editor.edit(scene, moved_layout(scene).labels)
        assert np.isfinite(outcome.best().loss)
        images.append(outcome.best().image.astype(np.float64))
    assert np.abs(images[0] - images[1]).mean() < 8.0


# --- finding 2: the VAE follows force_upcast; non-finite values are one clear error ---------


def _overflowing_vae(source: Path, folder: Path, force_upcast: bool) -> Path:
    """A copy of a model whose decoder's first convolution is scaled by 1e6: fine in fp32
    (the group norms after it take the scale out), inf in fp16 (past 65504)."""
    shutil.copytree(source, folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    for key in ("decoder.conv_in.weight", "decoder.conv_in.bias"):
        tensors[key] = tensors[key] * 1e6
    save_file(tensors, weights)
    config_path = folder / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["force_upcast"] = force_upcast
    config_path.write_text(json.dumps(config))
    return folder


def test_the_vae_is_loaded_in_fp32_when_its_config_forces_it(
    sdxl_dir: Path, tmp_path: Path
) -> None:
    """SDXL's VAE overflows in fp16: with `force_upcast` (as SDXL's config says) a half-
    precision model keeps its VAE in fp32 and decodes what the fp32 model decodes."""
    folder = _overflowing_vae(sdxl_dir, tmp_path / "model", force_upcast=True)
    full = load_model(str(folder))
    half = load_model(str(folder), dtype=torch.float16)
    assert half.unet.conv_in.weight.dtype == torch.float16
    assert floating_dtypes([half.vae]) == {torch.float32}
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    expected = full.decode_latents(latents).astype(int)
    got = half.decode_latents(latents).astype(int)
    assert np.abs(expected - got).max() <= 1
    assert expected.std() > 0  # not a black image


def test_a_half_vae_that_overflows_is_one_clear_error(sdxl_dir: Path, tmp_path: Path) -> None:
    """Without force_upcast the fp16 VAE overflows: an error naming what to do, not a black
    image."""
    folder = _overflowing_vae(sdxl_dir, tmp_path / "model", force_upcast=False)
    half = load_model(str(folder), dtype=torch.float16)
    assert floating_dtypes([half.vae]) == {torch.float16}
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteError, match="force_upcast") as caught:
        half.decode_latents(latents)
    assert caught.value.exit_code == 2 and "\n" not in caught.value.line()
    with pytest.raises(NonFiniteError, match="latent to decode"):
        half.decode_latents(torch.full((1, 4, 16, 16), float("nan")))


# --- finding 3: weights loaded in the phase's dtype; a reload releases the old model first --


def _spy_loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.dtype, bool]]:
    """Record, for every `load_model`: the dtype asked for, and whether the model loaded
    before was still alive at that moment."""
    import gc

    import layoutedit.loading.model_loading as loading

    real = loading.load_model
    calls: list[tuple[torch.dtype, bool]] = []
    previous: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        gc.collect()
        alive = bool(previous) and previous[-1]() is not None
        calls.append((kwargs.get("dtype", torch.float32), alive))
        model = real(*args, **kwargs)
        previous.append(weakref.ref(model.unet))
        return model

    monkeypatch.setattr(loading, "load_model", spy)
    return calls


def _scene_folder(folder: Path) -> Path:
    from layoutedit.shapes.world import sample_scene, write_scene_folder

    return write_scene_folder(sample_scene(3, 2), folder / "scene")


def _editor(
    model_dir: Path,
    tmp_path: Path,
    backend: str,
    learn: dict[str, Any] | None = None,
    edit: dict[str, Any] | None = None,
) -> Any:
    from layoutedit import Editor

    # Three DDIM steps, two guided, one refinement pass: every phase runs, briefly.
    fast = fast_config(steps=3, max_iter_to_alter=2, blend_steps=2, max_refinement_steps=1)
    fast = fast.model_dump()
    overrides = {
        "learn": {**TINY_LEARN.model_dump(), **(learn or {})},
        "edit": {**fast, "use_concept": True, **(edit or {})},
    }
    settings = resolve_settings("fast", None, overrides)
    return Editor(
        model=str(model_dir), backend=backend, cache_dir=tmp_path / "cache", settings=settings
    )


def test_the_editor_loads_weights_in_the_edit_dtype(
    tiny_model_dir: Path, tmp_path: Path, half_backends: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit on a half-precision backend reads the weights as fp16 (never fp32 first, then
    cast: on a 12 GB card SDXL needed 12.9 GiB at that moment), the VAE in fp32."""
    loads = _spy_loads(monkeypatch)
    editor = _editor(tiny_model_dir, tmp_path, "test-cpu-half", edit={"use_concept": False})
    scene = editor.scene(_scene_folder(tmp_path))
    editor.edit(scene, moved_layout(scene).labels)
    assert [dtype for dtype, _ in loads] == [torch.float16]
    assert floating_dtypes([editor.model.unet, *editor.model.text_encoders]) == {torch.float16}
    assert floating_dtypes([editor.model.vae]) == {torch.float32}  # force_upcast (default)


def test_a_reload_releases_the_old_model_first(
    tiny_model_dir: Path, tmp_path: Path, half_backends: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edit in fp16, then learn in fp32 (serve and the API do this): the fp16 model is
    garbage before the fp32 one loads (it stayed referenced by the edit session)."""
    loads = _spy_loads(monkeypatch)
    editor = _editor(tiny_model_dir, tmp_path, "test-cpu-half", edit={"use_concept": False})
    scene = editor.scene(_scene_folder(tmp_path))
    editor.edit(scene, moved_layout(scene).labels)
    editor.learn(scene)
    assert [dtype for dtype, _ in loads] == [torch.float16, torch.float32]
    assert not loads[1][1], "the fp16 model was still alive when the fp32 one loaded"
    assert editor.model.unet.conv_in.weight.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loading_on_the_gpu_never_holds_fp32_weights(tiny_model_dir: Path) -> None:
    """The CUDA backend's editor loads fp16 straight onto the GPU: the peak allocation while
    loading stays at the fp16 weights (+ the fp32 VAE), not the fp32 copy's twice that."""
    from layoutedit import Editor

    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    model = Editor(model=str(tiny_model_dir), backend="cuda").model
    stored = sum(p.numel() * p.element_size() for m in model.modules for p in m.parameters())
    stored += sum(b.numel() * b.element_size() for m in model.modules for b in m.buffers())
    peak = torch.cuda.max_memory_allocated() - before
    assert floating_dtypes([model.unet]) == {torch.float16}
    assert peak <= 1.2 * stored + 2**20, f"peak {peak} B while loading {stored} B of weights"


# --- finding 9: two learns in different precisions in one process --------------------------


def test_two_learns_with_different_precision_in_one_process(tiny_model_dir: Path) -> None:
    """'no', then 'bf16', then 'fp16' (a loss scaler) in one process: accelerate's shared
    state refused the second; each now runs with its own autocast and scaler."""
    scene = shapes_scene()
    concepts = []
    for precision in ("no", "bf16", "fp16"):
        model = load_model(str(tiny_model_dir))
        cfg = TINY_LEARN.model_copy(
            update={"mixed_precision": precision, "ti_steps": 1, "ft_steps": 1}
        )
        assert learn_precision(cfg, "cpu").compute == HALF.get(precision)
        concept = learn_concept(model, scene, cfg, backend=CpuBackend()).concept
        assert all(torch.isfinite(v).all() for v in concept.kv_weights.values())
        concepts.append(concept)
    # Half-precision autocast changed the arithmetic: the learned weights are not fp32's.
    key = next(iter(concepts[0].kv_weights))
    assert not torch.equal(concepts[0].kv_weights[key], concepts[1].kv_weights[key])


# --- finding 12: a guidance gradient that overflows is skipped and counted ----------------


def test_guidance_skips_a_nonfinite_gradient_and_counts_it() -> None:
    from test_seed_batch import StubPredictor, starts, stub_guide

    from layoutedit.editing.sampling import SamplingStats
    from layoutedit.editing.seed_batch import batch_update

    guide = stub_guide()
    predict = StubPredictor(guide.store)
    timestep, cond = torch.tensor(10), torch.zeros(1, 4, 8)
    z = starts()
    z[1, 0, 0, 1] = float("inf")  # sample 1's attention (and gradient) overflow
    stats = SamplingStats()
    alone = guide.update(predict, z[1:2], 0, timestep, cond, predict.counter, stats)
    assert torch.equal(alone, z[1:2]) and stats.nonfinite_gradients == 1
    batch_stats = [SamplingStats() for _ in range(3)]
    together = batch_update(guide, predict, z, 0, timestep, cond, predict.counter, batch_stats)
    assert torch.equal(together[1], z[1])
    assert torch.isfinite(together[[0, 2]]).all()
    assert not torch.equal(together[2], z[2])  # the others were still guided
    assert [s.nonfinite_gradients for s in batch_stats] == [0, 1, 0]
