"""Object names map one-to-one to placeholder tokens and to exported file names, and never
onto a token the text encoder already uses (issue #20, item 2)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from cli_support import run_cli
from hardening_support import write_scene
from safetensors.torch import load_file

from layoutedit.errors import UserError
from layoutedit.learning.concept import Concept, _token_files, apply_concept, export_diffusers
from layoutedit.learning.tokens import embedding_table, taken_token, token_id
from layoutedit.loading.model_loading import LoadedModel, load_model
from layoutedit.scenes.prompts import placeholder_token

NO_MODEL = "/nonexistent/model-folder"


def _concept(model: LoadedModel, tokens: tuple[str, ...]) -> Concept:
    width = embedding_table(model).weight.shape[1]
    rows = {t: torch.full((width,), float(i)) for i, t in enumerate((*tokens, "<new0>", "<new1>"))}
    prompt = " ".join((*tokens, "<new0>", "<new1>"))
    meta = {"model_fingerprint": model.fingerprint}
    return Concept(tokens, ("<new0>", "<new1>"), rows, {}, prompt, meta)


def test_names_without_ascii_letters_export_to_distinct_files(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    names = ["a.b", "a,b", "🐱", "🐶", "cat", "potted plant"]
    tokens = tuple(placeholder_token(n) for n in names)
    assert len(set(tokens)) == len(tokens)
    concept = _concept(model, tokens)
    folder = export_diffusers(concept, tmp_path / "diffusers", list(model.unet.attn_processors))
    files = sorted(folder.glob("learned_embeds-*.safetensors"))
    assert len(files) == len(concept.all_tokens)  # one file per token: none lost
    held = {next(iter(load_file(f))): f.name for f in files}
    assert set(held) == set(concept.all_tokens)
    # Plain names keep their readable file names.
    assert held["<cat>"] == "learned_embeds-cat.safetensors"
    assert held["<potted_plant>"] == "learned_embeds-potted_plant.safetensors"


def test_two_tokens_that_would_share_a_file_are_an_error_naming_both() -> None:
    suffix = hashlib.sha256(b"<a.b>").hexdigest()[:12]
    for pair in (["<a.b>", f"<a_b-{suffix}>"], ["<Cat>", "<cat>"]):
        with pytest.raises(UserError) as err:
            _token_files(pair)
        assert pair[0] in err.value.line() and pair[1] in err.value.line()


@pytest.mark.parametrize("name", ["<|endoftext|>", "|startoftext|", "<|ENDOFTEXT|>"])
def test_a_label_that_is_a_special_token_is_refused_before_the_model(
    tmp_path: Path, name: str
) -> None:
    labels = {name: [250, 20, 20], "pot": [20, 250, 20], "background": [255, 255, 255]}
    scene = write_scene(tmp_path / "scene", labels=labels)
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "learn", str(scene))
    assert code == 2 and "special tokens" in err and "Traceback" not in err, err


def test_the_tokenizers_own_tokens_cannot_be_placeholders(tiny_model_dir: Path) -> None:
    model = load_model(str(tiny_model_dir))
    tokenizer = model.tokenizer
    assert "special token" in str(taken_token(tokenizer, "<|endoftext|>"))
    assert "special token" in str(taken_token(tokenizer, "<x_<|endoftext|>>"))
    word = next(w for w in tokenizer.get_vocab() if w.isascii() and w.isalpha() and len(w) > 1)
    assert "already a word" in str(taken_token(tokenizer, word))
    assert taken_token(tokenizer, "<red_circle>") is None
    tokenizer.add_tokens(["<red_circle>"])  # another scene's placeholder on the same model
    assert taken_token(tokenizer, "<red_circle>") is None


def test_a_concept_cannot_retrain_the_end_token(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    end = token_id(model, "<|endoftext|>")
    assert end is not None
    before = embedding_table(model).weight[end].clone()
    crafted = _concept(model, ("<|endoftext|>",))
    with pytest.raises(UserError, match="special token"):
        apply_concept(model, crafted)
    assert torch.equal(embedding_table(model).weight[end], before)  # the same row, untouched


def test_an_error_about_a_name_with_a_line_break_stays_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "two\nlines"
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "inspect", str(folder))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "two\\nlines" in err


def test_label_names_with_control_characters_are_refused(tmp_path: Path) -> None:
    labels = {"c\x00at": [250, 20, 20], "pot": [20, 250, 20], "background": [255, 255, 255]}
    scene = write_scene(tmp_path / "scene", labels=labels)
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "inspect", str(scene), "--json")
    assert code == 2 and "control character" in err, err
    json.dumps(err)  # printable
