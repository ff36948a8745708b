"""Paths real models take: v-prediction (SD 2.x) end to end, and the low-memory setting
(SDXL: tests/test_sdxl.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from edit_support import fast_config, moved_layout, shapes_scene

from layoutedit.backend import get_backend
from layoutedit.config import LearnConfig
from layoutedit.editing.denoising import scheduler_pair
from layoutedit.editing.session import edit
from layoutedit.learning.finetune import kv_parameters
from layoutedit.learning.learn import learn_concept
from layoutedit.learning.low_memory import frozen_dtype, store_frozen
from layoutedit.learning.tokens import embedding_table
from layoutedit.learning.training import noisy_batch, training_scheduler
from layoutedit.loading.model_loading import load_model
from layoutedit.shapes.architecture import TEST_TINY, build_pipeline_folder

TINY_LEARN = LearnConfig(
    ti_steps=2, ti_batch_size=1, ti_joint=True, ft_steps=2, ft_batch_size=1, checkpoint_every=0
)


@pytest.fixture(scope="module")
def v_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random pipeline with a v-prediction scheduler (the SD 2.x 768 px setting)."""
    folder = build_pipeline_folder(tmp_path_factory.mktemp("v-model") / "model", TEST_TINY)
    path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config["prediction_type"] = "v_prediction"
    path.write_text(json.dumps(config))
    return folder


def test_v_prediction_learns_against_the_velocity(v_model_dir: Path) -> None:
    model = load_model(str(v_model_dir))
    assert model.prediction_type == "v_prediction"
    scheduler = training_scheduler(model)
    z0 = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    _, t, target = noisy_batch(model, scheduler, z0, torch.Generator().manual_seed(1))
    noise = torch.randn(2, 4, 16, 16, generator=_after_timesteps(2))
    assert torch.allclose(target, scheduler.get_velocity(z0, noise, t))
    sampler, inverter = scheduler_pair(model.scheduler_config, 5)
    assert sampler.config.prediction_type == inverter.config.prediction_type == "v_prediction"


def _after_timesteps(batch: int) -> torch.Generator:
    """The generator of `noisy_batch` after its timestep draw (same seed, same order)."""
    gen = torch.Generator().manual_seed(1)
    torch.randint(0, 1000, (batch,), generator=gen)
    return gen


def test_v_prediction_model_learns_and_edits_end_to_end(v_model_dir: Path) -> None:
    model = load_model(str(v_model_dir))
    scene = shapes_scene()
    backend = get_backend("cpu")
    before = {k: v.clone() for k, v in kv_parameters(model).items()}
    result = learn_concept(model, scene, TINY_LEARN, backend=backend)
    changed = [not torch.equal(before[k], v) for k, v in result.concept.kv_weights.items()]
    assert any(changed), "the K/V fine-tune did not move on a v-prediction model"
    [out] = edit(
        model,
        scene,
        [moved_layout(scene)],
        fast_config(use_concept=True),
        backend,
        concept=result.concept,
    )
    image = out.candidates[0].image
    assert image.shape == scene.image.shape and image.dtype == np.uint8
    assert np.isfinite(out.candidates[0].loss)
    assert out.unet_evaluations["inversion"]["forward"] == 6  # blending inverted the source


def test_low_memory_learning_checkpoints_and_still_learns(tiny_model_dir: Path) -> None:
    model = load_model(str(tiny_model_dir))
    scene = shapes_scene()
    before = {k: v.clone() for k, v in kv_parameters(model).items()}
    cfg = TINY_LEARN.model_copy(update={"low_memory": True})
    backend = get_backend("cpu")
    result = learn_concept(model, scene, cfg, backend=backend)
    assert model.unet.is_gradient_checkpointing
    assert any(not torch.equal(before[k], v) for k, v in result.concept.kv_weights.items())
    # The same model edits next: checkpointing must be off again for the guidance pass (with
    # a fused idle kernel, a recomputation would not match the recorded forward).
    config = fast_config(use_concept=True)
    fused = get_backend("cpu-fast")
    [out] = edit(model, scene, [moved_layout(scene)], config, fused, concept=result.concept)
    assert not model.unet.is_gradient_checkpointing
    assert np.isfinite(out.candidates[0].loss)


def test_low_memory_stores_frozen_weights_in_the_mixed_precision(tiny_model_dir: Path) -> None:
    assert frozen_dtype(LearnConfig(low_memory=True)) is None  # no mixed precision: as loaded
    assert frozen_dtype(LearnConfig(mixed_precision="bf16")) is None  # low_memory off
    cfg = LearnConfig(low_memory=True, mixed_precision="bf16")
    assert frozen_dtype(cfg) == torch.bfloat16
    model = load_model(str(tiny_model_dir))
    store_frozen(model, torch.bfloat16)
    assert model.unet.conv_in.weight.dtype == torch.bfloat16
    # The VAE follows its config's force_upcast (diffusers' default, True): fp32.
    assert model.vae.decoder.conv_out.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in kv_parameters(model).values())
    # The tables are frozen (their learned rows train apart, as fp32 parameters).
    assert embedding_table(model).weight.dtype == torch.bfloat16
    from layoutedit.learning.trained_rows import TrainedRows

    assert TrainedRows.for_ids([embedding_table(model)], [[0, 1]]).params[0].dtype == torch.float32


def test_learn_low_memory_flag_reaches_the_concept(tiny_model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from layoutedit.cli.app import app
    from layoutedit.learning.concept import Concept
    from layoutedit.learning.low_memory import learn_overrides
    from layoutedit.shapes.world import sample_scene, write_scene_folder

    assert learn_overrides("cpu") == {"low_memory": True}  # fp16 storage is for CUDA only
    scene_dir = write_scene_folder(sample_scene(5, 2), tmp_path / "scene")
    args = ["--model", str(tiny_model_dir), "learn", str(scene_dir), "--preset", "fast"]
    steps = ["--ti-steps", "2", "--ft-steps", "2", "--low-memory", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, *steps])
    assert result.exit_code == 0, result.output
    config = Concept.load(tmp_path / "o" / "concept").meta["learn_config"]
    assert config["low_memory"] is True and config["mixed_precision"] == "no"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_low_memory_learning_on_the_gpu(tiny_model_dir: Path) -> None:
    """The CUDA-only part of low_memory: fp16 frozen weights, fp32 trained ones, fp16
    autocast and gradient checkpointing together (run by `make gpu-check`)."""
    model = load_model(str(tiny_model_dir), device="cuda")
    scene = shapes_scene()
    before = {k: v.clone() for k, v in kv_parameters(model).items()}
    cfg = TINY_LEARN.model_copy(update={"low_memory": True, "mixed_precision": "fp16"})
    result = learn_concept(model, scene, cfg, backend=get_backend("cuda"))
    assert model.unet.conv_in.weight.dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in kv_parameters(model).values())
    after = result.concept.kv_weights
    assert any(not torch.equal(before[k].cpu(), v) for k, v in after.items())
    assert all(torch.isfinite(v).all() for v in after.values())
