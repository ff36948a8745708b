"""Low-memory editing checkpoints the guidance's gradient pass: the recomputation replays the
recorded attention, so maps and gradients are the plain pass's and nothing is recorded twice."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from layoutedit.attention_recording import (
    AttentionStore,
    RecordingAttnProcessor,
    install_processors,
    run_until_collected,
)
from layoutedit.config import EditConfig
from layoutedit.editing.low_memory import guidance_checkpointing, prepare_editing
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.shapes.architecture import ModelSize, build_unet


def _recorded_unet(idle_sdpa: bool) -> tuple[torch.nn.Module, AttentionStore]:
    torch.manual_seed(0)
    unet = build_unet(ModelSize(unet_channels=(8, 16, 16), unet_layers=1, heads=2, text_width=16))
    unet.eval().requires_grad_(False)
    sides = cross_attention_sides(unet, 16)
    record = [n for n, s in sides.items() if s == 8 and not n.startswith("mid")]
    # The fast backends' shape: SDPA everywhere, and as the recorded layers' idle kernel.
    make = AttnProcessor2_0 if idle_sdpa else None
    install_processors(unet, record, **({"make_default": make, "make_idle": make} if make else {}))
    store = AttentionStore(res=8)
    store.attach(unet)
    return unet, store


def _guidance_pass(unet: torch.nn.Module, store: AttentionStore) -> tuple[torch.Tensor, ...]:
    """The guidance's shape of pass: recorded with early stop, a loss on the maps, the
    gradient with respect to the latent."""
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 16, 16, generator=gen).requires_grad_(True)
    context = torch.randn(2, 6, 16, generator=gen)
    t = torch.tensor(500)
    maps = run_until_collected(store, lambda: unet(latents, t, encoder_hidden_states=context))
    loss = 1.0 - maps[..., 1].mean() + maps[..., 2].amax()
    (grad,) = torch.autograd.grad(loss, latents)
    return maps.detach(), grad, torch.tensor(len(store.layers))


@pytest.mark.parametrize("idle_sdpa", [False, True])
def test_checkpointed_guidance_gives_the_plain_maps_and_gradient(
    idle_sdpa: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet, store = _recorded_unet(idle_sdpa)
    plain = _guidance_pass(unet, store)
    explicit_calls: list[bool] = []
    original = RecordingAttnProcessor._explicit

    def counted(self: RecordingAttnProcessor, *args: object) -> torch.Tensor:
        explicit_calls.append(self.replaying)
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(RecordingAttnProcessor, "_explicit", counted)
    guidance_checkpointing(unet)
    checkpointed = _guidance_pass(unet, store)
    torch.testing.assert_close(checkpointed[0], plain[0])
    torch.testing.assert_close(checkpointed[1], plain[1], rtol=1e-4, atol=1e-6)
    assert int(checkpointed[2]) == int(plain[2])  # each layer recorded once
    recorded = explicit_calls.count(False)
    assert recorded == int(plain[2]) and explicit_calls.count(True) == recorded  # replayed
    # After the pass nothing is left replaying (the next recorded pass records).
    assert not any(
        p.replaying for p in unet.attn_processors.values() if isinstance(p, RecordingAttnProcessor)
    )


def test_prepare_editing_checkpoints_only_under_low_memory() -> None:
    class Model:
        unet = build_unet(ModelSize(unet_channels=(8, 16, 16), unet_layers=1, heads=2))

    model = Model()
    prepare_editing(model, EditConfig(low_memory=True))  # type: ignore[arg-type]
    assert model.unet.is_gradient_checkpointing
    prepare_editing(model, EditConfig())  # type: ignore[arg-type]
    assert not model.unet.is_gradient_checkpointing
