"""Trained rows spliced into an embedding lookup: the same update as training the whole table
and restoring the other rows, with an optimiser that holds only the trained rows."""

from __future__ import annotations

import torch

from layoutedit.learning.trained_rows import TrainedRows, splice_rows

VOCAB, DIM, TRAINED = 12, 5, [3, 7]


def _embedding(seed: int = 0) -> torch.nn.Embedding:
    torch.manual_seed(seed)
    embedding = torch.nn.Embedding(VOCAB, DIM)
    embedding.requires_grad_(False)
    return embedding


def _loss(embedding: torch.nn.Embedding, head: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    vectors = embedding(ids)  # (B, L, D)
    return ((vectors @ head).tanh() ** 2).mean()


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(0, VOCAB, (2, 6), generator=gen) for _ in range(4)]


def test_splice_replaces_only_the_trained_tokens_vectors() -> None:
    table = torch.randn(VOCAB, DIM)
    rows = torch.randn(len(TRAINED), DIM)
    ids = torch.tensor([[3, 0, 7, 3], [1, 2, 7, 11]])
    out = splice_rows(ids, table[ids], torch.tensor(TRAINED), rows)
    expected = table.clone()
    expected[TRAINED] = rows
    assert torch.equal(out, expected[ids])


def test_spliced_rows_learn_as_the_whole_table_with_the_rest_restored() -> None:
    head = torch.randn(DIM, 3, generator=torch.Generator().manual_seed(2))
    batches = _batches()

    # Before: the whole table trains, every other row is put back after each step.
    old = _embedding()
    original = old.weight.detach().clone()
    old.weight.requires_grad_(True)
    optimizer = torch.optim.AdamW([old.weight], lr=0.1)
    for ids in batches:
        _loss(old, head, ids).backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            frozen = torch.ones(VOCAB, dtype=torch.bool)
            frozen[TRAINED] = False
            old.weight[frozen] = original[frozen]

    # Now: only (2, D) rows train; the table never gets a gradient.
    new = _embedding()
    rows = TrainedRows.for_ids([new], [TRAINED])
    optimizer = torch.optim.AdamW(rows.params, lr=0.1)
    with rows.spliced():
        rows.params[0].requires_grad_(True)
        for ids in batches:
            _loss(new, head, ids).backward()
            optimizer.step()
            optimizer.zero_grad()
            rows.write_back()
    assert new.weight.grad is None
    assert sum(v.numel() for v in optimizer.state[rows.params[0]].values()) == 2 * 2 * DIM + 1
    torch.testing.assert_close(new.weight, old.weight.detach(), rtol=0, atol=1e-6)
    # The hook is gone: the table alone answers again.
    ids = torch.tensor([TRAINED])
    assert torch.equal(new(ids), new.weight[ids])


def test_state_round_trip_keeps_the_checkpoint_names() -> None:
    first, second = _embedding(0), torch.nn.Embedding(VOCAB, 4)
    rows = TrainedRows.for_ids([first, second], [TRAINED, TRAINED])
    optimizer = torch.optim.AdamW(rows.params, lr=0.1)
    for param in rows.params:
        param.grad = torch.ones_like(param)
    optimizer.step()
    state = rows.state(optimizer, "adam.")
    assert set(state) == {
        f"{tag}{name}"
        for tag in ("", "enc2.")
        for name in ("rows", "adam.exp_avg", "adam.exp_avg_sq", "adam.step")
    }
    assert state["rows"].shape == state["adam.exp_avg"].shape == (len(TRAINED), DIM)
    assert rows.fits(state)

    fresh = [_embedding(5), torch.nn.Embedding(VOCAB, 4)]
    again = TrainedRows.for_ids(fresh, [TRAINED, TRAINED])
    optimizer2 = torch.optim.AdamW(again.params, lr=0.1)
    again.load_state(state, optimizer2, "adam.")
    for e in range(2):
        assert torch.equal(again.params[e], rows.params[e])
        assert torch.equal(fresh[e].weight[TRAINED], rows.params[e].detach())
        assert torch.equal(
            optimizer2.state[again.params[e]]["exp_avg"], state[("", "enc2.")[e] + "adam.exp_avg"]
        )
