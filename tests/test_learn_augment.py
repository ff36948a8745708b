"""Shift augmentation while learning: what moves, what counts in the loss, what stays."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layoutedit.config import LearnConfig
from layoutedit.learning.concept_store import learn_key_config
from layoutedit.learning.learn import learn_concept
from layoutedit.learning.training import shifted_batch
from layoutedit.loading.model_loading import load_model
from layoutedit.scenes.scene import load_scene
from layoutedit.shapes.world import sample_scene, write_scene_folder

TINY = LearnConfig(ti_steps=2, ti_batch_size=2, ft_steps=2, ft_batch_size=2, checkpoint_every=0)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    z0 = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    masks = torch.zeros(2, 2, 8, 8)
    masks[:, 0, 2:4, 2:4] = 1.0
    masks[:, 1, 5:7, 5:7] = 1.0
    return z0, masks


def test_no_shift_changes_nothing_and_draws_nothing() -> None:
    z0, masks = _batch()
    generator = torch.Generator().manual_seed(5)
    before = generator.get_state()
    out = shifted_batch(z0, masks, 0.0, generator)
    assert torch.equal(out.z0, z0) and torch.equal(out.masks, masks)
    assert bool((out.valid == 1).all())
    assert torch.equal(generator.get_state(), before)  # later draws are those of no shift


def test_a_shift_moves_latent_and_masks_together_and_marks_the_padding() -> None:
    z0, masks = _batch()
    out = shifted_batch(z0, masks, 0.25, torch.Generator().manual_seed(1))  # up to 2 px
    for b in range(2):
        ys, xs = torch.nonzero(out.masks[b, 0], as_tuple=True)
        assert ys.numel() == 4  # object 0 (at 2..3) stays whole in frame
        dy, dx = int(ys.min()) - 2, int(xs.min()) - 2
        assert torch.equal(out.z0[b, :, 2 + dy, 2 + dx], z0[b, :, 2, 2])  # moved with it
        inside = out.valid[b, 0].bool()
        assert int(inside.sum()) == (8 - abs(dy)) * (8 - abs(dx))
        assert not bool(out.masks[b][:, ~inside].any())  # nothing learned from the padding
    assert not torch.equal(out.z0, z0)


def test_the_default_leaves_the_cache_key_as_before_the_setting_existed(
    tmp_path: Path,
) -> None:
    scene = load_scene(write_scene_folder(sample_scene(3, 2), tmp_path / "s"))
    assert "augment_shift" not in learn_key_config(TINY, scene)
    shifted = TINY.model_copy(update={"augment_shift": 0.25})
    assert learn_key_config(shifted, scene)["augment_shift"] == 0.25


@pytest.mark.parametrize("shift", [0.25])
def test_learning_with_shifts_learns_another_concept(
    tiny_model_dir: Path, tmp_path: Path, shift: float
) -> None:
    scene_dir = write_scene_folder(sample_scene(3, 2), tmp_path / "s")
    rows = {}
    for value in (0.0, shift):
        model = load_model(str(tiny_model_dir), cache_dir=tmp_path / str(value))
        scene = load_scene(scene_dir, latent_size=model.latent_size)
        concept = learn_concept(
            model, scene, TINY.model_copy(update={"augment_shift": value})
        ).concept
        rows[value] = torch.cat([v.flatten() for v in concept.embeddings.values()])
    assert not torch.allclose(rows[0.0], rows[shift])
