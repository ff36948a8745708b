"""The shapes-tiny recipe runs, exports a loadable model, and resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from layoutedit.loading.model_loading import load_model
from layoutedit.shapes.train import main


def _args(run: Path, out: Path, unet_steps: int) -> list[str]:
    return [
        "--run-dir", str(run), "--export", str(out), "--size", "test-tiny",
        "--scenes", "8", "--vae-steps", "3", "--vae-batch", "2",
        "--unet-steps", str(unet_steps), "--unet-batch", "2", "--threads", "1",
    ]  # fmt: skip


def test_recipe_exports_a_loadable_model_and_resumes(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "model"
    main(_args(run, out, unet_steps=2))
    first = json.loads((out / "TRAINING.json").read_text())
    assert first["unet_steps"] == 2
    model = load_model(str(out))
    # The editor's encoder hands the UNet latents at the scale it was trained on: a training
    # image encodes to its training latent. The latents were encoded in one batch and these
    # one by one, which moves float32 sums by up to ~1e-3 on some CPUs; a wrong scale (the
    # old 0.75) moves them by a quarter of their size (latents here reach about 2).
    images = np.load(run / "train.npz")["images"]
    trained_on = load_file(str(run / "latents.safetensors"))["latents"]
    encoded = torch.cat([model.encode_image(image) for image in images])
    torch.testing.assert_close(encoded, trained_on, rtol=0, atol=5e-3)
    vae_before = (run / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()

    main(_args(run, out, unet_steps=4))
    assert json.loads((run / "unet_state.json").read_text())["step"] == 4
    assert json.loads((out / "TRAINING.json").read_text())["unet_steps"] == 4
    # The finished VAE phase is not run again.
    assert (run / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == vae_before
    image = load_model(str(out)).decode_latents(torch.zeros(1, 4, 16, 16))
    assert image.shape == (1, 64, 64, 3)


def test_training_continues_from_an_exported_model(tmp_path: Path) -> None:
    first, out = tmp_path / "first", tmp_path / "model"
    main(_args(first, out, unet_steps=2))
    vae = (out / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    second, out2 = tmp_path / "second", tmp_path / "model2"
    main([*_args(second, out2, unet_steps=3), "--init-from", str(out)])
    # One more step on top of the model's two; its VAE is reused, not retrained.
    assert json.loads((out2 / "TRAINING.json").read_text())["unet_steps"] == 3
    assert "unet step 2 " in (second / "train.log").read_text()
    assert "vae step" not in (second / "train.log").read_text()
    # The settings of every invocation travel with the model, the first model's included.
    history = json.loads((out2 / "TRAINING.json").read_text())["history"]
    assert [h["from_step"] for h in history] == [0, 2]
    assert history[1]["init_from"] == str(out) and history[0]["unet_steps"] == 2
    assert (out2 / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == vae


def test_one_pass_makes_the_same_images_and_truth_and_caches_them(tmp_path: Path) -> None:
    import numpy as np

    from layoutedit.shapes.dataset import load_or_generate, load_or_generate_both, pooled_covers
    from layoutedit.shapes.world import sample_scene

    images_path, truth_path = tmp_path / "train.npz", tmp_path / "truth.npz"
    (images, captions), (covers, phrases) = load_or_generate_both(
        images_path, truth_path, 500, 3, workers=1
    )
    scene = sample_scene(501)
    assert np.array_equal(images[1], scene.image) and captions[1] == scene.caption
    assert np.array_equal(covers[1, : len(scene.objects)], pooled_covers(scene.masks, 16))
    assert phrases[1] == [o.phrase for o in scene.objects]
    # The image cache is the one `load_or_generate` reads (the decoder fine-tune's).
    again, _ = load_or_generate(images_path, 500, 3)
    assert np.array_equal(again, images)
    stamp = truth_path.stat().st_mtime_ns
    load_or_generate_both(images_path, truth_path, 500, 3, workers=1)
    assert truth_path.stat().st_mtime_ns == stamp  # read back, not made again
