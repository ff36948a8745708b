"""The edit's paste start, its background composite and colour matching on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edit_support import fast_config, load_tiny, moved_layout, shapes_scene

from layoutedit.backend import get_backend
from layoutedit.editing.paste import fill_holes, grow, rim_width
from layoutedit.editing.session import EditSession

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


def test_object_detail_brings_the_source_pattern_into_the_objects_only(model: Any) -> None:
    scene = shapes_scene()
    layout = moved_layout(scene, shift=SHIFT)
    masks = scene.object_masks()
    moved = np.roll(masks, SHIFT, axis=2)
    images = {}
    for detail in (0.0, 1.0):
        cfg = fast_config(init="paste", object_detail=detail, detail_sigma=0.75)
        images[detail] = EditSession(model, scene, cfg, get_backend("cpu")).edit(layout)
    plain, detailed = images[0.0].best().image, images[1.0].best().image
    anywhere = moved.any(axis=0)
    assert np.array_equal(plain[~anywhere], detailed[~anywhere])
    # Inside each moved object the edit's fine structure now follows the source's.
    for here in moved:
        truth = np.roll(scene.image, SHIFT, axis=1)[here].astype(float)
        error = {
            k: np.abs(v.best().image[here].astype(float) - truth).mean() for k, v in images.items()
        }
        assert error[1.0] < error[0.0], error
