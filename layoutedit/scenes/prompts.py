"""Placeholder tokens, the scene prompt, and where the placeholders sit in the tokenized prompt.

Token positions always come from tokenizing the prompt itself (never typed in by a user), so
they stay right for any prompt template, any object names and any tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from layoutedit.errors import UserError

OBJECTS_FIELD = "{objects}"


def placeholder_token(name: str) -> str:
    """The placeholder token of an object name: `"potted plant"` -> `"<potted_plant>"`.

    Lower-cased (the CLIP tokenizer lower-cases its input), runs of whitespace become one
    underscore, and angle brackets are dropped so the token has exactly one pair.

    Raises:
        UserError: the name has no usable characters, holds a control character, or makes a
            token of the special-token form `<|...|>`.
    """
    if any((ord(c) < 32 and not c.isspace()) or ord(c) == 127 for c in name):
        raise UserError(f"object name {name!r} holds a control character; rename it")
    core = re.sub(r"\s+", "_", name.strip().lower()).replace("<", "").replace(">", "")
    core = core.strip("_")
    if not core:
        raise UserError(f"object name {name!r} has no letters or digits to make a token from")
    if re.fullmatch(r"\|.*\|", core):
        # `<|endoftext|>` is CLIP's end and padding token: learning its row would change
        # every prompt. The model's own tokens are checked again when it is loaded.
        raise UserError(
            f"object name {name!r} makes the token <{core}>, the form of the text encoder's "
            "special tokens (<|endoftext|>); rename it"
        )
    return f"<{core}>"


def join_objects(words: Sequence[str]) -> str:
    """English list of words: `["<a>", "<b>", "<c>"]` -> `"<a>, <b> and <c>"`."""
    items = list(words)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} and {items[-1]}"


def scene_prompt(template: str, words: Sequence[str]) -> str:
    """Fill the template's `{objects}` field with `join_objects(words)`.

    Only `{objects}` is replaced (plain text replacement, so other braces stay literal).

    Raises:
        UserError: the template has no `{objects}` field.
    """
    if OBJECTS_FIELD not in template:
        raise UserError(
            f"scene.prompt_template {template!r} has no {OBJECTS_FIELD} field to put the objects in"
        )
    return template.replace(OBJECTS_FIELD, join_objects(words))


def token_positions(tokenizer: Any, prompt: str, tokens: Sequence[str]) -> dict[str, int]:
    """Index of each token in the prompt's `input_ids` (the start token is index 0).

    Args:
        tokenizer: a Hugging Face tokenizer (e.g. `CLIPTokenizer`) to which every token in
            `tokens` has already been added as a single vocabulary entry.
        prompt: the text, e.g. `"a high quality picture of <cat>, <pot> and <plant>"`.
        tokens: the placeholders to find, e.g. `("<cat>", "<pot>", "<plant>")`.

    Returns:
        token -> position of its first occurrence.

    Raises:
        ValueError: a token is not one vocabulary entry of the tokenizer, or not in the prompt
            (a programming error: the caller adds tokens and builds the prompt).
        UserError: a token lies beyond the text encoder's length, so truncation would cut it.
    """
    ids: list[int] = list(tokenizer(prompt, truncation=False)["input_ids"])
    max_length = int(getattr(tokenizer, "model_max_length", 77))
    unk_id = getattr(tokenizer, "unk_token_id", None)
    positions: dict[str, int] = {}
    for token in tokens:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or (
            token_id == unk_id and token != getattr(tokenizer, "unk_token", None)
        ):
            raise ValueError(f"{token} is not in the tokenizer's vocabulary; add it first")
        if token_id not in ids:
            raise ValueError(f"{token} does not occur in the prompt {prompt!r}")
        position = ids.index(token_id)
        # Truncation keeps max_length - 1 tokens and puts the end token last.
        if position > max_length - 2:
            raise UserError(
                f"the prompt is too long: {token} is token {position} but the text encoder reads "
                f"only {max_length} tokens; use shorter object names or prompt_template"
            )
        positions[token] = position
    return positions
