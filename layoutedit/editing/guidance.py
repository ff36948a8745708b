"""The attention guidance of `method.md`, as pure tensor functions.

Out-of-region loss (stage 2, step 3): with `A` the cross-attention maps averaged over the
recorded layers and heads, of shape (res, res, T),

    A'   = softmax_T( softmax_scale * A[:, :, 1:last] )     text tokens only, sharpened
    A_k  = A'[:, :, position_k - 1]                          object k's placeholder map
           (with `token_softmax` off: A_k = A[:, :, position_k], the placeholder's own map)
    l_k  = 1 - sum(A_k * L_k) / sum(A_k)                     L_k: k's target region, 0/1
    loss = mean_k(l_k) + max_k(l_k)

Step size at step i: s_i = scale_factor * sqrt(r_i), r linear from scale_range[0] to
scale_range[1] over the steps. Iterative refinement at step i repeats the update while
loss > 1 - threshold_i.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch


def text_attention(maps: torch.Tensor, last: int, softmax_scale: float) -> torch.Tensor:
    """Keep the text tokens between the start token and `last`, sharpen, renormalise.

    Args:
        maps: (res, res, T) attention probabilities (mean over layers and heads).
        last: index of the prompt's end token in `input_ids`; tokens 1 .. last-1 are kept.
        softmax_scale: multiplier before the softmax (100 in the published code).

    Returns:
        (res, res, last - 1): softmax over the kept tokens; index j is token j + 1.
    """
    if last < 2:
        raise ValueError(f"the prompt has no text tokens (end token at {last})")
    text = maps[:, :, 1:last] * softmax_scale  # (res, res, last-1)
    return torch.softmax(text, dim=-1)


def object_losses(
    maps: torch.Tensor,
    positions: Sequence[int],
    regions: torch.Tensor,
    last: int,
    softmax_scale: float = 100.0,
    token_softmax: bool = True,
) -> torch.Tensor:
    """Out-of-region loss of every object.

    Args:
        maps: (res, res, T) attention probabilities.
        positions: K token positions in `input_ids` (start token = 0), object order.
        regions: (K, res, res) 0/1 target regions L_k on the attention grid.
        last: index of the end token (see `text_attention`).
        softmax_scale: sharpening factor.
        token_softmax: re-softmax over the text tokens (the published loss). Off, each
            placeholder's own probabilities are used: a learned token whose attention sits
            on its object but carries little mass next to punctuation (the case on small
            models with short prompts) keeps its map instead of a near-uniform one.

    Returns:
        (K,) l_k = 1 - sum(A_k * L_k) / sum(A_k), each in [0, 1]: the share of object k's
        attention that falls outside its target region.
    """
    if regions.shape[0] != len(positions):
        raise ValueError(f"{len(positions)} positions but {regions.shape[0]} regions")
    if regions.shape[1:] != maps.shape[:2]:
        raise ValueError(f"regions {tuple(regions.shape[1:])} vs maps {tuple(maps.shape[:2])}")
    text = text_attention(maps, last, softmax_scale)  # (res, res, last-1)
    index = torch.as_tensor([p - 1 for p in positions], device=maps.device)
    if (index < 0).any() or (index >= text.shape[-1]).any():
        raise ValueError(f"token positions {list(positions)} outside 1..{last - 1}")
    if not token_softmax:
        text = maps[:, :, 1:last]  # (res, res, last-1), same indexing as the softmax maps
    per_object = text[:, :, index].permute(2, 0, 1)  # (K, res, res)
    regions = regions.to(per_object)
    inside = (per_object * regions).sum(dim=(1, 2))  # (K,)
    total = per_object.sum(dim=(1, 2)).clamp_min(torch.finfo(per_object.dtype).tiny)
    return 1.0 - inside / total


def total_loss(losses: torch.Tensor) -> torch.Tensor:
    """mean_k(l_k) + max_k(l_k): a scalar in [0, 2]."""
    return losses.mean() + losses.max()


def step_sizes(steps: int, scale_factor: float, scale_range: tuple[float, float]) -> list[float]:
    """s_i = scale_factor * sqrt(r_i), r linear from scale_range[0] to scale_range[1].

    Returns:
        `steps` step sizes (latent units per unit of loss gradient).
    """
    start, end = scale_range
    if steps == 1:
        return [scale_factor * math.sqrt(start)]
    return [scale_factor * math.sqrt(start + (end - start) * i / (steps - 1)) for i in range(steps)]


def guidance_active(step: int, scale_factor: float, max_iter_to_alter: int) -> bool:
    """Whether step i runs the gradient pass at all (guidance on and i < max_iter_to_alter)."""
    return scale_factor > 0 and step < max_iter_to_alter


def refinement_target(refinement: Mapping[int, float], step: int) -> float | None:
    """The loss to refine below at step i (1 - threshold_i), or None if i refines not."""
    threshold = refinement.get(step)
    return None if threshold is None else 1.0 - threshold
