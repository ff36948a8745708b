"""The placeholder attention loss while learning, the raw token maps of the guidance, and the
attention share that `learn` reports."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import torch

from layoutedit.config import LearnConfig
from layoutedit.editing.guidance import object_losses
from layoutedit.learning.learn import learn_concept
from layoutedit.learning.training import placeholder_attention_loss
from layoutedit.loading.model_loading import load_model
from layoutedit.scenes.scene import load_scene
from layoutedit.shapes.world import sample_scene, write_scene_folder

TINY = LearnConfig(ti_steps=2, ti_batch_size=1, ft_steps=2, ft_batch_size=1, checkpoint_every=0)


def _recorder(probs: torch.Tensor) -> Any:
    """A predictor stand-in whose recorder holds one layer's probabilities."""
    return cast(Any, SimpleNamespace(recorder=SimpleNamespace(probs=[probs])))


def test_attention_on_the_mask_costs_nothing_and_off_it_costs_one() -> None:
    side, tokens = 4, 6
    mask = torch.zeros(1, 1, side, side)
    mask[0, 0, :2, :2] = 1.0
    on = torch.zeros(1, 2, side * side, tokens)  # (B, heads, Q, T)
    on[:, :, :, 0] = 1.0  # the start token everywhere ...
    on[:, :, [0, 1, 4, 5], 3] = 1.0  # ... and token 3 only on the mask's 4 cells
    assert float(placeholder_attention_loss(_recorder(on), mask, [[3]])) == pytest.approx(0.0)
    off = torch.zeros_like(on)
    off[:, :, [10, 11, 14, 15], 3] = 1.0
    assert float(placeholder_attention_loss(_recorder(off), mask, [[3]])) == pytest.approx(1.0)
    # prior-preservation samples after the instance batch are not scored
    doubled = torch.cat([on, off])
    assert float(placeholder_attention_loss(_recorder(doubled), mask, [[3]])) == pytest.approx(0)


def test_raw_token_maps_keep_a_placeholder_that_punctuation_outweighs() -> None:
    res = 4
    maps = torch.zeros(res, res, 5)
    maps[:, :, 2] = 0.5  # a comma takes most mass everywhere
    maps[:2, :2, 1] = 0.002  # the placeholder: little mass, all of it on its object
    region = torch.zeros(1, res, res)
    region[0, :2, :2] = 1.0
    published = object_losses(maps, [1], region, last=4, token_softmax=True)
    raw = object_losses(maps, [1], region, last=4, token_softmax=False)
    assert float(raw[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(published[0]) > 0.6  # the x100 softmax leaves it a near-uniform map


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scene_folder(sample_scene(3, 2), tmp_path_factory.mktemp("scene") / "s")


def test_learning_with_the_attention_loss_changes_the_concept_and_restores_processors(
    tiny_model_dir: Path, scene_dir: Path
) -> None:
    concepts = []
    for weight in (0.0, 50.0):
        model = load_model(str(tiny_model_dir))
        scene = load_scene(scene_dir, latent_size=model.latent_size)
        before = {n: type(p) for n, p in model.unet.attn_processors.items()}
        cfg = TINY.model_copy(update={"attention_loss_weight": weight, "ft_train_tokens": True})
        concept = learn_concept(model, scene, cfg).concept
        after = {n: type(p) for n, p in model.unet.attn_processors.items()}
        assert after == before  # the recording processors of the loss are gone again
        shares = concept.meta["attention_shares"]
        assert set(shares) == set(scene.names)
        assert all(0.0 <= v <= 1.0 for v in shares.values())
        concepts.append(concept)
    plain, supervised = concepts
    token = plain.tokens[0]
    assert not torch.allclose(plain.embeddings[token], supervised.embeddings[token])
