"""A stand-in for fused attention kernels when planning on the `meta` device.

On `meta` tensors `F.scaled_dot_product_attention` always decomposes into the explicit
softmax(Q K^T) V, which would plan the full (B, heads, Q, K) probability matrix (and keep it
for backward) where a GPU's memory-efficient kernel (xformers, PyTorch SDPA) or the CPU's
flash kernel keeps only the output and one log-sum-exp per query. `FusedAttentionModel`
computes the same attention with `aten._scaled_dot_product_efficient_attention`, whose meta
kernel has exactly the fused kernel's output and saved-tensor shapes. `use_fused_model`
swaps it in for every SDPA/xformers processor a backend installed.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_processor import Attention


class FusedAttentionModel:
    """diffusers attention processor: the fused kernel's memory and FLOPs on `meta`."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.norm_cross and encoder_hidden_states is not None:
            context = attn.norm_encoder_hidden_states(context)
        query = attn.to_q(hidden_states)  # (B, Q, C)
        key = attn.to_k(context)  # (B, T, C)
        value = attn.to_v(context)
        batch = query.shape[0]
        head_dim = key.shape[-1] // attn.heads
        # (B, heads, Q|T, C/heads)
        query, key, value = (
            x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value)
        )
        out = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, None, bool(torch.is_grad_enabled() and query.requires_grad)
        )[0]  # (B, heads, Q, C/heads)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _is_fused(proc: Any) -> bool:
    from diffusers.models.attention_processor import AttnProcessor2_0, XFormersAttnProcessor

    return isinstance(proc, (AttnProcessor2_0, XFormersAttnProcessor))


def use_fused_model(unet: Any) -> int:
    """Replace every fused-kernel processor of `unet` (and the idle kernel of every recording
    processor) with `FusedAttentionModel`. Returns how many layers changed."""
    from layoutedit.attention_recording import RecordingAttnProcessor

    procs = dict(unet.attn_processors)
    changed = 0
    for name, proc in procs.items():
        if isinstance(proc, RecordingAttnProcessor):
            if _is_fused(proc.idle):
                proc.idle = FusedAttentionModel()
                changed += 1
        elif _is_fused(proc):
            procs[name] = FusedAttentionModel()
            changed += 1
    if changed:
        unet.set_attn_processor(procs)
    return changed
