"""The decoder fine-tune of the embedded model: only the decoder moves, so every latent the
UNet and the concepts know stays as it was; it resumes, and exports a loadable model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from layoutedit.loading.model_loading import load_model
from layoutedit.shapes.decoder_finetune import main

VAE_FILE = Path("vae") / "diffusion_pytorch_model.safetensors"


def _args(model: Path, run: Path, out: Path, steps: int) -> list[str]:
    return [
        "--model", str(model), "--run-dir", str(run), "--export", str(out),
        "--scenes", "4", "--steps", str(steps), "--batch", "2", "--lr", "1e-2",
    ]  # fmt: skip


def test_only_the_decoder_moves_and_the_run_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "model"
    main(_args(tiny_model_dir, run, out, steps=2))
    before, after = load_file(str(tiny_model_dir / VAE_FILE)), load_file(str(out / VAE_FILE))
    assert before.keys() == after.keys()
    encoder = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    decoder = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert encoder and decoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    # The latent space is the same: a source encodes to the very same latent.
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    original, tuned = load_model(str(tiny_model_dir)), load_model(str(out))
    # Same encoder weights loaded from two folders: equal to float32 rounding.
    torch.testing.assert_close(
        original.encode_image(image), tuned.encode_image(image), rtol=1e-5, atol=1e-5
    )
    latent = torch.ones(1, 4, 16, 16)
    assert not np.array_equal(original.decode_latents(latent), tuned.decode_latents(latent))
    history = json.loads((out / "TRAINING.json").read_text())["history"]
    assert history[-1]["stage"].startswith("decoder fine-tune") and history[-1]["steps"] == 2

    main(_args(tiny_model_dir, run, out, steps=3))
    log = (run / "train.log").read_text()
    assert "resumed at step 2" in log and "decoder step 2 " in log
    assert json.loads((run / "decoder_state.json").read_text())["step"] == 3


def test_a_wrong_model_folder_is_a_usage_error_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from layoutedit.shapes.evaluate import main as evaluate_main
    from layoutedit.shapes.train import main as train_main

    missing = str(tmp_path / "no-model")
    run = tmp_path / "run"
    calls = [
        lambda: main(["--model", missing, "--run-dir", str(run)]),
        lambda: train_main(["--init-from", missing, "--run-dir", str(run)]),
        lambda: evaluate_main(["--model", missing]),
    ]
    for call in calls:
        with pytest.raises(SystemExit) as info:
            call()
        assert info.value.code == 2
        assert "not a model folder (no model_index.json)" in capsys.readouterr().err
    assert not run.exists()  # nothing generated, nothing written
