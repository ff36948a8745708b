"""Placeholder tokens, the scene prompt, and token positions from a real CLIP tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from layoutedit.errors import UserError
from layoutedit.scenes.prompts import join_objects, placeholder_token, scene_prompt, token_positions
from layoutedit.shapes.tokenizer import write_tokenizer

TEMPLATE = "a high quality picture of {objects}"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> CLIPTokenizer:
    """A CLIP tokenizer whose template words are single tokens; max length 20."""
    folder: Path = tmp_path_factory.mktemp("tok")
    write_tokenizer(folder, ["a", "high", "quality", "picture", "of", "and", "photo"], 20)
    tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    tok.add_tokens(["<cat>", "<pot>", "<plant>", "<potted_plant>"])
    return tok


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("cat", "<cat>"),
        ("potted plant", "<potted_plant>"),
        ("  Potted   Plant ", "<potted_plant>"),
        ("t-shirt", "<t-shirt>"),
        ("<dog>", "<dog>"),
    ],
)
def test_placeholder_token(name: str, token: str) -> None:
    assert placeholder_token(name) == token


def test_placeholder_token_rejects_empty_names() -> None:
    with pytest.raises(UserError):
        placeholder_token(" <> ")


@pytest.mark.parametrize(
    ("words", "text"),
    [
        ([], ""),
        (["<a>"], "<a>"),
        (["<a>", "<b>"], "<a> and <b>"),
        (["<a>", "<b>", "<c>"], "<a>, <b> and <c>"),
    ],
)
def test_join_objects(words: list[str], text: str) -> None:
    assert join_objects(words) == text


def test_scene_prompt_fills_only_the_objects_field() -> None:
    words = ["<cat>", "<pot>", "<plant>"]
    assert scene_prompt(TEMPLATE, words) == "a high quality picture of <cat>, <pot> and <plant>"
    assert scene_prompt("{x} {objects}!", ["<a>"]) == "{x} <a>!"
    with pytest.raises(UserError, match="objects"):
        scene_prompt("a picture", words)


def test_token_positions_come_from_the_tokenized_prompt(tokenizer: CLIPTokenizer) -> None:
    prompt = scene_prompt(TEMPLATE, ["<cat>", "<pot>", "<plant>"])
    positions = token_positions(tokenizer, prompt, ["<cat>", "<pot>", "<plant>"])
    # start, a, high, quality, picture, of, <cat>, ",", <pot>, and, <plant>
    assert positions == {"<cat>": 6, "<pot>": 8, "<plant>": 10}
    ids = tokenizer(prompt)["input_ids"]
    for token, pos in positions.items():
        assert ids[pos] == tokenizer.convert_tokens_to_ids(token)


def test_token_positions_follow_the_template(tokenizer: CLIPTokenizer) -> None:
    prompt = scene_prompt("a photo of {objects}", ["<potted_plant>"])
    assert token_positions(tokenizer, prompt, ["<potted_plant>"]) == {"<potted_plant>": 4}


def test_token_cut_by_max_length_is_a_user_error(tokenizer: CLIPTokenizer) -> None:
    # 17 words push <cat> to position 18; a 20-token encoder keeps positions 0-18 (19 = end).
    ok = scene_prompt("a " * 17 + "{objects}", ["<cat>"])
    assert token_positions(tokenizer, ok, ["<cat>"]) == {"<cat>": 18}
    too_long = scene_prompt("a " * 18 + "{objects}", ["<cat>"])
    with pytest.raises(UserError, match="too long"):
        token_positions(tokenizer, too_long, ["<cat>"])


def test_token_not_in_vocabulary_or_prompt_is_a_programming_error(
    tokenizer: CLIPTokenizer,
) -> None:
    with pytest.raises(ValueError, match="vocabulary"):
        token_positions(tokenizer, "a photo of <dog>", ["<dog>"])
    with pytest.raises(ValueError, match="does not occur"):
        token_positions(tokenizer, "a photo of <cat>", ["<pot>"])
