"""The learning stages' attention supervision: explicit attention only where the loss reads
it, one set of maps per pass under gradient checkpointing, and the planner counting them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from layoutedit.attention_recording import RecordingAttnProcessor
from layoutedit.config import LearnConfig
from layoutedit.learning.attention_supervision import (
    mask_attention_loss,
    recording_attention,
    supervised_layers,
)
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.shapes.architecture import TEST_TINY, build_unet
from layoutedit_cuda import CudaBackend

SIDE = TEST_TINY.latent_size


def _fused_unet() -> torch.nn.Module:
    """The tiny UNet with the cuda backend's kernel (SDPA) on every layer, as learning
    leaves it after `backend.install_attention(unet, [])`."""
    torch.manual_seed(0)
    unet = build_unet(TEST_TINY)
    CudaBackend(prefer_xformers=False).install_attention(unet, [])
    return unet


def test_only_the_supervised_cross_attention_layers_run_explicitly() -> None:
    unet = _fused_unet()
    wanted = supervised_layers(unet, SIDE)
    sides = cross_attention_sides(unet, SIDE)
    assert wanted and set(wanted) <= set(sides)  # cross-attention (attn2) layers only
    assert all(".attn2." in name and not name.startswith("mid_block") for name in wanted)
    with recording_attention(unet, SIDE):
        procs = unet.attn_processors
        for name, proc in procs.items():
            if name in wanted:
                assert isinstance(proc, RecordingAttnProcessor), name
                assert isinstance(proc.idle, AttnProcessor2_0), name
            else:  # self-attention and the mid block keep the fused kernel
                assert isinstance(proc, AttnProcessor2_0), (name, type(proc).__name__)
        assert any(".attn1." in name for name in procs)
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())


def _supervised_step(unet: torch.nn.Module, checkpointing: bool) -> tuple[int, torch.Tensor]:
    """One training pass with the mask attention loss; (maps kept, gradient of a weight)."""
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, SIDE, SIDE, generator=generator)
    context = torch.randn(2, TEST_TINY.max_length, TEST_TINY.text_width, generator=generator)
    covers = torch.zeros(2, 2, SIDE, SIDE)
    covers[:, 0, :8], covers[:, 1, 8:] = 1.0, 1.0
    selection = torch.zeros(2, 2, TEST_TINY.max_length)
    selection[:, 0, 1], selection[:, 1, 2] = 1.0, 1.0
    weight = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight
    with recording_attention(unet, SIDE) as recorder:
        recorder.reset()
        pred = unet(z, 500, encoder_hidden_states=context).sample
        loss, _ = mask_attention_loss(recorder.probs, covers, selection)
        (loss + pred.square().mean()).backward()
        kept = len(recorder.probs)
    assert weight.grad is not None
    return kept, weight.grad.clone()


def test_checkpointing_recomputation_keeps_one_set_of_maps() -> None:
    plain_unet, ckpt_unet = _fused_unet(), _fused_unet()
    layers = len(supervised_layers(plain_unet, SIDE))
    kept_plain, grad_plain = _supervised_step(plain_unet, checkpointing=False)
    kept_ckpt, grad_ckpt = _supervised_step(ckpt_unet, checkpointing=True)
    assert kept_plain == layers
    assert kept_ckpt == layers  # the backward's recomputation records nothing more
    torch.testing.assert_close(grad_ckpt, grad_plain, rtol=1e-4, atol=1e-6)


def _map_bytes(arch_dir: Path, batch: int) -> int:
    """What the supervision keeps per pass: (B, heads, Q, T) fp32 per supervised layer."""
    unet = build_unet(TEST_TINY)
    sides = cross_attention_sides(unet, SIDE)
    return sum(
        batch * TEST_TINY.heads * sides[name] ** 2 * TEST_TINY.max_length * 4
        for name in supervised_layers(unet, SIDE)
    )


@pytest.mark.parametrize("low_memory", [False, True])
def test_the_planner_counts_the_supervision_maps(tiny_model_dir: Path, low_memory: bool) -> None:
    from layoutedit.planning.archs import load_arch
    from layoutedit.planning.plan import backend_instance, plan_learning

    arch = load_arch(str(tiny_model_dir))
    backend = backend_instance("cpu-fast")
    base = {"ti_batch_size": 2, "ft_batch_size": 2, "low_memory": low_memory}
    plain = plan_learning(arch, LearnConfig(**base), backend, 2)
    supervised_cfg = LearnConfig(**base, attention_loss_weight=0.3)
    supervised = plan_learning(arch, supervised_cfg, backend, 2)
    for phase in ("textual-inversion", "fine-tune"):
        assert plain[phase].peak["attention"] == 0
        # Every supervised layer's map, once (not twice with checkpointing's recomputation).
        assert supervised[phase].peak["attention"] == _map_bytes(tiny_model_dir, 2), phase
        assert supervised[phase].peak_total > plain[phase].peak_total
    # The same code on real tensors: the planned maps are what a CPU step keeps.
    measured = plan_learning(arch, supervised_cfg, backend, 2, device="cpu")
    for phase in ("textual-inversion", "fine-tune"):
        assert measured[phase].peak["attention"] == supervised[phase].peak["attention"]
        ratio = measured[phase].peak_total / supervised[phase].peak_total
        assert ratio == pytest.approx(1.0, abs=0.05), phase
