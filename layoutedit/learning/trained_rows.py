"""The embedding rows a learning stage trains, as small parameters spliced into the lookup.

Textual inversion (and the fine-tune's extra tokens) change a few rows of each text encoder's
input embedding table: a handful of placeholders out of 49,408 tokens on SD 1.x. Training the
whole table would keep a gradient, two Adam moments and a frozen copy of all of it (about
0.6 GiB fp32 per SD 1.5 table) only to put every other row back after each step. Instead each
table gets a `(n, D)` parameter holding its trained rows, and a forward hook on the
`nn.Embedding` replaces the looked-up vectors of those token ids with the parameter's rows.
The optimiser holds only these parameters; the table itself stays frozen (no gradient).

The update is the same as training the table: a row's gradient is the sum of the gradients
of the positions where its token occurs either way, AdamW acts elementwise, and its weight
decay reaches only the trained rows (the rest were restored before). The table is kept in
step by `write_back` after every optimiser step and when the splice ends, so anything that
reads it (checkpoints, the concept, the next stage) sees the learned rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from layoutedit.learning.checkpoints import adam_state, set_adam_state
from layoutedit.learning.tokens import embedding_tables, encoder_token_ids

if TYPE_CHECKING:
    from layoutedit.loading.model_loading import LoadedModel


def splice_rows(
    ids: torch.Tensor, looked_up: torch.Tensor, trained_ids: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """The embedding lookup with the trained tokens' vectors taken from `rows`.

    Args:
        ids: (B, L) token ids the embedding looked up.
        looked_up: (B, L, D) what the frozen table returned.
        trained_ids: (n,) int64 ids of the trained tokens.
        rows: (n, D) their trainable rows (row i belongs to `trained_ids[i]`).

    Returns:
        (B, L, D): `rows[i]` where `ids == trained_ids[i]`, `looked_up` elsewhere. Gradients
        reach `rows` only through the positions of its tokens (a gather, so the values are
        exactly the rows', as a table lookup would give).
    """
    match = ids[..., None] == trained_ids  # (B, L, n)
    hit = match.any(dim=-1, keepdim=True)  # (B, L, 1)
    # Positions without a trained token pick row 0 and are then discarded by `where`.
    which = match.to(torch.uint8).argmax(dim=-1)  # (B, L)
    picked = rows[which].to(looked_up.dtype)  # (B, L, D)
    return torch.where(hit, picked, looked_up)


@dataclass
class TrainedRows:
    """The rows a stage trains in every text encoder's table (two for SDXL).

    Attributes:
        embeddings: per encoder, its input `nn.Embedding` (V_e rows of D_e), frozen.
        ids: per encoder, the token ids that learn (the same tokens in each tokenizer).
        params: per encoder, the (len(ids), D_e) trainable rows, fp32 whatever the table's
            dtype (what the optimiser steps; a half table gets them cast at the splice).
    """

    embeddings: list[torch.nn.Embedding]
    ids: list[list[int]]
    params: list[torch.nn.Parameter]
    _handles: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, model: LoadedModel, tokens: Sequence[str]) -> TrainedRows:
        """The rows of `tokens` in every table of `model`, as they are now."""
        return cls.for_ids(embedding_tables(model), encoder_token_ids(model, tokens))

    @classmethod
    def for_ids(
        cls, embeddings: Sequence[torch.nn.Embedding], ids: Sequence[Sequence[int]]
    ) -> TrainedRows:
        """Trainable copies of rows `ids[e]` of table `embeddings[e]` (the planner's entry:
        its meta models have no tokenizer)."""
        params = []
        for embedding, encoder_ids in zip(embeddings, ids, strict=True):
            weight = embedding.weight
            index = torch.tensor(list(encoder_ids), device=weight.device)
            rows = weight.detach()[index].float().clone()  # fp32 master rows
            params.append(torch.nn.Parameter(rows, requires_grad=False))
        return cls(list(embeddings), [list(i) for i in ids], params)

    @property
    def tables(self) -> list[torch.Tensor]:
        """Per encoder, the (V_e, D_e) embedding weight."""
        return [embedding.weight for embedding in self.embeddings]

    @contextlib.contextmanager
    def spliced(self) -> Iterator[None]:
        """Every encoder's lookup reads the trained rows from `params` for the block; the
        table holds their values afterwards (an interrupted stage included)."""
        for embedding, ids, param in zip(self.embeddings, self.ids, self.params, strict=True):
            trained = torch.tensor(ids, device=embedding.weight.device)

            def hook(
                module: Any,
                args: tuple[Any, ...],
                output: torch.Tensor,
                trained: torch.Tensor = trained,
                param: torch.Tensor = param,
            ) -> torch.Tensor:
                return splice_rows(args[0], output, trained, param)

            self._handles.append(embedding.register_forward_hook(hook))
        try:
            yield
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            self.write_back()

    def write_back(self) -> None:
        """Copy the trained rows into their tables (in place)."""
        with torch.no_grad():
            for table, ids, param in zip(self.tables, self.ids, self.params, strict=True):
                index = torch.tensor(ids, device=table.device)
                table[index] = param.detach().to(table.dtype)

    @staticmethod
    def _tag(encoder: int) -> str:
        # The first table's tensors keep the names of single-encoder checkpoints.
        return "" if encoder == 0 else f"enc{encoder + 1}."

    def state(self, optimizer: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
        """Checkpoint tensors of each table's trained rows: `rows` (n, D) and their optimiser
        moments (`{prefix}exp_avg`, `{prefix}exp_avg_sq` (n, D), `{prefix}step`); the second
        table's under `enc2.`. The names and shapes are those of the whole-table checkpoints
        of earlier versions, so either resumes the other."""
        out: dict[str, torch.Tensor] = {}
        for e, param in enumerate(self.params):
            tag = self._tag(e)
            out[tag + "rows"] = param.detach()
            for key, value in adam_state(optimizer, param).items():
                out[f"{tag}{prefix}{key}"] = value
        return out

    def fits(self, tensors: Mapping[str, torch.Tensor]) -> bool:
        """Whether checkpoint tensors hold rows for every table."""
        return all(f"{self._tag(e)}rows" in tensors for e in range(len(self.params)))

    def load_state(
        self, tensors: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer, prefix: str
    ) -> None:
        """Put rows and moments saved by `state` back (into the parameters and the tables)."""
        for e, param in enumerate(self.params):
            tag = self._tag(e)
            with torch.no_grad():
                param.copy_(tensors[tag + "rows"].to(param.device, param.dtype))
            moments = {
                key: tensors[f"{tag}{prefix}{key}"].to(param.dtype)
                for key in ("exp_avg", "exp_avg_sq")
                if f"{tag}{prefix}{key}" in tensors
            }
            if moments and f"{tag}{prefix}step" in tensors:
                set_adam_state(optimizer, param, {**moments, "step": tensors[f"{tag}{prefix}step"]})
        self.write_back()
