"""The final background composite: source pixels back only where both layouts are background."""

from __future__ import annotations

import numpy as np
import pytest

from layoutedit.editing.compositing import agreeing, composite, keep_alpha, match_colours


def _labels() -> tuple[np.ndarray, np.ndarray]:
    source = np.full((32, 32), 1, dtype=np.int16)  # K = 1: background is 1
    source[4:12, 4:12] = 0
    layout = np.full((32, 32), 1, dtype=np.int16)
    layout[18:28, 18:28] = 0
    return source, layout


def test_alpha_is_zero_on_either_object_and_one_deep_in_the_kept_background() -> None:
    source, layout = _labels()
    alpha = keep_alpha((source == 1) & (layout == 1), feather=3.0)
    assert alpha[4:12, 4:12].max() == 0.0  # where the object was
    assert alpha[18:28, 18:28].max() == 0.0  # where it goes
    assert alpha[0, 31] == 1.0 and alpha[31, 0] == 1.0  # far from both
    ramp = alpha[8, 12:18]  # leaving the old object to the right: rises inside the background
    assert ramp[0] < ramp[-1] and np.all(np.diff(ramp) >= 0)


def test_a_hard_edge_without_feather() -> None:
    source, layout = _labels()
    alpha = keep_alpha((source == 1) & (layout == 1), feather=0.0)
    expected = (source == 1) & (layout == 1)
    assert np.array_equal(alpha == 1.0, expected)


def test_composite_returns_the_source_where_alpha_is_one_and_the_edit_where_zero() -> None:
    source, layout = _labels()
    alpha = keep_alpha((source == 1) & (layout == 1), feather=2.0)
    src = np.full((32, 32, 3), 100, dtype=np.uint8)
    gen = np.full((32, 32, 3), 200, dtype=np.uint8)
    out = composite(gen, src, alpha)
    assert np.all(out[alpha == 1.0] == 100)
    assert np.all(out[alpha == 0.0] == 200)
    assert out.dtype == np.uint8


def test_colour_matching_restores_an_objects_colour_inside_its_footprint_only() -> None:
    source = np.full((16, 16, 3), 128, dtype=np.uint8)
    source[2:6, 2:6] = (200, 30, 30)
    source[2:6, 2:4, 1] = 60  # two tones: the spread is matched too
    there = np.zeros((1, 16, 16), dtype=bool)
    there[0, 2:6, 2:6] = True
    edit = np.full((16, 16, 3), 120, dtype=np.uint8)
    edit[9:13, 9:13] = (150, 60, 90)  # drifted colour at the new place
    edit[9:13, 9:11, 1] = 85
    here = np.zeros((1, 16, 16), dtype=bool)
    here[0, 9:13, 9:13] = True
    out = match_colours(edit, source, here, there)
    got = out[here[0]].astype(float)
    want = source[there[0]].astype(float)
    assert np.allclose(got.mean(axis=0), want.mean(axis=0), atol=1.0)
    assert np.allclose(got.std(axis=0), want.std(axis=0), atol=1.0)
    assert np.array_equal(out[~here[0]], edit[~here[0]])


def test_agreeing_keeps_a_small_departure_and_drops_a_large_one() -> None:
    reference = np.full((1, 3, 3), 100, dtype=np.uint8)
    generated = reference.copy()
    generated[0, 1] = (110, 100, 100)  # 10 away: keeps exp(-(10/40)^2) = 0.94 of it
    generated[0, 2] = (220, 100, 100)  # 120 away: keeps exp(-9), nothing
    out = agreeing(generated, reference, 40.0)
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1, 0] == round(100 + 10 * np.exp(-((10 / 40) ** 2)))
    assert out[0, 2].tolist() == [100, 100, 100]
    with pytest.raises(ValueError):
        agreeing(generated, reference[:, :2], 40.0)
