"""Where an edit keeps the model's pixels (`EditConfig.model_pixels`), on the tiny model and a
world v2 case whose front object moves off the back one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edit_support import fast_config, load_tiny

from layoutedit.backend import get_backend
from layoutedit.bench.cases_v2 import make_cases_v2
from layoutedit.editing.session import EditSession
from layoutedit.scenes.scene import Scene, layout_from_labels, scene_from_arrays
from layoutedit.shapes.world import MASK_BACKGROUND, MASK_PALETTE


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    return load_tiny(tiny_model_dir)


def _uncover() -> tuple[Scene, np.ndarray]:
    case = next(c for c in make_cases_v2(4, seed=2000) if c.kind == "uncover")
    k = case.n_objects
    scene = scene_from_arrays(
        case.source.image, case.source_labels, case.names, MASK_PALETTE[:k], MASK_BACKGROUND
    )
    return scene, case.layout


def _session(model: Any, scene: Scene, **changes: object) -> EditSession:
    settings: dict[str, object] = {
        "init": "paste",
        "redraw_strength": 0.8,
        "background_composite": True,
        "composite_feather": 0.0,
        "placement": "occlusion",
        "hole_fill": "repeat",
    }
    return EditSession(model, scene, fast_config(**(settings | changes)), get_backend("cpu"))


def _edit(model: Any, scene: Scene, labels: np.ndarray, **changes: object) -> tuple[Any, Any]:
    session = _session(model, scene, **changes)
    layout = layout_from_labels(labels, scene)
    result = session.edit(layout)
    _, _, start = session._paste_start(layout)
    return result.candidates[0].image, session._model_zone(start)


def test_the_model_shows_only_where_a_hidden_part_may(model: Any) -> None:
    scene, labels = _uncover()
    with_model, zone = _edit(model, scene, labels, model_pixels="hidden")
    without, zone_again = _edit(model, scene, labels, model_pixels="hidden", denoise=False)
    assert np.array_equal(zone, zone_again)
    assert 0 < zone.sum() < zone.size // 4
    # Outside the zone both are the cut-and-paste start (and the source's background).
    assert np.array_equal(with_model[~zone], without[~zone])
    assert not np.array_equal(with_model[zone], without[zone])
    # With the model's pixels everywhere, the denoised edit differs outside the zone too.
    everywhere, _ = _edit(model, scene, labels, model_pixels="everywhere")
    assert not np.array_equal(everywhere[~zone], without[~zone])


def test_without_a_redraw_the_setting_is_ignored_not_an_edit_without_the_model(
    model: Any,
) -> None:
    scene, labels = _uncover()
    plain, _ = _edit(model, scene, labels, redraw_strength=0.0, model_pixels="everywhere")
    asked, _ = _edit(model, scene, labels, redraw_strength=0.0, model_pixels="hidden")
    assert np.array_equal(plain, asked)


def test_a_hidden_margin_narrows_the_zone_to_the_estimated_hidden_parts(model: Any) -> None:
    scene, labels = _uncover()
    _, zone = _edit(model, scene, labels, model_pixels="hidden", denoise=False)
    _, narrow = _edit(model, scene, labels, model_pixels="hidden", hidden_margin=0.0, denoise=False)
    _, wider = _edit(model, scene, labels, model_pixels="hidden", hidden_margin=2.0, denoise=False)
    assert narrow.any()
    assert not (narrow & ~zone).any() and not (wider & ~zone).any()  # only ever narrower
    assert narrow.sum() < wider.sum() <= zone.sum()


def test_a_model_weight_mixes_the_redraw_with_the_start_in_the_zone_only(model: Any) -> None:
    scene, labels = _uncover()
    alone, zone = _edit(model, scene, labels, model_pixels="hidden")
    half, _ = _edit(model, scene, labels, model_pixels="hidden", model_weight=0.5)
    cfg = fast_config(
        init="paste",
        redraw_strength=0.8,
        background_composite=True,
        composite_feather=0.0,
        placement="occlusion",
        hole_fill="repeat",
        model_pixels="hidden",
    )  # as `_edit`'s, for its start image
    session = EditSession(model, scene, cfg, get_backend("cpu"))
    _, _, start = session._paste_start(layout_from_labels(labels, scene))
    assert np.array_equal(half[~zone], alone[~zone])
    mixed = (alone[zone].astype(float) + start.image[zone].astype(float)) / 2
    assert np.abs(half[zone].astype(float) - mixed).max() <= 1.0  # rounding only
    assert not np.array_equal(half[zone], alone[zone])


def test_model_agreement_keeps_near_departures_and_drops_far_ones(model: Any) -> None:
    scene, labels = _uncover()
    without, zone = _edit(model, scene, labels, model_pixels="hidden", denoise=False)
    plain, _ = _edit(model, scene, labels, model_pixels="hidden", model_weight=1.0)
    # A tiny scale drops every departure: the edit is the one with no denoising step.
    strict, _ = _edit(
        model, scene, labels, model_pixels="hidden", model_weight=1.0, model_agreement=1e-3
    )
    assert np.abs(strict.astype(int) - without.astype(int)).max() <= 1
    # A huge one keeps them all: the edit without the setting.
    loose, _ = _edit(
        model, scene, labels, model_pixels="hidden", model_weight=1.0, model_agreement=1e6
    )
    assert np.abs(loose.astype(int) - plain.astype(int)).max() <= 1
    # Between, the model's pixels move towards the start's, most where they depart most.
    middle, _ = _edit(
        model, scene, labels, model_pixels="hidden", model_weight=1.0, model_agreement=40.0
    )
    far = np.linalg.norm(plain.astype(float) - without.astype(float), axis=-1)
    near_left = np.linalg.norm(middle.astype(float) - without.astype(float), axis=-1)
    assert (near_left <= far + 1.5).all()
    assert (near_left[zone] < far[zone] - 1).any()


def _on_grass() -> tuple[Scene, np.ndarray]:
    case = next(c for c in make_cases_v2(2, seed=2001) if c.source.background == "grass")
    k = case.n_objects
    scene = scene_from_arrays(
        case.source.image, case.source_labels, case.names, MASK_PALETTE[:k], MASK_BACKGROUND
    )
    return scene, case.layout


def test_model_grain_adds_the_models_grain_only_where_an_object_left_a_grainy_floor(
    model: Any,
) -> None:
    scene, labels = _on_grass()
    common: dict[str, object] = {"model_pixels": "hidden", "vacated": "fill"}
    plain, _ = _edit(model, scene, labels, **common)
    grained, _ = _edit(model, scene, labels, model_grain=True, **common)
    session = _session(model, scene, model_grain=True, **common)
    _, _, start = session._paste_start(layout_from_labels(labels, scene))
    assert start.grain is not None
    objects = scene.labels != scene.background_index
    where = start.grain & objects & ~start.footprints.any(axis=0)
    if start.hidden is not None:
        where &= ~start.hidden
    changed = np.any(plain != grained, axis=-1)
    assert changed.any() and not (changed & ~where).any()
    # Where the model's own pixels show where an object left, they carry its grain already.
    own = {"model_pixels": "hidden", "vacated": "model"}
    assert np.array_equal(
        _edit(model, scene, labels, **own)[0],
        _edit(model, scene, labels, model_grain=True, **own)[0],
    )
    # With no denoising step there is no grain to take: the setting changes nothing.
    bare, _ = _edit(model, scene, labels, denoise=False, **common)
    bare_grained, _ = _edit(model, scene, labels, denoise=False, model_grain=True, **common)
    assert np.array_equal(bare, bare_grained)
