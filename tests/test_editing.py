"""The edit core on the tiny model: blending, seeds, sizes, counting, batching, concepts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from edit_support import (
    fast_config,
    hand_concept,
    load_tiny,
    moved_layout,
    shapes_scene,
)

from layoutedit.backend import get_backend, register_backend, unregister_backend
from layoutedit.editing.session import EditSession, edit
from layoutedit.errors import UserError
from layoutedit.scenes.grids import blend_mask
from layoutedit_cpu import CpuBackend


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    """One tiny model for the tests that apply no concept (sessions re-install processors)."""
    return load_tiny(tiny_model_dir)


class BatchedCpu(CpuBackend):
    """A fake plugin: the CPU reference with batched classifier-free guidance."""

    name = "cpu-batched-test"

    @property
    def batch_cfg(self) -> bool:
        return True


def _registered(backend: type[CpuBackend]) -> Iterator[str]:
    """Register a fake backend for one test and yield its name."""
    register_backend(backend)
    yield backend.name
    unregister_backend(backend.name)


@pytest.fixture
def batched() -> Iterator[str]:
    yield from _registered(BatchedCpu)


class SeedBatchedCpu(CpuBackend):
    """A fake plugin: the CPU reference sampling every seed of an edit as one batch."""

    name = "cpu-seed-batched-test"

    @property
    def batch_seeds(self) -> bool:
        return True


@pytest.fixture
def seed_batched() -> Iterator[str]:
    yield from _registered(SeedBatchedCpu)


def test_blending_keeps_the_inverted_background_during_the_blend_steps(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene)
    cfg = fast_config(scale_factor=0.0, blend_steps=3)
    session = EditSession(model, scene, cfg, get_backend("cpu"))
    seen: list[torch.Tensor] = []
    session.edit(layout, on_step=lambda i, t, z: seen.append(z.clone()))
    mask = torch.from_numpy(
        blend_mask(scene.labels, layout.labels, scene.background_index, session.latent_side)
    )
    assert 0 < int(mask.sum()) < mask.numel()
    inverted = session.ensure_inversion().latents
    for i, z in enumerate(seen):
        same = torch.equal(z[0][:, mask], inverted[i][:, mask])
        assert same == (i < 3), f"step {i}"
    # Outside B the edit is free: it does not copy the source there.
    assert not torch.equal(seen[0][0][:, ~mask], inverted[0][:, ~mask])


def test_same_seed_same_image_and_another_seed_another(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene)
    session = EditSession(model, scene, fast_config(), get_backend("cpu"))
    first = session.edit(layout, seeds=(0, 1))
    again = session.edit(layout, seeds=(0,))
    assert np.array_equal(first.candidates[0].image, again.candidates[0].image)
    assert first.candidates[0].loss == again.candidates[0].loss
    assert not np.array_equal(first.candidates[0].image, first.candidates[1].image)


def test_output_has_the_source_size_and_aspect(model: Any) -> None:
    scene = shapes_scene(crop=40)  # 40 x 64 source
    assert scene.size == (40, 64)
    layout = moved_layout(scene, shift=8)
    result = edit(model, scene, [layout], fast_config(steps=3), get_backend("cpu"))[0]
    image = result.candidates[0].image
    assert image.shape == (40, 64, 3) and image.dtype == np.uint8
    assert set(result.candidates[0].object_losses) == set(scene.names)
    assert all(0.0 <= v <= 1.0 for v in result.candidates[0].object_losses.values())


def test_unet_evaluations_are_counted(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene)
    steps = 6
    off = EditSession(
        model, scene, fast_config(scale_factor=0.0, blend_steps=0), get_backend("cpu")
    )
    plain = off.edit(layout)
    # No guidance, no blending: two predictions per step, no gradient pass, no inversion.
    assert plain.unet_evaluations["sampling"] == {"forward": 2 * steps, "backward": 0, "total": 12}
    assert plain.unet_evaluations["inversion"]["total"] == 0
    assert plain.candidates[0].guided_steps == 0

    on = EditSession(model, scene, fast_config(), get_backend("cpu"))
    guided = on.edit(layout)
    cand = guided.candidates[0]
    passes = cand.guided_steps + cand.refinement_passes
    assert cand.guided_steps == 3  # max_iter_to_alter
    assert guided.unet_evaluations["sampling"]["backward"] == passes
    assert guided.unet_evaluations["sampling"]["forward"] == 2 * steps + passes
    assert guided.unet_evaluations["inversion"]["forward"] == steps


def test_batched_guidance_matches_separate_calls(model: Any, batched: str) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene)
    cfg = fast_config()
    separate = EditSession(model, scene, cfg, get_backend("cpu")).edit(layout)
    together = EditSession(model, scene, cfg, get_backend(batched)).edit(layout)
    a, b = separate.candidates[0], together.candidates[0]
    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 2
    assert a.loss == pytest.approx(b.loss, abs=1e-4)
    # Batching does not change the cost unit: a batch of 2 counts as 2 forwards.
    assert separate.unet_evaluations == together.unet_evaluations


@pytest.mark.parametrize(("init", "eta"), [("noise", 0.0), ("paste", 0.5)])
def test_seeds_sampled_as_one_batch_match_one_at_a_time(
    model: Any, seed_batched: str, init: str, eta: float
) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene)
    # Refinement at two steps (seeds that stop refining at different passes are in
    # test_seed_batch.py: this random model never reaches a target).
    cfg = fast_config(
        seeds=(0, 1, 2, 3),
        init=init,
        paste_strength=0.8,
        eta=eta,
        refinement={0: 0.9, 1: 0.9},
        max_refinement_steps=3,
    )
    seen: dict[str, list[tuple[int, int]]] = {"one": [], "batch": []}
    one = EditSession(model, scene, cfg, get_backend("cpu")).edit(
        layout, on_step=lambda i, t, z: seen["one"].append((i, z.shape[0]))
    )
    batch = EditSession(model, scene, cfg, get_backend(seed_batched)).edit(
        layout, on_step=lambda i, t, z: seen["batch"].append((i, z.shape[0]))
    )
    for a, b in zip(one.candidates, batch.candidates, strict=True):
        assert a.seed == b.seed
        diff = np.abs(a.image.astype(int) - b.image.astype(int))
        assert diff.max() <= 2 and diff.mean() <= 0.05
        assert a.loss == pytest.approx(b.loss, abs=1e-4)
        assert (a.guided_steps, a.refinement_passes) == (b.guided_steps, b.refinement_passes)
    # The cost unit is per sample whichever way the seeds ran.
    assert one.unet_evaluations == batch.unet_evaluations
    # The hook sees every seed at every step, one (1, C, h, w) latent at a time.
    assert sorted(seen["one"]) == sorted(seen["batch"])


def test_concept_prompt_and_positions(tiny_model_dir: Path) -> None:
    model = load_tiny(tiny_model_dir)
    scene = shapes_scene()
    concept = hand_concept(model, scene)
    session = EditSession(
        model, scene, fast_config(use_concept=True), get_backend("cpu"), concept=concept
    )
    assert session.prompt == concept.prompt
    ids = model.tokenizer(session.prompt).input_ids
    for token, position in zip(scene.tokens, session.positions, strict=True):
        assert ids[position] == model.tokenizer.convert_tokens_to_ids(token)
    assert session.last == len(ids) - 1
    result = session.edit(moved_layout(scene))
    assert np.isfinite(result.candidates[0].loss)


def test_plain_words_point_at_each_objects_last_word(model: Any) -> None:
    scene = shapes_scene()
    session = EditSession(model, scene, fast_config(), get_backend("cpu"))
    ids = model.tokenizer(session.prompt).input_ids
    for name, position in zip(scene.names, session.positions, strict=True):
        last_word = model.tokenizer(name, add_special_tokens=False).input_ids[-1]
        assert ids[position] == last_word
    assert "<" not in session.prompt


def test_plain_words_past_the_token_limit_are_one_user_error(model: Any) -> None:
    from layoutedit.scenes.scene import scene_from_arrays
    from layoutedit.shapes.world import MASK_BACKGROUND, MASK_PALETTE

    base = shapes_scene()
    long_names = ["striped red heart " * 3 + "one", "dotted blue star " * 3 + "two"]
    scene = scene_from_arrays(
        base.image, base.labels, long_names, MASK_PALETTE[:2], MASK_BACKGROUND
    )
    with pytest.raises(UserError, match="falls past the limit"):
        EditSession(model, scene, fast_config(), get_backend("cpu"))


def test_user_errors(tiny_model_dir: Path, model: Any) -> None:
    scene = shapes_scene()
    with pytest.raises(UserError, match="no concept given"):
        EditSession(model, scene, fast_config(use_concept=True), get_backend("cpu"))
    with pytest.raises(UserError, match="choose from 8, 16"):
        EditSession(model, scene, fast_config(attention_res=5), get_backend("cpu"))
    other = shapes_scene(seed=11, n_objects=1)
    fresh = load_tiny(tiny_model_dir)
    with pytest.raises(UserError, match="learned for"):
        EditSession(
            fresh,
            scene,
            fast_config(use_concept=True),
            get_backend("cpu"),
            concept=hand_concept(fresh, other),
        )
