"""Placeholder tokens: adding them to the tokenizer and rows for them to the text encoder.

A placeholder such as `<red_circle>` becomes one new tokenizer entry and one new row of the
text encoder's input embedding table (method.md Stage 1 step 1). Its row starts as the mean
of the rows of the words it stands for, so learning starts from the plain name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from layoutedit.errors import UserError

if TYPE_CHECKING:
    from layoutedit.loading.model_loading import LoadedModel


def embedding_table(model: LoadedModel) -> torch.nn.Embedding:
    """The text encoder's input token embedding (rows: vocabulary, columns: D)."""
    table = model.text_encoder.get_input_embeddings()
    assert isinstance(table, torch.nn.Embedding)
    return table


def token_id(model: LoadedModel, token: str) -> int | None:
    """Id of `token` if it is one entry of the tokenizer's vocabulary, else None."""
    tid = model.tokenizer.convert_tokens_to_ids(token)
    if (
        not isinstance(tid, int)
        or tid is None
        or (tid == model.tokenizer.unk_token_id and token != model.tokenizer.unk_token)
    ):
        return None
    return int(tid)


def _ensure_tokens(model: LoadedModel, tokens: list[str]) -> dict[str, int]:
    """Add the tokens that are missing; grow the embedding table to the tokenizer's size."""
    missing = [t for t in tokens if token_id(model, t) is None]
    if missing:
        model.tokenizer.add_tokens(missing)
    table = embedding_table(model)
    if len(model.tokenizer) > table.num_embeddings:
        # New rows are overwritten at once, so skip transformers' covariance-based init.
        model.text_encoder.resize_token_embeddings(len(model.tokenizer), mean_resizing=False)
    ids = {}
    for token in tokens:
        tid = token_id(model, token)
        if tid is None:  # the tokenizer would not take it as one entry
            raise UserError(f"cannot add {token!r} as a single token to this tokenizer")
        ids[token] = tid
    return ids


def init_row(model: LoadedModel, text: str) -> torch.Tensor:
    """(D,) mean embedding row of the tokens of `text` (no start/end tokens)."""
    ids = model.tokenizer(text, add_special_tokens=False).input_ids
    if not ids:
        raise UserError(f"cannot initialise a token from {text!r}: it has no tokens")
    table = embedding_table(model).weight
    return table[torch.tensor(ids, device=table.device)].detach().float().mean(dim=0)


def add_placeholders(model: LoadedModel, inits: Mapping[str, str]) -> dict[str, int]:
    """Add placeholder tokens, each initialised from the words of `inits[token]`.

    Args:
        model: the model whose tokenizer and text encoder grow (in place).
        inits: placeholder -> initialising text, e.g. {"<red_circle>": "red circle"}.

    Returns:
        placeholder -> its token id.
    """
    # Rows come from the table before it grows, so a placeholder never starts from another.
    rows = {token: init_row(model, text) for token, text in inits.items()}
    ids = _ensure_tokens(model, list(inits))
    set_rows(model, rows)
    return ids


def set_rows(model: LoadedModel, rows: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Write embedding rows for tokens, adding tokens that are missing. Returns their ids."""
    ids = _ensure_tokens(model, list(rows))
    weight = embedding_table(model).weight
    with torch.no_grad():
        for token, row in rows.items():
            if row.shape != weight.shape[1:]:
                raise UserError(
                    f"embedding of {token} has size {tuple(row.shape)}, the text encoder "
                    f"expects {tuple(weight.shape[1:])}: learned on another model?"
                )
            weight[ids[token]] = row.to(device=weight.device, dtype=weight.dtype)
    return ids


def get_rows(model: LoadedModel, tokens: list[str]) -> dict[str, torch.Tensor]:
    """Current (D,) fp32 CPU embedding row of each token."""
    weight = embedding_table(model).weight
    out = {}
    for token in tokens:
        tid = token_id(model, token)
        if tid is None:
            raise ValueError(f"{token} is not in the tokenizer")
        out[token] = weight[tid].detach().float().cpu().clone()
    return out
