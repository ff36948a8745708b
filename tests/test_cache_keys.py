"""Cache keys: same pixels -> same key; any change that decides a result -> another key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layoutedit.config import LearnConfig
from layoutedit_cache.keys import (
    canonical_json,
    concept_key,
    inversion_key,
    is_key,
    prior_key,
)

FP = "f" * 16


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    labels = np.full((24, 32), 2, dtype=np.int16)
    labels[4:12, 5:15] = 0
    labels[14:20, 18:30] = 1
    return image, labels


def _key(**over: object) -> str:
    image, labels = _scene()
    args: dict[str, object] = {
        "model_fingerprint": FP,
        "learn_config": LearnConfig().model_dump(mode="json"),
        "image": image,
        "labels": labels,
        "names": ["cat", "pot"],
    }
    args.update(over)
    return concept_key(**args)  # type: ignore[arg-type]


def test_key_is_sha256_hex() -> None:
    key = _key()
    assert is_key(key) and len(key) == 64


def test_same_pixels_saved_with_other_png_settings_give_the_same_key(tmp_path: Path) -> None:
    image, labels = _scene()
    fast, small = tmp_path / "fast.png", tmp_path / "small.png"
    Image.fromarray(image).save(fast, compress_level=0)
    Image.fromarray(image).save(small, compress_level=9, optimize=True)
    assert fast.read_bytes() != small.read_bytes()
    keys = {
        _key(image=np.asarray(Image.open(p).convert("RGB")), labels=labels) for p in (fast, small)
    }
    assert keys == {_key()}


def test_a_changed_mask_pixel_config_model_or_name_changes_the_key() -> None:
    image, labels = _scene()
    base = _key()
    moved = labels.copy()
    moved[4, 5] = 1
    other_pixels = image.copy()
    other_pixels[0, 0, 0] ^= 1
    changed = [
        _key(labels=moved),
        _key(image=other_pixels),
        _key(learn_config=LearnConfig(ti_steps=199).model_dump(mode="json")),
        _key(learn_config=LearnConfig(ti_lr=5.0001e-4).model_dump(mode="json")),
        _key(model_fingerprint="e" * 16),
        _key(names=["cat", "plant"]),
        _key(names=["pot", "cat"]),
    ]
    assert base not in changed
    assert len(set(changed)) == len(changed)


def test_shape_is_part_of_the_key_even_with_equal_bytes() -> None:
    image, _ = _scene()
    flat = image.reshape(-1)
    a = flat.reshape(24, 32, 3)
    b = flat.reshape(32, 24, 3)
    assert a.tobytes() == b.tobytes()
    la = np.zeros((24, 32), np.int16)
    lb = np.zeros((32, 24), np.int16)
    assert _key(image=a, labels=la) != _key(image=b, labels=lb)


def test_label_dtype_and_memory_layout_do_not_change_the_key() -> None:
    image, labels = _scene()
    assert _key(labels=labels.astype(np.int32)) == _key()
    assert _key(labels=np.asfortranarray(labels), image=np.asfortranarray(image)) == _key()


def test_config_encoding_is_canonical() -> None:
    cfg = LearnConfig().model_dump(mode="json")
    reordered = dict(reversed(list(cfg.items())))
    assert _key(learn_config=reordered) == _key()
    # python-mode dump (tuples, None) encodes like the JSON-mode one
    assert _key(learn_config=LearnConfig().model_dump()) == _key()
    assert canonical_json({"b": 1, "a": (0.1, Path("x/y"))}) == '{"a":[0.1,"x/y"],"b":1}'
    assert canonical_json({"a": 5e-4}) == canonical_json({"a": 0.0005})
    assert canonical_json({"a": True}) != canonical_json({"a": 1})


def test_bad_inputs_are_refused() -> None:
    image, labels = _scene()
    with pytest.raises(ValueError):
        _key(image=image.astype(np.float32))
    with pytest.raises(ValueError):
        _key(labels=labels[:-1])
    with pytest.raises(ValueError):
        _key(labels=labels.astype(np.float32))
    with pytest.raises(TypeError):
        _key(learn_config={"x": object()})
    with pytest.raises(TypeError):
        _key(learn_config={1: "int key", "1": "same key as text"})
    with pytest.raises(TypeError):
        _key(learn_config={(1, 2): "tuple key"})
    assert _key(learn_config={0: 0.6}) == _key(learn_config={"0": 0.6})


def test_the_encoding_is_pinned() -> None:
    # If this changes, the key encoding changed: bump CACHE_FORMAT_VERSION with it.
    key = concept_key(
        model_fingerprint="m",
        learn_config={"a": 0.5, "b": [1, 2]},
        image=np.arange(12, dtype=np.uint8).reshape(2, 2, 3),
        labels=np.array([[0, 1], [1, 0]], dtype=np.int16),
        names=["x"],
    )
    assert key == PINNED


PINNED = "73cbd4c1fae637550f628696707167a1ecb24deb9135f1ebb133d86f6c785551"


def test_inversion_key_covers_concept_prompt_steps_guidance_and_extra() -> None:
    ck = _key()
    base = inversion_key(concept_key=ck, prompt="p", steps=50, guidance_scale=5.0)
    assert inversion_key(concept_key=ck, prompt="p", steps=50, guidance_scale=5) == base
    others = [
        inversion_key(concept_key=_key(names=["a", "b"]), prompt="p", steps=50, guidance_scale=5),
        inversion_key(concept_key=ck, prompt="q", steps=50, guidance_scale=5.0),
        inversion_key(concept_key=ck, prompt="p", steps=49, guidance_scale=5.0),
        inversion_key(concept_key=ck, prompt="p", steps=50, guidance_scale=7.5),
        inversion_key(concept_key=ck, prompt="p", steps=50, guidance_scale=5.0, extra={"eta": 0}),
    ]
    assert base not in others and len(set(others)) == len(others)
    with pytest.raises(ValueError):
        inversion_key(concept_key="not-a-key", prompt="p", steps=50, guidance_scale=5.0)


def test_prior_key_covers_model_prompt_count_and_seed() -> None:
    base = prior_key(model_fingerprint=FP, class_prompt="a photo of a cat", count=20, seed=0)
    others = [
        prior_key(model_fingerprint="x", class_prompt="a photo of a cat", count=20, seed=0),
        prior_key(model_fingerprint=FP, class_prompt="a photo of a pot", count=20, seed=0),
        prior_key(model_fingerprint=FP, class_prompt="a photo of a cat", count=21, seed=0),
        prior_key(model_fingerprint=FP, class_prompt="a photo of a cat", count=20, seed=1),
    ]
    assert base not in others and len(set(others)) == len(others)
    # kinds never collide, even on "equal" inputs
    assert base != inversion_key(concept_key=base, prompt="", steps=20, guidance_scale=0.0)
