"""Training caption variants: the method's prompt forms, with each object's words found."""

from __future__ import annotations

import pytest

from layoutedit.shapes.captions import caption_variants, content, phrase_spans
from layoutedit.shapes.world import sample_scene


def test_variants_keep_the_caption_order_and_every_object() -> None:
    caption = "a blue ring, a yellow square and a dotted brown heart on a grass background"
    phrases = ["a yellow square", "a blue ring", "a dotted brown heart"]
    world, picture, photo = caption_variants(caption, phrases)
    assert world == caption
    assert picture == "a high quality picture of blue ring, yellow square and dotted brown heart"
    assert photo == "a photo of a blue ring, a yellow square and a dotted brown heart"


def test_a_shorter_phrase_does_not_take_the_words_of_a_longer_one() -> None:
    caption = "a striped red star and a red star on a gray background"
    spans = phrase_spans(caption, ["a red star", "a striped red star"])
    assert caption[slice(*spans[1])] == "striped red star"
    assert caption[slice(*spans[0])] == "red star" and spans[0][0] > spans[1][1]


def test_identical_phrases_take_successive_occurrences() -> None:
    caption = "a red star and a red star on a gray background"
    first, second = phrase_spans(caption, ["a red star", "a red star"])
    assert first != second and {first[0], second[0]} == {2, 17}


def test_every_world_scene_has_its_phrases_in_all_variants() -> None:
    for seed in range(200):
        scene = sample_scene(10_000_000 + seed)
        phrases = [o.phrase for o in scene.objects]
        for text in caption_variants(scene.caption, phrases):
            found = [text[a:b] for a, b in phrase_spans(text, phrases)]
            assert found == [content(p) for p in phrases]


def test_missing_phrase_is_an_error() -> None:
    with pytest.raises(ValueError, match="not in caption"):
        phrase_spans("a red circle on a gray background", ["a star"])
