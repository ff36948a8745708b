"""Caption variants for training: the world's captions and the method's prompt forms.

The editor prompts with `a high quality picture of <a>, <b> and <c>` (the published scene
template) and learns with `a photo of a <a>` (the single-object template). Trained on world
captions alone (`a red heart and a blue ring on a sand background`), the embedded model never
saw `photo`, `picture` or `quality`, so those prompts were out of its distribution. The
recipe therefore also trains on the same scenes described in those two forms.
"""

from __future__ import annotations

from collections.abc import Sequence

from layoutedit.scenes.prompts import join_objects

PICTURE_PREFIX = "a high quality picture of "
PHOTO_PREFIX = "a photo of "


def content(phrase: str) -> str:
    """A phrase without its article: `a striped red star` -> `striped red star`."""
    return phrase.split(" ", 1)[1]


def phrase_spans(caption: str, phrases: Sequence[str]) -> list[tuple[int, int]]:
    """Character span (start, end) of each phrase's content words in `caption`.

    Longer contents are placed first and spans never overlap, so `red star` does not take
    the words of `striped red star`; identical phrases take successive occurrences.

    Raises:
        ValueError: a phrase's content is not in the caption as whole words.
    """
    spans: dict[int, tuple[int, int]] = {}
    for i in sorted(range(len(phrases)), key=lambda j: -len(content(phrases[j]))):
        words = content(phrases[i])
        start = 0
        while True:
            at = caption.find(words, start)
            if at < 0:
                raise ValueError(f"phrase {phrases[i]!r} not in caption {caption!r}")
            end = at + len(words)
            bounded = (at == 0 or caption[at - 1] == " ") and (
                end == len(caption) or not caption[end].isalnum()
            )
            free = all(end <= a or at >= b for a, b in spans.values())
            if bounded and free:
                break
            start = at + 1
        spans[i] = (at, end)
    return [spans[i] for i in range(len(phrases))]


def caption_variants(caption: str, phrases: Sequence[str]) -> tuple[str, str, str]:
    """The world caption, the scene-template form and the photo form of one scene.

    Args:
        caption: e.g. `a blue ring and a striped red star on a sand background`.
        phrases: each object's phrase, e.g. (`a striped red star`, `a blue ring`).

    Returns:
        (caption, `a high quality picture of blue ring and striped red star`,
        `a photo of a blue ring and a striped red star`); objects in the caption's order.
    """
    spans = phrase_spans(caption, phrases)
    ordered = [phrases[i] for i in sorted(range(len(phrases)), key=lambda j: spans[j][0])]
    picture = PICTURE_PREFIX + join_objects([content(p) for p in ordered])
    photo = PHOTO_PREFIX + join_objects(ordered)
    return caption, picture, photo
