"""The refiner's recipe end to end on the tiny model: pairs from the edit pipeline, a few
training steps that resume, and an export that the model loader takes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from layoutedit.editing.refine import REFINER_EXTRA_CHANNELS
from layoutedit.loading.completer import COMPLETER_FOLDER, Completer, save_completer
from layoutedit.loading.model_loading import REFINER_FOLDER, load_model
from layoutedit.shapes import corrector_train, refiner_pairs, refiner_train


@pytest.fixture(scope="module")
def v2_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a completer (untrained): the `shapes-tiny-v2` preset asks for one."""
    folder = tmp_path_factory.mktemp("v2-model") / "model"
    shutil.copytree(tiny_model_dir, folder)
    save_completer(Completer((4, 8), side=64), folder / COMPLETER_FOLDER, {})
    return folder


@pytest.fixture(scope="module")
def pairs(v2_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pairs")
    refiner_pairs.write_shards(out, 1, "shapes-tiny-v2", str(v2_model_dir), scenes=2)
    return out


def test_pairs_are_starts_truths_and_zones_of_world_v2_cases(pairs: Path) -> None:
    start, truth, zone, prompts = refiner_train.load_pairs(pairs)
    assert start.shape == truth.shape == (4, 64, 64, 3) and zone.shape == (4, 64, 64)
    assert len(prompts) == 4 and all(prompts)
    # An edit changes part of the picture: the start is the truth outside its zone mostly,
    # and differs from it inside.
    differs = np.any(start != truth, axis=-1)
    assert 0 < zone.mean() < 1
    assert differs[zone].mean() > differs[~zone].mean()
    with safe_open(str(next(pairs.glob("pairs-*.safetensors"))), framework="pt") as fh:
        assert fh.metadata()["preset"] == "shapes-tiny-v2"


def test_training_resumes_and_exports_a_loadable_refiner(
    pairs: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    run = tmp_path / "run"
    common = ["--pairs", str(pairs), "--run-dir", str(run), "--base", str(tiny_model_dir)]
    refiner_train.main([*common, "--steps", "2", "--batch", "2"])
    assert json.loads((run / "refiner_state.json").read_text())["step"] == 2
    refiner_train.main([*common, "--steps", "3", "--batch", "2", "--export", str(model_dir)])
    assert "resumed at step 2" in (run / "train.log").read_text()
    info = json.loads((model_dir / REFINER_FOLDER / "REFINER.json").read_text())
    assert info["steps"] == 3 and info["pairs"] == 4
    model = load_model(str(model_dir))
    assert model.refiner.config.in_channels == model.latent_channels + REFINER_EXTRA_CHANNELS


def test_a_widened_unet_is_the_base_model_at_step_zero(tiny_model_dir: Path) -> None:
    import torch

    base = load_model(str(tiny_model_dir)).unet
    wide = refiner_train.widen_unet(base)
    side = base.config.sample_size
    z = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(0))
    extra = torch.randn(1, REFINER_EXTRA_CHANNELS, side, side)
    text = torch.randn(1, 16, base.config.cross_attention_dim)
    with torch.no_grad():
        a = base(z, 10, encoder_hidden_states=text).sample
        b = wide(torch.cat([z, extra], dim=1), 10, encoder_hidden_states=text).sample
    assert torch.allclose(a, b, atol=1e-5)


def test_a_pair_noised_from_the_start_teaches_the_truth_in_one_step() -> None:
    import torch
    from diffusers import DDPMScheduler

    abar = DDPMScheduler(beta_schedule="scaled_linear").alphas_cumprod
    gen = torch.Generator().manual_seed(0)
    truth, start, noise = (torch.randn(2, 4, 3, 3, generator=gen) for _ in range(3))
    t = torch.tensor([300, 600])
    from_start = torch.tensor([True, False])
    noisy, target, scale = refiner_train.noised_pairs(truth, start, noise, t, from_start, abar)
    a = abar[t][:, None, None, None]
    # Noised from the start, noised from the truth: what the edit and plain DDPM hand over.
    assert torch.allclose(noisy[0], a[0].sqrt() * start[0] + (1 - a[0]).sqrt() * noise[0])
    assert torch.allclose(noisy[1], a[1].sqrt() * truth[1] + (1 - a[1]).sqrt() * noise[1])
    # Either way, the target's one-step clean estimate is the truth.
    clean = (noisy - (1 - a).sqrt() * target) / a.sqrt()
    assert torch.allclose(clean, truth, atol=1e-5)
    assert torch.allclose(scale.flatten(), torch.stack([1 - abar[300], torch.tensor(1.0)]))


def test_training_without_pairs_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        refiner_train.main(["--pairs", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert not (tmp_path / "run").exists()


def test_a_refiner_the_recipe_did_not_write_is_kept(
    pairs: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    mine = model_dir / REFINER_FOLDER / "config.json"
    mine.parent.mkdir()
    mine.write_text("{}")
    args = ["--pairs", str(pairs), "--run-dir", str(tmp_path / "run"), "--steps", "1"]
    with pytest.raises(SystemExit) as stop:
        refiner_train.main([*args, "--export", str(model_dir)])
    assert stop.value.code == 2
    assert mine.read_text() == "{}" and not (tmp_path / "run").exists()


def test_pairs_of_another_preset_or_shard_size_are_not_resumed_into(
    pairs: Path, v2_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pairs"
    shutil.copytree(pairs, out)
    before = sorted(p.name for p in out.iterdir())
    for other in (["--preset", "fast", "--shard-scenes", "2"], ["--shard-scenes", "3"]):
        with pytest.raises(SystemExit) as stop:
            refiner_pairs.main(["--out", str(out), "--model", str(v2_model_dir), *other])
        assert stop.value.code == 2
        assert sorted(p.name for p in out.iterdir()) == before


def test_final_pairs_carry_the_finished_edit_and_its_guide_masks(
    pairs: Path, v2_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "final"
    model = str(v2_model_dir)
    refiner_pairs.write_shards(out, 1, "shapes-tiny-v2", model, stage="final", scenes=2)
    path = next(out.glob("pairs-*.safetensors"))
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata()["stage"] == "final"
        image, masks, zone = (fh.get_tensor(k).numpy() for k in ("start", "masks", "zone"))
    start, _, _, _ = refiner_train.load_pairs(pairs)
    assert masks.shape == (4, 4, 64, 64)
    assert np.array_equal(masks[:, 0], zone)  # the first guide mask is the zone
    # The same scenes' finished images are not their starts (the post-passes ran).
    assert not np.array_equal(image, start)
    assert refiner_pairs.shard_stages(out) == {"final"}
    assert refiner_pairs.shard_stages(pairs) == {"start"}
    # Neither recipe takes the other's pairs; neither stage resumes into the other's folder.
    with pytest.raises(SystemExit) as stop:
        refiner_train.main(["--pairs", str(out), "--run-dir", str(tmp_path / "run")])
    assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:
        refiner_pairs.main(["--out", str(pairs), "--stage", "final", "--model", str(v2_model_dir)])
    assert stop.value.code == 2


def test_full_pairs_carry_the_models_edit_on_the_same_starts(
    pairs: Path, v2_model_dir: Path, tmp_path: Path
) -> None:
    final, full = tmp_path / "final", tmp_path / "full"
    model = str(v2_model_dir)
    refiner_pairs.write_shards(final, 1, "shapes-tiny-v2", model, stage="final", scenes=1)
    refiner_pairs.write_shards(full, 1, "shapes-tiny-v2", model, stage="full", scenes=1)
    arrays = {}
    for name, folder in (("final", final), ("full", full)):
        with safe_open(str(next(folder.glob("pairs-*.safetensors"))), framework="pt") as fh:
            assert fh.metadata()["stage"] == name
            arrays[name] = {k: fh.get_tensor(k).numpy() for k in ("start", "truth", "masks")}
    # The same cases (truths) and starts (the guide masks of the pasted objects, the
    # hidden zone and the shadows), but the model's steps ran: other finished images.
    assert np.array_equal(arrays["final"]["truth"], arrays["full"]["truth"])
    assert np.array_equal(arrays["final"]["masks"][:, 1:], arrays["full"]["masks"][:, 1:])
    assert not np.array_equal(arrays["final"]["start"], arrays["full"]["start"])
    # The corrector's recipe takes both stages, one as the main pairs and one as more.
    run = tmp_path / "run"
    args = ["--pairs", str(full), "--more-pairs", str(final), "--run-dir", str(run)]
    corrector_train.main([*args, "--held-out", "1", "--batch", "4", "--steps", "2"])
    log = (run / "train.log").read_text()
    assert "1 training pairs, 1 held out" in log and "2 more training pairs" in log
