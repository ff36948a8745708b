"""The embedded model: under the size limit, loaded by the normal loader, and it draws what
a caption names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import layoutedit
from layoutedit.loading.model_loading import load_model
from layoutedit.shapes.dataset import HELDOUT_SEED_BASE
from layoutedit.shapes.evaluate import colour_name_map, true_image_attention_share
from layoutedit.shapes.world import COLOUR_NAMES, sample_scene

MODEL_DIR = Path(layoutedit.__file__).parent / "models" / "shapes-tiny"
pytestmark = pytest.mark.skipif(
    not (MODEL_DIR / "model_index.json").exists(), reason="embedded model not built"
)


def test_embedded_model_is_small_and_loads_by_its_builtin_name() -> None:
    size = sum(p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file())
    assert size < 25 * 2**20
    model = load_model("builtin:shapes-tiny")
    assert (model.image_size, model.latent_size) == (64, 16)
    assert model.max_length == 24
    # Every weight file is safetensors: nothing to unpickle.
    assert not [p for p in MODEL_DIR.rglob("*") if p.suffix in (".bin", ".pt", ".ckpt")]


@pytest.mark.parametrize("colour", ["red", "blue", "yellow"])
def test_embedded_model_draws_the_named_colour(colour: str) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(MODEL_DIR)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        [f"a {colour} circle on a white background"] * 4,
        num_inference_steps=50,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    names = colour_name_map((images * 255).round().astype(np.uint8))
    share = (names == list(COLOUR_NAMES).index(colour)).mean(axis=(1, 2))
    # A circle of the world's sizes covers 4-20 % of the image; ask for a clear trace of it.
    # The small model misses now and then (see its quality gate): most samples, not all.
    assert (share > 0.01).sum() >= 3, share


def test_embedded_model_words_attend_to_their_objects() -> None:
    # Layout guidance moves an object by moving its word's attention, so the words must
    # attend to their objects: the 4,000-step model without the attention loss scored 0.08
    # here, the shipped one 0.9.
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(MODEL_DIR)
    scenes = [sample_scene(HELDOUT_SEED_BASE + i) for i in range(8)]
    assert true_image_attention_share(pipe, scenes) > 0.5
