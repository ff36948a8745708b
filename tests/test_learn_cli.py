"""`layoutedit learn` end to end on the tiny model (real loader, real cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.learning.concept import Concept
from layoutedit.shapes.world import sample_scene, write_scene_folder

# Tiny ops: one intra-op thread is much faster on a busy 2-core machine.

STEPS = ["--ti-steps", "2", "--ft-steps", "2"]


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    return write_scene_folder(sample_scene(5, 2), tmp_path / "scene")


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


def test_learn_scene_then_cache_hit(tiny_model_dir: Path, scene_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        [
            "--model",
            str(tiny_model_dir),
            "learn",
            str(scene_dir),
            "--preset",
            "fast",
            *STEPS,
            "--out",
            str(out),
        ]
    )
    assert code == 0, stderr
    assert "learned" in stdout and "UNet evaluations" in stdout
    concept = Concept.load(out / "concept")
    assert concept.extra_tokens == ("<new0>", "<new1>")
    assert concept.meta["learn_config"]["ti_joint"] is True  # from the fast preset
    assert concept.meta["learn_config"]["ti_steps"] == 2  # flag over preset
    files = {p.name for p in (out / "diffusers").iterdir()}
    assert "pytorch_custom_diffusion_weights.safetensors" in files
    assert sum(f.startswith("learned_embeds-") for f in files) == len(concept.all_tokens)
    assert "Loading" not in stderr and "torchvision" not in stderr  # library noise is off

    code, stdout, _ = _run(
        [
            "--model",
            str(tiny_model_dir),
            "--json",
            "learn",
            str(scene_dir),
            "--preset",
            "fast",
            *STEPS,
        ]
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["cached"] is True
    assert summary["unet_evals"] == concept.meta["unet_evals"]
    assert summary["tokens"] == list(concept.all_tokens)
    shares = summary["attention_shares"]
    assert sorted(shares) == sorted(concept.meta["names"])
    assert all(0.0 <= v <= 1.0 for v in shares.values())


def test_learn_from_image_mask_labels(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "learn.toml"
    config.write_text("[learn]\nti_batch_size = 1\nft_batch_size = 1\nti_joint = true\n")
    code, stdout, stderr = _run(
        [
            "--model",
            str(tiny_model_dir),
            "--json",
            "learn",
            "--image",
            str(scene_dir / "image.png"),
            "--mask",
            str(scene_dir / "mask.png"),
            "--labels",
            str(scene_dir / "semantic_dict.json"),
            "--config",
            str(config),
            *STEPS,
        ]
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    # Joint TI: 2 steps x batch 1, then the fine-tune: 2 steps x batch 1.
    assert summary["unet_evals"]["forward"] == 4
    assert summary["cached"] is False


def test_learn_seed_sample(tiny_model_dir: Path, seed_sample: Path, tmp_path: Path) -> None:
    # The 512 px published sample is resized to the tiny model's 64 px.
    code, stdout, stderr = _run(
        [
            "--model",
            str(tiny_model_dir),
            "--json",
            "learn",
            str(seed_sample),
            "--ti-steps",
            "1",
            "--ft-steps",
            "1",
            "--joint",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0, stderr
    assert json.loads(stdout)["tokens"] == ["<cat>", "<pot>", "<plant>", "<new0>", "<new1>"]
    assert Concept.load(tmp_path / "o" / "concept").meta["image_size"] == 64


def test_user_errors_are_one_line(tiny_model_dir: Path, scene_dir: Path, tmp_path: Path) -> None:
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"x")
    code, _, stderr = _run(["--model", str(pickle), "learn", str(scene_dir)])
    assert code == 2 and "--allow-pickle" in stderr and "Traceback" not in stderr
    code, _, stderr = _run(["--model", str(tmp_path / "none"), "learn", str(scene_dir)])
    assert code == 2 and "model not found" in stderr
    code, _, stderr = _run(["--model", str(tiny_model_dir), "learn"])
    assert code == 2 and "--image" in stderr
    code, _, stderr = _run(
        ["--model", str(tiny_model_dir), "learn", str(scene_dir), "--preset", "slow"]
    )
    assert code == 2 and "unknown preset" in stderr


def test_help_shows_defaults_and_an_example() -> None:
    code, stdout, _ = _run(["learn", "--help"])
    assert code == 0
    text = " ".join(stdout.split())
    assert "Example: layoutedit learn" in text
    assert "[default: 200]" in text and "[default: 800]" in text
