"""Mask-supervised cross-attention: a training loss that puts a token's attention on its mask.

Layout guidance (method.md) moves an object by pushing its token's cross-attention map into
a target region, which only works when that map sits on the object in the first place. Two
trainings add the guidance objective itself as a loss, with exact masks:

- the embedded model's recipe (`layoutedit.shapes.train`): every word of an object's phrase;
- the learning stage (`textual_inversion`, `finetune` in `layoutedit.learning`): every object's
  placeholder, Break-A-Scene's answer to concept bleeding (one placeholder drawing another's
  object). Without it a placeholder learned on a small model attends to a neighbour's object
  as readily as to its own, and guidance then moves the wrong thing.

The loss is the share of a token's attention mass that falls on its object, pushed towards
one in every recorded layer: `(1 - share)^2`, the form the editor's guidance reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from layoutedit.attention_recording import AttentionStore, RecordingAttnProcessor
from layoutedit.loading.unet_grids import cross_attention_sides


class LayerProbabilities(AttentionStore):
    """Keeps every recorded cross-attention layer's probabilities of one pass, at any grid
    size, with their autograd history (a training loss differentiates through them)."""

    def __init__(self) -> None:
        super().__init__(res=0)
        self.active = True
        self.probs: list[torch.Tensor] = []

    def reset(self) -> None:
        """Forget the previous pass."""
        super().reset()
        self.probs = []

    def add(self, name: str, probs: torch.Tensor) -> None:
        """Keep one layer's probabilities (B, heads, Q, T), the first time the layer runs in
        a pass: with gradient checkpointing the backward pass runs the layer again to
        recompute its activations, and those maps are neither the loss's nor worth keeping
        (they would double what the supervision holds, all of it with autograd history)."""
        if name in self._layers:
            return
        self._layers.append(name)
        self.probs.append(probs)


def supervised_layers(unet: Any, latent_side: int) -> list[str]:
    """The processor names the supervision records: every down/up-block cross-attention
    layer (the mid block, 4 x 4 for a 16 x 16 latent, is left out: guidance never reads it).
    Self-attention is never among them."""
    sides = cross_attention_sides(unet, latent_side)
    return [name for name in sides if not name.startswith("mid_block")]


def attach_recorders(unet: Any, latent_side: int) -> LayerProbabilities:
    """Record the supervised cross-attention layers of `unet` into a new collector.

    Only those layers compute their probabilities explicitly; every other layer (every
    self-attention layer above all, 4096 x 4096 per head on SD 1.5's 64 x 64 grid) keeps the
    processor it has, i.e. the backend's fused kernel, which never materialises them.
    """
    layers = set(supervised_layers(unet, latent_side))
    procs: dict[str, Any] = {}
    for name, proc in unet.attn_processors.items():
        # A recording processor left by an earlier pass stands for its idle kernel.
        kernel = proc.idle if isinstance(proc, RecordingAttnProcessor) else proc
        procs[name] = RecordingAttnProcessor(name, kernel) if name in layers else kernel
    unet.set_attn_processor(procs)
    collector = LayerProbabilities()
    collector.attach(unet)
    return collector


@contextmanager
def recording_attention(unet: Any, latent_side: int) -> Iterator[LayerProbabilities]:
    """`attach_recorders` for a block; the UNet's own processors come back afterwards and
    the last pass's maps are let go."""
    before = dict(unet.attn_processors)
    collector = attach_recorders(unet, latent_side)
    try:
        yield collector
    finally:
        collector.reset()
        unet.set_attn_processor(before)


def mask_attention_loss(
    layer_probs: Sequence[torch.Tensor], covers: torch.Tensor, selection: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of (1 - share)^2 over layers, objects and their tokens.

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
