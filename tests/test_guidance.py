"""The out-of-region loss, its schedule, and one guided update on the tiny model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from edit_support import fast_config, load_tiny, moved_layout, shapes_scene

from layoutedit.backend import get_backend
from layoutedit.counting import UNetCounter
from layoutedit.editing.guidance import (
    guidance_active,
    object_losses,
    refinement_target,
    step_sizes,
    text_attention,
    total_loss,
)
from layoutedit.editing.session import EditSession


def _maps(res: int, tokens: int, hot: dict[int, tuple[slice, slice]]) -> torch.Tensor:
    """(res, res, T) maps where token j holds the attention inside its window and token 1
    (a filler word) everywhere else."""
    maps = torch.zeros(res, res, tokens)
    maps[:, :, 1] = 1.0
    for token, (rows, cols) in hot.items():
        maps[rows, cols, token] = 1.0
        maps[rows, cols, 1] = 0.0
    return maps


def test_text_attention_drops_start_and_end_and_renormalises() -> None:
    maps = torch.rand(4, 4, 8)
    text = text_attention(maps, last=5, softmax_scale=100.0)
    assert text.shape == (4, 4, 4)  # tokens 1..4
    torch.testing.assert_close(text.sum(-1), torch.ones(4, 4))
    torch.testing.assert_close(text, torch.softmax(maps[:, :, 1:5] * 100, -1))
    with pytest.raises(ValueError):
        text_attention(maps, last=1, softmax_scale=1.0)


def test_loss_is_zero_inside_and_one_outside() -> None:
    res = 8
    maps = _maps(res, 6, {2: (slice(0, 4), slice(0, 4)), 4: (slice(4, 8), slice(4, 8))})
    inside = torch.zeros(2, res, res)
    inside[0, :4, :4] = 1
    inside[1, 4:, 4:] = 1
    losses = object_losses(maps, [2, 4], inside, last=5)
    assert losses.shape == (2,)
    assert torch.all(losses < 1e-3)
    swapped = inside.flip(0)  # each object's region where the other one is
    far = object_losses(maps, [2, 4], swapped, last=5)
    assert torch.all(far > 0.99)
    assert total_loss(far) == pytest.approx(far.mean() + far.max())


def test_loss_matches_the_formula_on_a_hand_example() -> None:
    maps = torch.rand(2, 2, 5)
    region = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    sharp = torch.softmax(maps[:, :, 1:4] * 3.0, -1)[:, :, 1]  # token 2 -> index 1
    expected = 1 - sharp[0, 0] / sharp.sum()
    got = object_losses(maps, [2], region, last=4, softmax_scale=3.0)
    torch.testing.assert_close(got, expected.reshape(1))
    with pytest.raises(ValueError, match="outside"):
        object_losses(maps, [4], region, last=4)


def test_step_sizes_refinement_and_activity() -> None:
    sizes = step_sizes(50, 20.0, (1.0, 0.5))
    assert len(sizes) == 50
    assert sizes[0] == pytest.approx(20.0)
    assert sizes[-1] == pytest.approx(20.0 * math.sqrt(0.5))
    assert all(a > b for a, b in itertools.pairwise(sizes))
    assert step_sizes(1, 2.0, (1.0, 0.5)) == [2.0]
    assert refinement_target({0: 0.6, 10: 0.7}, 10) == pytest.approx(0.3)
    assert refinement_target({0: 0.6}, 3) is None
    assert guidance_active(4, 20.0, 5) and not guidance_active(5, 20.0, 5)
    assert not guidance_active(0, 0.0, 25)


def test_one_guided_update_lowers_the_attention_loss(tiny_model_dir: Path) -> None:
    """On the tiny random model: z - s * grad has a lower out-of-region loss than z."""
    model = load_tiny(tiny_model_dir)
    scene = shapes_scene()
    layout = moved_layout(scene)
    session = EditSession(model, scene, fast_config(), get_backend("cpu"))
    guide = session._guide(layout)
    counter = UNetCounter()
    runner = session._runner(counter)
    z = session.start_noise(0)
    t = session.sampler.timesteps[0]
    before, grad = guide.loss_and_grad(runner, z, t, session.cond, counter)
    assert counter.backward == 1 and counter.forward == 1
    assert grad.shape == z.shape and grad.abs().sum() > 0
    # A step small enough for the first-order decrease to dominate: 5% of the loss.
    size = 0.05 * float(total_loss(before)) / float(grad.pow(2).sum())
    after, _ = guide.loss_and_grad(runner, z - size * grad, t, session.cond, counter)
    assert float(total_loss(after)) < float(total_loss(before))
