"""Recording attention: same outputs as diffusers' processor, probabilities that sum to one,
only the layers at the attention grid, and the early stop of the guidance pass."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor

from layoutedit.attention_recording import (
    AttentionStore,
    RecordingAttnProcessor,
    choose_attention_res,
    install_processors,
    run_until_collected,
)
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.shapes.architecture import ModelSize, build_unet


def _cross_attention(heads: int = 3, dim: int = 24, context: int = 10) -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=dim, cross_attention_dim=context, heads=heads, dim_head=dim // heads)


def test_recording_processor_matches_diffusers_and_probabilities_sum_to_one() -> None:
    attn = _cross_attention(heads=3)
    hidden = torch.randn(2, 16, 24)  # (B, Q = 4x4, C)
    context = torch.randn(2, 7, 10)  # (B, T, D)
    expected = AttnProcessor()(attn, hidden, context)

    store = AttentionStore(res=4)
    proc = RecordingAttnProcessor("layer")
    proc.store = store
    with store.recording():
        out = proc(attn, hidden, context)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)

    maps = store.maps()  # (B, 4, 4, T)
    assert maps.shape == (2, 4, 4, 7)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 4, 4))
    # The map is the head mean of softmax(Q K^T * scale), computed here by hand.
    with torch.no_grad():
        q = attn.to_q(hidden).view(2, 16, 3, 8).transpose(1, 2)  # (B, heads, Q, d)
        k = attn.to_k(context).view(2, 7, 3, 8).transpose(1, 2)  # (B, heads, T, d)
        by_hand = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1).mean(1)
    torch.testing.assert_close(maps, by_hand.view(2, 4, 4, 7), rtol=1e-5, atol=1e-6)


def test_not_recording_records_nothing_and_self_attention_is_ignored() -> None:
    attn = _cross_attention()
    hidden = torch.randn(1, 16, 24)
    store = AttentionStore(res=4)
    proc = RecordingAttnProcessor("layer")
    proc.store = store
    proc(attn, hidden, torch.randn(1, 5, 10))  # not recording
    with pytest.raises(RuntimeError, match="no attention was recorded"):
        store.maps()
    self_attn = Attention(query_dim=24, heads=3, dim_head=8)
    with store.recording():
        proc(self_attn, hidden)  # self-attention: no encoder states, never recorded
    assert store.layers == ()


def test_store_refuses_a_map_of_another_grid() -> None:
    store = AttentionStore(res=4)
    with store.recording(), pytest.raises(RuntimeError, match="expected 4x4"):
        store.add("layer", torch.full((1, 2, 9, 5), 0.2))


def test_sides_of_the_tiny_unet_and_the_chosen_resolution() -> None:
    unet = build_unet(ModelSize(unet_channels=(8, 16, 16), unet_layers=1, heads=2, text_width=16))
    sides = cross_attention_sides(unet, 16)
    assert sorted(set(sides.values())) == [4, 8, 16]  # mid block at 4
    assert all(".attn2." in n for n in sides)
    assert {s for n, s in sides.items() if n.startswith("mid_block")} == {4}
    # latent/4 = 4 is only the mid block's grid: the nearest down/up grid is 8.
    assert choose_attention_res(sides, 16, None) == 8
    assert choose_attention_res(sides, 16, 16) == 16
    with pytest.raises(ValueError, match="choose from 8, 16"):
        choose_attention_res(sides, 16, 4)
    # SD 1.x: latent 64 -> 16.
    assert choose_attention_res({"down_blocks.2.x": 16, "down_blocks.1.x": 32}, 64, None) == 16


def _unet_inputs(unet: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(2, 4, 16, 16), torch.tensor(500), torch.randn(2, 6, 16)


def test_installed_unet_gives_the_same_prediction_and_records_only_the_grid() -> None:
    unet = build_unet(ModelSize(unet_channels=(8, 16, 16), unet_layers=1, heads=2, text_width=16))
    unet.eval()
    latents, t, context = _unet_inputs(unet)
    unet.set_attn_processor(AttnProcessor())
    with torch.no_grad():
        expected = unet(latents, t, encoder_hidden_states=context).sample

    sides = cross_attention_sides(unet, 16)
    record = [n for n, s in sides.items() if s == 8 and not n.startswith("mid")]
    install_processors(unet, record)
    store = AttentionStore(res=8)
    assert sorted(store.attach(unet)) == sorted(record)
    with torch.no_grad(), store.recording():
        out = unet(latents, t, encoder_hidden_states=context).sample
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert sorted(store.layers) == sorted(record)
    maps = store.maps()  # (B, 8, 8, T), heads read from the model (2 here)
    assert maps.shape == (2, 8, 8, 6)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 8, 8))

    # Early stop: the same maps, without running the layers after the last recorded one.
    with torch.no_grad():
        early = run_until_collected(store, lambda: unet(latents, t, encoder_hidden_states=context))
    torch.testing.assert_close(early, maps)
    with pytest.raises(ValueError, match="not attention layers"):
        install_processors(unet, ["nope.processor"])


def test_model_with_other_heads_and_token_count() -> None:
    """Heads and tokens come from the model: 3 heads and a 12-token text encoder work."""
    unet = build_unet(ModelSize(unet_channels=(24, 24, 24), unet_layers=1, heads=3, text_width=12))
    sides = cross_attention_sides(unet, 16)
    record = [n for n, s in sides.items() if s == 16]
    install_processors(unet, record)
    store = AttentionStore(res=16)
    store.attach(unet)
    with torch.no_grad(), store.recording():
        unet(torch.randn(1, 4, 16, 16), 10, encoder_hidden_states=torch.randn(1, 12, 12))
    assert store.maps().shape == (1, 16, 16, 12)
