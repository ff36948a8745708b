"""The edit's paste start, its background composite and colour matching on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from edit_support import SeedBatchedCpu, fast_config, load_tiny, moved_layout, shapes_scene

from layoutedit.backend import get_backend, register_backend, unregister_backend
from layoutedit.editing.paste import fill_holes, grow, rim_width
from layoutedit.editing.session import EditSession
from layoutedit.scenes.layout_ops import inner_cells

SHIFT = 4  # px right: every object of the scene stays whole in frame


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    return load_tiny(tiny_model_dir)


def test_paste_start_runs_only_the_last_steps(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene, shift=SHIFT)
    seen: dict[str, list[int]] = {}
    for init in ("noise", "paste"):
        cfg = fast_config(init=init, paste_strength=0.5, scale_factor=0.0, blend_steps=0)
        steps: list[int] = []
        EditSession(model, scene, cfg, get_backend("cpu")).edit(
            layout, on_step=lambda i, t, z, steps=steps: steps.append(i)
        )
        seen[init] = steps
    assert seen["noise"] == list(range(6))
    assert seen["paste"] == [3, 4, 5]  # half of the 6 steps, from the pasted image


def test_composite_keeps_the_source_away_from_the_pasted_objects(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene, shift=SHIFT)
    cfg = fast_config(init="paste", background_composite=True, composite_feather=0.0)
    image = EditSession(model, scene, cfg, get_backend("cpu")).edit(layout).best().image
    objects = scene.labels != scene.background_index
    same = np.all(image == scene.image, axis=-1)
    # Every background pixel away from the source objects' rims and from the pasted objects
    # comes back exactly; the rims and, with a random model, the objects' pixels do not.
    moved = np.roll(objects, SHIFT, axis=1)
    assert same[~grow(objects, 1) & ~moved].all()
    assert not same[moved].all()
    rim = grow(objects, 1) & ~objects & ~moved
    assert not same[rim].all()


def test_colour_matching_pulls_each_object_to_its_source_colour(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene, shift=SHIFT)
    errors = {}
    for match in (False, True):
        cfg = fast_config(init="paste", colour_match=match)
        image = EditSession(model, scene, cfg, get_backend("cpu")).edit(layout).best().image
        masks = scene.object_masks()
        moved = np.roll(masks, SHIFT, axis=2)
        errors[match] = np.mean(
            [
                np.abs(image[m].mean(0) - scene.image[s].mean(0)).sum()
                for m, s in zip(moved, masks, strict=True)
            ]
        )
    assert errors[True] < 15.0 and errors[True] < errors[False] / 4


def test_an_object_that_stays_keeps_its_rim(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene, shift=0)  # nothing moves
    cfg = fast_config(init="paste", background_composite=True, composite_feather=0.0)
    image = EditSession(model, scene, cfg, get_backend("cpu")).edit(layout).best().image
    objects = scene.labels != scene.background_index
    same = np.all(image == scene.image, axis=-1)
    assert same[~objects].all()  # the whole background, rims included, is the source's


def test_vacated_fill_shows_the_start_images_fill_where_an_object_left(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene, shift=SHIFT)
    objects = scene.labels != scene.background_index
    moved = np.roll(objects, SHIFT, axis=1)
    left = grow(objects, rim_width(objects.shape)) & ~grow(moved, 1)
    # The start image's fill there: the background continued into the holes and rims.
    fill = np.clip(fill_holes(scene.image, grow(objects, rim_width(objects.shape))), 0, 255)
    fill = fill.round().astype(np.uint8)
    images = {}
    for vacated in ("model", "fill"):
        cfg = fast_config(
            init="paste", background_composite=True, composite_feather=0.0, vacated=vacated
        )
        images[vacated] = EditSession(model, scene, cfg, get_backend("cpu")).edit(layout)
    filled = images["fill"].best().image
    painted = images["model"].best().image
    assert np.array_equal(filled[left], fill[left])
    assert not np.array_equal(painted[left], fill[left])  # the random model paints otherwise


def _latents_per_step(session: EditSession, layout: Any) -> dict[int, list[torch.Tensor]]:
    """Step -> the (C, h, w) latent of each seed entering that step, in seed order."""
    seen: dict[int, list[torch.Tensor]] = {}
    session.edit(layout, on_step=lambda i, t, z: seen.setdefault(i, []).append(z[0].clone()))
    return seen


def _on_path(
    z: torch.Tensor, clean: torch.Tensor, noise: torch.Tensor, a: torch.Tensor, cells: torch.Tensor
) -> bool:
    """Whether z is sqrt(a) clean + sqrt(1 - a) noise on the (h, w) bool `cells`."""
    path = a.sqrt() * clean + (1 - a).sqrt() * noise
    return torch.allclose(z[:, cells], path[:, cells], atol=1e-4)


@pytest.mark.parametrize("batched", [False, True], ids=["seed-by-seed", "seeds-batched"])
def test_kept_objects_stay_on_the_pasted_path_for_their_steps(model: Any, batched: bool) -> None:
    """Inside the pasted objects (one latent cell in), the latent entering each step before
    `object_blend_steps` is sqrt(a_t) c + sqrt(1 - a_t) e for one clean latent c and the
    seed's start noise e; from that step on the model draws there freely."""
    scene = shapes_scene()
    layout = moved_layout(scene, shift=SHIFT)
    seeds = (0, 8)
    occupied = np.roll(scene.labels != scene.background_index, SHIFT, axis=1)
    if batched:
        register_backend(SeedBatchedCpu)
    try:
        backend = get_backend(SeedBatchedCpu.name if batched else "cpu")
        for kept_steps in (5, 0):  # steps 3 and 4 held, or none
            cfg = fast_config(
                init="paste",
                paste_strength=0.5,
                scale_factor=0.0,
                blend_steps=0,
                seeds=seeds,
                object_blend_steps=kept_steps,
            )
            session = EditSession(model, scene, cfg, backend)
            seen = _latents_per_step(session, layout)
            assert sorted(seen) == [3, 4, 5]
            cells = torch.from_numpy(inner_cells(occupied, session.latent_side))
            assert cells.any()
            a = {i: session.sampler.alphas_cumprod[session.sampler.timesteps[i]] for i in seen}
            for s, seed in enumerate(seeds):
                noise = session.start_noise(seed)[0]  # (C, h, w)
                clean = (seen[3][s] - (1 - a[3]).sqrt() * noise) / a[3].sqrt()
                held = _on_path(seen[4][s], clean, noise, a[4], cells)
                assert held == (kept_steps == 5), (kept_steps, seed)
                assert not _on_path(seen[5][s], clean, noise, a[5], cells)
    finally:
        if batched:
            unregister_backend(SeedBatchedCpu.name)
