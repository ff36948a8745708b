"""DDIM inversion maths, checked exactly with a stub model whose prediction is known."""

from __future__ import annotations

import pytest
import torch

from layoutedit.counting import UNetCounter
from layoutedit.editing.denoising import UNetRunner, cfg_prediction, scheduler_pair
from layoutedit.editing.inversion import Inversion, invert
from layoutedit.editing.sampling import sample
from layoutedit.shapes.architecture import build_scheduler


class StubUNet(torch.nn.Module):
    """Predicts noise that depends on the timestep and the prompt, not on the latent.

    Then the DDIM inversion approximation (predicting at level t from the latent one level
    below) is exact, so inverting and sampling back must return z0 up to rounding.
    """

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.pattern = torch.randn(1, 4, 8, 8, generator=gen)

    def forward(self, latents: torch.Tensor, t: torch.Tensor, encoder_hidden_states: torch.Tensor):  # type: ignore[no-untyped-def]
        scale = torch.sin(torch.as_tensor(t, dtype=torch.float32) / 137.0)
        prompt = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        out = (scale + prompt) * self.pattern.expand(latents.shape[0], -1, -1, -1)
        return type("Out", (), {"sample": out})()


def _setup(steps: int = 20, **config: object):  # type: ignore[no-untyped-def]
    cfg = dict(build_scheduler().config)
    cfg.update(config)
    sampler, inverter = scheduler_pair(cfg, steps)
    runner = UNetRunner(StubUNet(), counter=UNetCounter())
    gen = torch.Generator().manual_seed(1)
    z0 = torch.randn(1, 4, 8, 8, generator=gen)
    cond = torch.randn(1, 5, 6, generator=gen)
    return sampler, inverter, runner, z0, cond


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_invert_then_sample_recovers_the_source(spacing: str) -> None:
    sampler, inverter, runner, z0, cond = _setup(timestep_spacing=spacing)
    inversion = invert(runner, inverter, z0, cond)
    assert runner.counter.forward == 20  # one conditional call per step
    assert inversion.latents.shape == (20, 4, 8, 8)
    assert torch.equal(inversion.timesteps, sampler.timesteps)
    # The noisiest latent is far from the source...
    assert (inversion.latents[0] - z0).abs().max() > 0.5
    # ...and sampling back from it with the same prompt and guidance 1 recovers z0.
    seen = []
    out = sample(
        runner,
        sampler,
        inversion.latents[:1],
        cond,
        torch.zeros_like(cond),
        1.0,
        on_step=lambda i, t, z: seen.append(z.clone()),
    )
    torch.testing.assert_close(out.latents, z0, rtol=0, atol=1e-5)
    assert out.final_losses is None
    # The latent entering sampling step i is the inverted z*_t of the same timestep.
    for i, z in enumerate(seen):
        torch.testing.assert_close(z[0], inversion.latents[i], rtol=0, atol=1e-4)


def test_guidance_scale_one_skips_the_unconditional_call() -> None:
    sampler, _, runner, z0, cond = _setup()
    t = sampler.timesteps[0]
    cfg_prediction(runner, z0, t, cond, cond * 0, 1.0, batch=False)
    assert runner.counter.forward == 1
    guided, e_c = cfg_prediction(runner, z0, t, cond, cond * 0, 5.0, batch=False)
    batched, _ = cfg_prediction(runner, z0, t, cond, cond * 0, 5.0, batch=True)
    assert runner.counter.forward == 1 + 2 + 2  # a batch of 2 counts as 2
    torch.testing.assert_close(guided, batched)
    e_u = runner(z0, t, cond * 0)
    torch.testing.assert_close(guided, e_u + 5.0 * (e_c - e_u))


def test_inversion_tensors_round_trip() -> None:
    _, inverter, runner, z0, cond = _setup(steps=5)
    inversion = invert(runner, inverter, z0, cond)
    back = Inversion.from_tensors(inversion.tensors())
    assert back.steps == 5
    assert torch.equal(back.latents, inversion.latents)
    assert torch.equal(back.timesteps, inversion.timesteps)
    torch.testing.assert_close(back.at_step(2)[0], inversion.latents[2])


def test_linspace_configs_fall_back_to_an_invertible_spacing() -> None:
    sampler, inverter = scheduler_pair(
        {**build_scheduler().config, "timestep_spacing": "linspace"}, 7
    )
    assert torch.equal(sampler.timesteps.flip(0), inverter.timesteps)
