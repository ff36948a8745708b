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

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from layoutedit.attention import AttentionStore, cross_attention_sides, install_processors
from layoutedit.shapes.captions import content, phrase_spans


class LayerProbabilities(AttentionStore):
    """Keeps every cross-attention layer's probabilities of one pass, at any grid size,
    with their autograd history (the training loss differentiates through them)."""

    def __init__(self) -> None:
        super().__init__(res=0)
        self.active = True
        self.probs: list[torch.Tensor] = []

    def reset(self) -> None:
        """Forget the previous pass."""
        super().reset()
        self.probs = []

    def add(self, name: str, probs: torch.Tensor) -> None:
        """Keep one layer's probabilities (B, heads, Q, T)."""
        self.probs.append(probs)


def attach_recorders(unet: Any, latent_side: int) -> LayerProbabilities:
    """Record every down/up-block cross-attention layer of `unet` into a new collector.

    The mid block (4 x 4 for a 16 x 16 latent) is left out: guidance never reads it.
    """
    sides = cross_attention_sides(unet, latent_side)
    layers = [name for name in sides if not name.startswith("mid_block")]
    install_processors(unet, layers)
    collector = LayerProbabilities()
    collector.attach(unet)
    return collector


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


def mask_attention_loss(
    layer_probs: Sequence[torch.Tensor], covers: torch.Tensor, selection: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of (1 - share)^2 over layers, objects and their words.

    Args:
        layer_probs: per layer (B, heads, Q, T) softmax over T; Q = side^2 for any side that
            divides the covers' side.
        covers: (B, K, S, S) share of each latent cell covered by object k (0 for padding).
        selection: (B, K, T) 1 where token t names object k.

    Returns:
        (loss, share): the scalar loss, and the mean share (no gradient) for the log.
    """
    count = selection.sum().clamp(min=1.0)
    losses, shares = [], []
    for probs in layer_probs:
        side = math.isqrt(probs.shape[2])
        b, k, s, _ = covers.shape
        cover = covers if side == s else F.adaptive_avg_pool2d(covers.reshape(b * k, 1, s, s), side)
        cover = cover.reshape(b, k, side * side)
        attn = probs.float().mean(dim=1)  # (B, Q, T)
        inside = torch.einsum("bqt,bkq->bkt", attn, cover)
        share = inside / attn.sum(dim=1).unsqueeze(1).clamp(min=1e-8)
        losses.append((((1 - share) ** 2) * selection).sum() / count)
        shares.append((share.detach() * selection).sum() / count)
    return torch.stack(losses).mean(), torch.stack(shares).mean()
