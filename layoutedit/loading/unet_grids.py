"""The query-grid side of each cross-attention layer of a UNet, read from its block structure
(no forward pass): what the attention guidance, the concept check and the planner need to know
which layers run at the attention resolution."""

from __future__ import annotations

from typing import Any


def cross_attention_sides(unet: Any, latent_side: int) -> dict[str, int]:
    """Query-grid side of every cross-attention layer, read from the UNet's block structure.

    Args:
        unet: a `UNet2DConditionModel`.
        latent_side: side of the latent the UNet is run on (e.g. 64 for SD 1.x at 512 px).

    Returns:
        processor name (a key of `unet.attn_processors`, e.g.
        `"up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"`) -> side of its
        square query grid. Down block i runs at the side after i stride-2 downsamplers
        (ceil halving), the mid block at the deepest side, up block j at the side of down
        level n-1-j (diffusers upsamples to the skip connection's size).
    """
    down_sides = []
    side = latent_side
    for block in unet.down_blocks:
        down_sides.append(side)
        if getattr(block, "downsamplers", None):
            side = (side + 1) // 2
    deepest = side  # the mid block runs after every downsampler
    n_up = len(unet.up_blocks)
    sides: dict[str, int] = {}
    for name in unet.attn_processors:
        if ".attn2." not in name:
            continue
        parts = name.split(".")
        if parts[0] == "down_blocks":
            sides[name] = down_sides[int(parts[1])]
        elif parts[0] == "up_blocks":
            level = n_up - 1 - int(parts[1])
            sides[name] = down_sides[level] if 0 <= level < len(down_sides) else latent_side
        elif parts[0] == "mid_block":
            sides[name] = deepest
    return sides
