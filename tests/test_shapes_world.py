"""The shapes world generator and its tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import CLIPTokenizer

from layoutedit.scenes.scene import load_scene
from layoutedit.shapes.tokenizer import write_tokenizer
from layoutedit.shapes.world import (
    COLOUR_NAMES,
    VOCABULARY,
    moved,
    nearest_colour_name,
    render,
    sample_scene,
    write_scene_folder,
)


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_a_seed_always_gives_the_same_scene(seed: int) -> None:
    a, b = sample_scene(seed), sample_scene(seed)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks)
    assert a.caption == b.caption


def test_other_seeds_give_other_scenes() -> None:
    images = {sample_scene(s).image.tobytes() for s in range(10)}
    assert len(images) == 10


@pytest.mark.parametrize("seed", range(12))
def test_ground_truth_is_consistent(seed: int) -> None:
    scene = sample_scene(seed)
    k = len(scene.objects)
    assert 1 <= k <= 3
    assert scene.image.shape == (64, 64, 3) and scene.masks.shape == (k, 64, 64)
    # Visible masks never overlap, and each object keeps some visible pixels.
    assert scene.masks.sum(axis=0).max() <= 1
    assert all(m.sum() > 20 for m in scene.masks)
    assert len(set(scene.names)) == k
    for obj in scene.objects:
        assert obj.phrase in scene.caption
        assert nearest_colour_name(obj.colour) == obj.colour_name
        assert obj.colour_name in COLOUR_NAMES
    assert scene.caption.endswith(f"on a {scene.background} background")


def test_plain_object_pixels_have_the_object_colour() -> None:
    for seed in range(30):
        scene = sample_scene(seed)
        for obj, mask in zip(scene.objects, scene.masks, strict=True):
            if obj.pattern != "plain":
                continue
            # Interior pixels (not on the anti-aliased edge) carry the exact colour.
            inner = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0)
            inner &= np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
            pixels = scene.image[inner].astype(int)
            assert np.abs(pixels - np.array(obj.colour)).max() <= 1
            return
    pytest.fail("no plain object in 30 scenes")


def test_re_rendering_a_moved_object_keeps_the_background() -> None:
    scene = sample_scene(5, n_objects=2)
    specs = list(scene.objects)
    specs[0] = moved(specs[0], 32.0, 32.0, 1.0)
    again = render(specs, scene.background, scene.background_seed)
    near = scene.masks.any(axis=0) | again.masks.any(axis=0)
    for axis in (0, 1):  # anti-aliased edges reach one pixel past the exact masks
        near = near | np.roll(near, 1, axis) | np.roll(near, -1, axis)
    untouched = ~near
    assert np.array_equal(scene.image[untouched], again.image[untouched])
    assert not np.array_equal(scene.masks[0], again.masks[0])


def test_written_scene_folder_loads_with_the_same_labels(tmp_path: Path) -> None:
    scene = sample_scene(11, n_objects=3)
    folder = write_scene_folder(scene, tmp_path / "scene", [scene.labels()])
    loaded = load_scene(folder)
    assert loaded.names == scene.names
    assert np.array_equal(loaded.labels, scene.labels())
    assert np.array_equal(loaded.image, scene.image)
    assert [p.name for p in loaded.layout_paths] == ["layout1.png"]


def test_tokenizer_keeps_vocabulary_words_whole(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tok", VOCABULARY, 24)
    tok = CLIPTokenizer.from_pretrained(tmp_path / "tok")
    assert tok.model_max_length == 24
    for word in VOCABULARY:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    # Unknown words still encode, as several byte-level pieces.
    pieces = tok("potted", add_special_tokens=False).input_ids
    assert len(pieces) > 1 and tok.unk_token_id not in pieces
    assert tok.decode(pieces).strip() == "potted"


def test_tokenizer_takes_placeholder_tokens(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tok", VOCABULARY, 24)
    tok = CLIPTokenizer.from_pretrained(tmp_path / "tok")
    before = len(tok)
    tok.add_tokens(["<red_circle>"])
    ids = tok("a picture of <red_circle>", add_special_tokens=False).input_ids
    assert ids[-1] == before and len(tok) == before + 1
