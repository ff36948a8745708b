"""Placeholder tokens: adding them to the tokenizers and rows for them to the text encoders.

A placeholder such as `<red_circle>` becomes one new tokenizer entry and one new row of the
text encoder's input embedding table (method.md Stage 1 step 1). Its row starts as the mean
of the rows of the words it stands for, so learning starts from the plain name.

A model with two text encoders (SDXL) gets each placeholder in both tokenizers and a row in
both tables; `encoder` picks the table (0: the first encoder, 1: `text_encoder_2`). Token ids
are the first tokenizer's unless asked per encoder (`encoder_token_ids`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from layoutedit.errors import UserError

if TYPE_CHECKING:
    from layoutedit.loading.model_loading import LoadedModel


def embedding_table(model: LoadedModel, encoder: int = 0) -> torch.nn.Embedding:
    """A text encoder's input token embedding (rows: vocabulary, columns: D)."""
    table = model.text_encoders[encoder].get_input_embeddings()
    assert isinstance(table, torch.nn.Embedding)
    return table


def embedding_tables(model: LoadedModel) -> list[torch.nn.Embedding]:
    """Every text encoder's input token embedding, in `model.text_encoders` order."""
    return [embedding_table(model, i) for i in range(len(model.text_encoders))]


def _tokenizer_id(tokenizer: Any, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    if (
        not isinstance(tid, int)
        or tid is None
        or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token)
    ):
        return None
    return int(tid)


def token_id(model: LoadedModel, token: str, encoder: int = 0) -> int | None:
    """Id of `token` if it is one entry of the encoder's tokenizer vocabulary, else None."""
    return _tokenizer_id(model.tokenizers[encoder], token)


def encoder_token_ids(model: LoadedModel, tokens: Sequence[str]) -> list[list[int]]:
    """Per text encoder, the ids of `tokens` in its tokenizer (all must be there)."""
    out = []
    for encoder in range(len(model.text_encoders)):
        ids = [token_id(model, t, encoder) for t in tokens]
        missing = [t for t, i in zip(tokens, ids, strict=True) if i is None]
        if missing:
            raise ValueError(f"{missing[0]} is not in tokenizer {encoder + 1}")
        out.append([int(i) for i in ids if i is not None])
    return out


def _ensure_tokens(model: LoadedModel, tokens: list[str]) -> dict[str, int]:
    """Add the missing tokens to every tokenizer; grow each embedding table to match.

    Returns:
        token -> id in the first tokenizer.
    """
    for encoder, (tokenizer, text_encoder) in enumerate(
        zip(model.tokenizers, model.text_encoders, strict=True)
    ):
        missing = [t for t in tokens if token_id(model, t, encoder) is None]
        if missing:
            tokenizer.add_tokens(missing)
        if len(tokenizer) > embedding_table(model, encoder).num_embeddings:
            # New rows are overwritten at once, so skip transformers' covariance-based init.
            text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        for token in tokens:
            if token_id(model, token, encoder) is None:  # not taken as one entry
                raise UserError(f"cannot add {token!r} as a single token to this tokenizer")
    return {token: int(token_id(model, token) or 0) for token in tokens}


def init_row(model: LoadedModel, text: str, encoder: int = 0) -> torch.Tensor:
    """(D,) mean embedding row of the tokens of `text` (no start/end tokens)."""
    ids = model.tokenizers[encoder](text, add_special_tokens=False).input_ids
    if not ids:
        raise UserError(f"cannot initialise a token from {text!r}: it has no tokens")
    table = embedding_table(model, encoder).weight
    return table[torch.tensor(ids, device=table.device)].detach().float().mean(dim=0)


def taken_token(tokenizer: Any, token: str) -> str | None:
    """Why `token` cannot be a placeholder of this tokenizer, or None when it can.

    A placeholder gets its own trained embedding row, so it must not be, or hold, a special
    token (training `<|endoftext|>`'s row would change every prompt), nor be a word of the
    base vocabulary (its row is shared with ordinary text). Tokens added earlier (the
    placeholders of another scene on the same model) are fine.
    """
    specials = [str(t) for t in getattr(tokenizer, "all_special_tokens", [])]
    if token in specials:
        return f"it is the tokenizer's special token {token}"
    inside = [t for t in specials if len(t) > 1 and t in token]
    if inside:
        return f"it holds the tokenizer's special token {inside[0]}"
    added = tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {}
    if token not in added and token in tokenizer.get_vocab():
        return f"{token} is already a word of the model's tokenizer"
    return None


def check_placeholders(model: LoadedModel, tokens: Sequence[str]) -> None:
    """UserError naming the first token that cannot be a placeholder (`taken_token`) in any
    of the model's tokenizers."""
    for tokenizer in model.tokenizers:
        for token in tokens:
            why = taken_token(tokenizer, token)
            if why is not None:
                raise UserError(
                    f"cannot use {token} as an object's placeholder: {why}; rename that object"
                )


def add_placeholders(model: LoadedModel, inits: Mapping[str, str]) -> dict[str, int]:
    """Add placeholder tokens, each initialised from the words of `inits[token]`, to every
    tokenizer and text encoder.

    Args:
        model: the model whose tokenizers and text encoders grow (in place).
        inits: placeholder -> initialising text, e.g. {"<red_circle>": "red circle"}.

    Returns:
        placeholder -> its token id in the first tokenizer.

    Raises:
        UserError: a placeholder is, or holds, a special token or is a word of the base
            vocabulary (`check_placeholders`).
    """
    check_placeholders(model, list(inits))
    # Rows come from the tables before they grow, so a placeholder never starts from another.
    rows = [
        {token: init_row(model, text, encoder) for token, text in inits.items()}
        for encoder in range(len(model.text_encoders))
    ]
    ids = _ensure_tokens(model, list(inits))
    for encoder, encoder_rows in enumerate(rows):
        set_rows(model, encoder_rows, encoder)
    return ids


def set_rows(
    model: LoadedModel, rows: Mapping[str, torch.Tensor], encoder: int = 0
) -> dict[str, int]:
    """Write one encoder's embedding rows for tokens, adding tokens that are missing (to
    every tokenizer). Returns their ids in that encoder's tokenizer."""
    _ensure_tokens(model, list(rows))
    weight = embedding_table(model, encoder).weight
    ids = {token: int(token_id(model, token, encoder) or 0) for token in rows}
    with torch.no_grad():
        for token, row in rows.items():
            if row.shape != weight.shape[1:]:
                raise UserError(
                    f"embedding of {token} has size {tuple(row.shape)}, the text encoder "
                    f"expects {tuple(weight.shape[1:])}: learned on another model?"
                )
            weight[ids[token]] = row.to(device=weight.device, dtype=weight.dtype)
    return ids


def get_rows(model: LoadedModel, tokens: list[str], encoder: int = 0) -> dict[str, torch.Tensor]:
    """Current (D,) fp32 CPU embedding row of each token in one encoder's table."""
    weight = embedding_table(model, encoder).weight
    out = {}
    for token in tokens:
        tid = token_id(model, token, encoder)
        if tid is None:
            raise ValueError(f"{token} is not in the tokenizer")
        out[token] = weight[tid].detach().float().cpu().clone()
    return out
