"""World v2: occlusion, light, shadows and structured backgrounds, with exact truth."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from layoutedit.shapes.lighting import Light, gaussian_blur, illumination
from layoutedit.shapes.textures import STRUCTURED, render_structured
from layoutedit.shapes.tokenizer import write_tokenizer
from layoutedit.shapes.world import VOCABULARY, moved, sample_scene, shape_coverage
from layoutedit.shapes.world_v2 import (
    OCCLUSION_SHARE,
    VOCABULARY_V2_EXTRA,
    coverage,
    render_lit,
    rerender,
    sample_scene_v2,
    sample_world_scene,
)

SCENES = [sample_scene_v2(seed) for seed in range(20)]


def test_v1_stays_the_default_and_unchanged() -> None:
    a, b = sample_world_scene(5), sample_scene(5)
    assert a.world == "v1" and a.caption == b.caption and np.array_equal(a.image, b.image)
    with pytest.raises(ValueError, match="unknown world"):
        sample_world_scene(5, world="v3")


def test_v2_scenes_are_deterministic_and_carry_their_truth() -> None:
    again = sample_scene_v2(7)
    assert np.array_equal(again.image, SCENES[7].image) and again.caption == SCENES[7].caption
    for scene in SCENES:
        k = len(scene.objects)
        assert scene.world == "v2" and scene.light is not None
        assert scene.amodal is not None and scene.shadows is not None
        assert scene.amodal.shape == scene.masks.shape == (k, 64, 64)
        assert not (scene.masks & ~scene.amodal).any()  # visible lies inside whole
        assert scene.illumination is not None and scene.illumination.shape == (64, 64)


def test_some_scenes_hide_part_of_an_object_within_the_stated_share() -> None:
    hidden = []
    for scene in SCENES:
        assert scene.amodal is not None
        for whole, visible in zip(scene.amodal, scene.masks, strict=True):
            share = 1 - visible.sum() / whole.sum()
            if share > 0.02:
                hidden.append(share)
    assert len(hidden) >= 5
    # A back object hidden by one front object stays within the range (two front objects
    # may hide more together, so only the typical case is bounded).
    assert np.median(hidden) <= OCCLUSION_SHARE[1] + 0.05


def test_structured_backgrounds_appear_and_have_edges_a_blur_cannot_keep() -> None:
    kinds = {s.background for s in SCENES}
    assert kinds & set(STRUCTURED)
    for name in STRUCTURED:
        albedo = render_structured(name, 3)
        smooth = np.stack([gaussian_blur(albedo[..., c], 2.0) for c in range(3)], -1)
        inner = (slice(8, 56), slice(8, 56))
        assert np.abs(albedo - smooth)[inner].mean() > 3.0, name


def test_illumination_is_brighter_towards_the_light() -> None:
    light = Light(angle=0.0, gain=0.2, offset=3.0, softness=1.0, strength=0.5)
    field = illumination(light)
    assert field[32, 60] > 1.15 and field[32, 3] < 0.85  # light from the right
    spec = replace(SCENES[0].objects[0], cx=14.0, cy=32.0, size=16.0, pattern="plain")
    dark = render_lit([spec], "gray", 1, light)
    bright = render_lit([moved(spec, 50.0, 32.0)], "gray", 1, light)
    assert bright.image[bright.masks[0]].mean() > dark.image[dark.masks[0]].mean() * 1.2


def test_the_shadow_falls_away_from_the_light_and_moves_with_the_object() -> None:
    light = Light(angle=0.0, gain=0.0, offset=4.0, softness=1.0, strength=0.5)
    spec = replace(SCENES[0].objects[0], shape="circle", cx=32.0, cy=32.0, size=16.0)
    scene = render_lit([spec], "gray", 1, light)
    assert scene.shadows is not None
    shadow = scene.shadows[0]
    _, xs = np.nonzero(shadow > 0.2)
    assert xs.mean() < 32 - 2  # light from the right: the shadow lies to the left
    assert scene.image[32, 20].mean() < scene.image[32, 50].mean() - 20  # darker there
    there = rerender(scene, [moved(spec, 40.0, 20.0)])
    assert there.shadows is not None
    shift = np.roll(np.roll(shadow, -12, axis=0), 8, axis=1)
    np.testing.assert_allclose(there.shadows[0][8:56, 8:56], shift[8:56, 8:56], atol=1e-5)
    assert not (scene.masks[0] & (scene.image.mean(-1) < 60)).any()  # not on itself


def test_a_windowed_coverage_equals_the_full_frame_one() -> None:
    for spec in SCENES[3].objects:
        np.testing.assert_allclose(coverage(spec, 64), shape_coverage(spec, 64), atol=1e-6)


def test_rerendering_in_place_gives_the_same_scene() -> None:
    for scene in SCENES[:6]:
        again = rerender(scene, scene.objects)
        assert np.array_equal(again.image, scene.image)


def test_extra_words_keep_every_v1_token_id(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    write_tokenizer(tmp_path / "v1", VOCABULARY, 24)
    write_tokenizer(tmp_path / "v2", VOCABULARY, 24, VOCABULARY_V2_EXTRA)
    v1 = CLIPTokenizer.from_pretrained(tmp_path / "v1")
    v2 = CLIPTokenizer.from_pretrained(tmp_path / "v2")
    assert len(v2) > len(v1)  # the new words and the pieces their merges make
    for text in ("a striped red star on a sand background", "a photo of <pot_2> catdog"):
        assert v1(text).input_ids == v2(text).input_ids
    for word in VOCABULARY_V2_EXTRA:
        ids = v2(word, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] >= len(v1)
