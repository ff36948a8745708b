"""Sampling seeds as one batch (`editing.seed_batch`) against one seed at a time, on a stub
predictor whose attention follows the latent, so the refinement stops at a known pass."""

from __future__ import annotations

import pytest
import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

from layoutedit.attention_recording import AttentionStore
from layoutedit.counting import UNetCounter
from layoutedit.editing.sampling import AttentionGuide, SamplingStats, sample
from layoutedit.editing.seed_batch import batch_update, sample_batch
from layoutedit.loading.conditioning import Conditioning

RES = 2
TOKENS = 4  # start, the object's token, one more word, end


def stub_guide() -> AttentionGuide:
    """One object (token 1) whose target region is the grid's top-left cell."""
    store = AttentionStore(RES)
    store.expected_layers = 1
    regions = torch.zeros(1, RES, RES)
    regions[0, 0, 0] = 1.0
    return AttentionGuide(
        store=store,
        positions=(1,),
        regions=regions,
        last=TOKENS - 1,
        steps=4,
        token_softmax=False,
        scale_factor=2.0,
        max_iter_to_alter=2,
        refinement={0: 0.5},
        max_refinement_steps=8,
    )


class StubPredictor:
    """Token 1's attention logit at each cell is the latent there: (n, 1, RES, RES) in,
    records (n, 1 head, RES * RES, TOKENS) probabilities, returns 0.1 * latents."""

    def __init__(self, store: AttentionStore) -> None:
        self.store = store
        self.counter = UNetCounter()

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor, embeddings: Conditioning):
        self.counter.add(forward=int(latents.shape[0]))
        if self.store.active:
            logits = torch.zeros(latents.shape[0], 1, RES * RES, TOKENS)
            logits[..., 1] = latents.flatten(1)[:, None, :]
            self.store.add("stub", logits.softmax(-1))
        return 0.1 * latents


def starts() -> torch.Tensor:
    """(3, 1, RES, RES): the first starts inside its region (no refinement), the second
    needs one pass, the third six."""
    z = torch.full((3, 1, RES, RES), -4.0)
    z[0, 0, 0, 0] = 4.0
    z[1, 0, 0, 0] = -2.0
    z[2, 0, 1, :] = -2.0
    return z


def test_batch_refines_each_seed_exactly_as_it_refines_alone() -> None:
    guide = stub_guide()
    predict = StubPredictor(guide.store)
    timestep, cond = torch.tensor(10), torch.zeros(1, TOKENS, 8)
    alone, alone_stats = [], []
    for z in starts():
        stats = SamplingStats()
        alone.append(guide.update(predict, z[None], 0, timestep, cond, predict.counter, stats))
        alone_stats.append(stats)
    alone_counts = predict.counter.as_dict()
    predict.counter = UNetCounter()
    batch_stats = [SamplingStats() for _ in range(3)]
    together = batch_update(
        guide, predict, starts(), 0, timestep, cond, predict.counter, batch_stats
    )
    passes = [s.refinement_passes for s in alone_stats]
    assert passes[0] == 0 and len(set(passes)) == 3  # seeds stop at different passes
    assert [s.refinement_passes for s in batch_stats] == passes
    # The losses of a batch of 3 and of one sample come from reductions over other shapes
    # (other kernels): equal to float32 rounding, not bit for bit.
    for batched, single in zip(batch_stats, alone_stats, strict=True):
        assert batched.loss_trace == pytest.approx(single.loss_trace, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(together, torch.cat(alone))
    # A pass over n samples counts n forwards and n backwards, as n passes of one would.
    assert predict.counter.as_dict() == alone_counts


def test_sample_batch_matches_sample_per_seed_with_eta_noise() -> None:
    guide = stub_guide()
    predict = StubPredictor(guide.store)
    sampler = DDIMScheduler(num_train_timesteps=100, clip_sample=False)
    sampler.set_timesteps(4)
    cond, uncond = torch.zeros(1, TOKENS, 8), torch.ones(1, TOKENS, 8)
    seeds = (3, 5, 7)
    alone = [
        sample(
            predict,
            sampler,
            z[None],
            cond,
            uncond,
            2.0,
            guide=guide,
            eta=0.5,
            generator=torch.Generator().manual_seed(seed),
        )
        for z, seed in zip(starts(), seeds, strict=True)
    ]
    together = sample_batch(
        predict,
        sampler,
        starts(),
        cond,
        uncond,
        2.0,
        [torch.Generator().manual_seed(seed) for seed in seeds],
        batch_cfg=True,
        guide=guide,
        eta=0.5,
    )
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(b.latents, a.latents)
        assert a.final_losses is not None and b.final_losses is not None
        torch.testing.assert_close(b.final_losses, a.final_losses)
        assert b.stats == a.stats
