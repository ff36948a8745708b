"""Model loading on the tiny random model, through the real loaders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from layoutedit.errors import UserError
from layoutedit.loading import model_loading
from layoutedit.loading.fingerprint import MEMO_FILE
from layoutedit.loading.model_loading import LoadedModel, load_model
from layoutedit.loading.single_file import export_single_file

# Tiny ops: one intra-op thread is much faster on a busy 2-core machine.


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("fp"))


def _unet_out(model: LoadedModel, prompt: str = "a red circle") -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, model.latent_channels, model.latent_size, model.latent_size, generator=gen)
    with torch.no_grad():
        return model.unet(x, 500, model.encode_prompts([prompt])).sample


def test_shapes_are_read_from_the_model(tiny: LoadedModel) -> None:
    # TEST_TINY: 16x16 latents, 4x VAE, 2 heads, 16 tokens; nothing is assumed (77, 8).
    assert tiny.latent_size == 16
    assert tiny.vae_scale_factor == 4
    assert tiny.image_size == 64
    assert tiny.max_length == 16
    assert tiny.prediction_type == "epsilon"
    assert set(tiny.attention_heads.values()) == {2}
    sides = {layer.query_side for layer in tiny.cross_attention_layers}
    assert sides == {16, 8, 4}
    names = set(tiny.unet.attn_processors)
    assert all(layer.processor_name in names for layer in tiny.cross_attention_layers)
    assert tiny.encode_prompts(["a red circle", "a"]).shape == (2, 16, 16)
    assert len(tiny.fingerprint) == 64


def test_other_head_count_and_length(tmp_path: Path) -> None:
    from dataclasses import replace

    from layoutedit.shapes.architecture import TEST_TINY, build_pipeline_folder

    folder = build_pipeline_folder(tmp_path / "m", replace(TEST_TINY, heads=4, max_length=20))
    model = load_model(str(folder), cache_dir=tmp_path)
    assert set(model.attention_heads.values()) == {4}
    assert model.max_length == 20
    assert model.encode_prompts(["a"]).shape == (1, 20, 16)


def test_encode_decode_shapes(tiny: LoadedModel) -> None:
    image = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    latent = tiny.encode_image(image)  # resized to the model's 64 px first
    assert latent.shape == (1, 4, 16, 16)
    decoded = tiny.decode_latents(latent)
    assert decoded.shape == (1, 64, 64, 3) and decoded.dtype == np.uint8
    with pytest.raises(ValueError, match="square"):
        tiny.encode_image(image[:, :100])


def test_fingerprint_is_stable_memoised_and_content_based(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    first = load_model(str(copy), cache_dir=tmp_path)
    assert (tmp_path / MEMO_FILE).exists()
    # Same bytes elsewhere: same fingerprint (names are relative).
    assert load_model(str(tiny_model_dir), cache_dir=tmp_path).fingerprint == first.fingerprint
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(weights)
    key = next(iter(state))
    state[key] = state[key] + 1.0
    save_file(state, weights)
    assert load_model(str(copy), cache_dir=tmp_path).fingerprint != first.fingerprint


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickle_file_is_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not really a pickle")
    with pytest.raises(UserError, match="--allow-pickle") as info:
        load_model(str(path))
    assert info.value.path == path


def test_folder_with_only_pickle_weights_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_model_dir, tmp_path / "m")
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(UserError, match="--allow-pickle"):
        load_model(str(copy))


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model not found"):
        load_model(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="not a diffusers model folder"):
        load_model(str(empty))


def test_repo_id_missing_from_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match="huggingface-cli download someone/missing-model"):
        load_model("someone/missing-model")


def test_repo_id_from_local_hf_cache(
    tiny_model_dir: Path, tiny: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hub cache layout: models--ORG--NAME/{refs/main, snapshots/<commit>/...}.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--shapes--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model = load_model("shapes/tiny", cache_dir=tmp_path)
    assert model.path == repo / "snapshots" / commit
    assert model.fingerprint == tiny.fingerprint
    torch.testing.assert_close(_unet_out(model), _unet_out(tiny), rtol=0, atol=0)


def test_builtin_model_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_loading, "BUILTIN_ROOT", tmp_path)
    with pytest.raises(UserError, match="make model"):
        load_model("builtin:shapes-tiny")


def test_builtin_model_resolves_to_package_folder(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / "shapes-tiny")
    monkeypatch.setattr(model_loading, "BUILTIN_ROOT", tmp_path)
    model = load_model("builtin:shapes-tiny", cache_dir=tmp_path)
    assert model.path == tmp_path / "shapes-tiny" and model.spec == "builtin:shapes-tiny"


def test_single_file_round_trip(tiny: LoadedModel, tiny_model_dir: Path, tmp_path: Path) -> None:
    file = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.safetensors"]  # no temp leftovers
    model = load_model(str(file), cache_dir=tmp_path)
    assert model.max_length == tiny.max_length and model.latent_size == tiny.latent_size
    assert model.scheduler_config["prediction_type"] == "epsilon"
    ids = model.tokenizer("a red circle").input_ids
    assert ids == tiny.tokenizer("a red circle").input_ids
    torch.testing.assert_close(_unet_out(model), _unet_out(tiny), rtol=0, atol=0)
    image = np.full((64, 64, 3), 120, dtype=np.uint8)
    torch.testing.assert_close(model.encode_image(image), tiny.encode_image(image))


def test_original_checkpoint_without_config_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    path = tmp_path / "sd.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3)}, path)
    with pytest.raises(UserError, match="--model-config"):
        load_model(str(path))
    not_a_config = tmp_path / "cfg"
    not_a_config.mkdir()
    with pytest.raises(UserError, match=r"model_index\.json"):
        load_model(str(path), model_config=not_a_config)
