"""Mask-supervised cross-attention for training the embedded model.

Layout guidance (method.md) moves an object by pushing its token's cross-attention map into
a target region, which only works when that map sits on the object in the first place. A
model trained on the denoising loss alone spreads its word attention over the whole image
(shapes-tiny after 4,000 steps: 11 % of a noun's mass on its object). The shapes world knows
every object's exact mask, so the recipe adds the guidance objective itself as a training
loss: for each word of an object's phrase, the share of its attention mass that falls on
the object's pixels, pushed towards one in every cross-attention layer (TokenCompose's token
loss, in the form the editor's guidance uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from layoutedit.learning.attention_supervision import (
    LayerProbabilities,
    attach_recorders,
    mask_attention_loss,
)
from layoutedit.shapes.captions import content, phrase_spans

__all__ = [
    "LayerProbabilities",
    "attach_recorders",
    "mask_attention_loss",
    "phrase_token_positions",
    "token_selection",
]


def phrase_token_positions(
    tokenizer: Any, caption: str, phrases: Sequence[str], max_length: int
) -> list[list[int]]:
    """Token positions (start token = 0) of the content words of each object's phrase.

    Args:
        tokenizer: the model's CLIP tokenizer (every world word is one token).
        caption: a scene caption in any of `captions.caption_variants`' forms.
        phrases: each object's phrase, e.g. `a striped red star`.
        max_length: the text encoder's token count; positions past it are dropped.

    Returns:
        One list per phrase: the positions of its words after the article (`phrase_spans`
        places them).
    """
    out: list[list[int]] = []
    for phrase, (at, _) in zip(phrases, phrase_spans(caption, phrases), strict=True):
        before = len(tokenizer(caption[:at], add_special_tokens=False).input_ids)
        words = len(tokenizer(content(phrase), add_special_tokens=False).input_ids)
        positions = [1 + before + j for j in range(words)]
        out.append([p for p in positions if p < max_length - 1])
    return out


def token_selection(
    positions: Sequence[Sequence[Sequence[int]]], objects: int, tokens: int
) -> np.ndarray:
    """(N, objects, tokens) float32 one-hot rows from per-scene, per-object positions."""
    sel = np.zeros((len(positions), objects, tokens), dtype=np.float32)
    for n, scene in enumerate(positions):
        for k, obj in enumerate(scene):
            sel[n, k, list(obj)] = 1.0
    return sel
