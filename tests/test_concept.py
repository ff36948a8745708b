"""Concept files: round trip, atomic replacement, applying, and the diffusers exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from layoutedit.errors import UserError
from layoutedit.learning.concept import Concept, apply_concept, export_diffusers
from layoutedit.learning.finetune import kv_parameters
from layoutedit.loading.model_loading import LoadedModel, load_model

# Tiny ops: one intra-op thread is much faster on a busy 2-core machine.

TOKENS = ("<red_circle>", "<blue_square>")
EXTRA = ("<new0>", "<new1>")


def _concept(model: LoadedModel, seed: int = 0) -> Concept:
    gen = torch.Generator().manual_seed(seed)
    width = model.text_encoder.get_input_embeddings().weight.shape[1]
    embeddings = {t: torch.randn(width, generator=gen) for t in (*TOKENS, *EXTRA)}
    kv = {
        name: p.detach() + 0.1 * torch.randn(p.shape, generator=gen)
        for name, p in kv_parameters(model).items()
    }
    prompt = "a high quality picture of <red_circle> and <blue_square> <new0> <new1>"
    return Concept(TOKENS, EXTRA, embeddings, kv, prompt, {"model_fingerprint": model.fingerprint})


def _out(model: LoadedModel, prompt: str) -> torch.Tensor:
    x = torch.randn(
        1, 4, model.latent_size, model.latent_size, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        return model.unet(x, 300, model.encode_prompts([prompt])).sample


def test_save_load_round_trip(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    concept = _concept(model)
    concept.save(tmp_path / "c")
    loaded = Concept.load(tmp_path / "c")
    assert loaded.tokens == TOKENS and loaded.extra_tokens == EXTRA
    assert loaded.prompt == concept.prompt and loaded.meta == concept.meta
    for token in concept.all_tokens:
        assert torch.equal(loaded.embeddings[token], concept.embeddings[token])
    assert loaded.kv_weights.keys() == concept.kv_weights.keys()
    assert all(torch.equal(loaded.kv_weights[k], v) for k, v in concept.kv_weights.items())
    assert all(".attn2.to_k." in k or ".attn2.to_v." in k for k in loaded.kv_weights)


def test_save_replaces_atomically(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    (tmp_path / "out").mkdir()
    _concept(model, seed=0).save(tmp_path / "out" / "c")
    second = _concept(model, seed=1)
    second.save(tmp_path / "out" / "c")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c"]  # no temp folders
    loaded = Concept.load(tmp_path / "out" / "c")
    assert torch.equal(loaded.embeddings["<new0>"], second.embeddings["<new0>"])


def test_applied_concept_gives_identical_outputs(tiny_model_dir: Path, tmp_path: Path) -> None:
    first = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    concept = _concept(first)
    apply_concept(first, concept)
    concept.save(tmp_path / "c")
    second = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    apply_concept(second, Concept.load(tmp_path / "c"))
    apply_concept(second, Concept.load(tmp_path / "c"))  # twice is harmless
    assert len(second.tokenizer) == len(first.tokenizer)
    torch.testing.assert_close(
        _out(second, concept.prompt), _out(first, concept.prompt), rtol=0, atol=0
    )
    base = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    # The concept really changes the prediction (otherwise the test above proves nothing).
    assert not torch.allclose(_out(base, "a red circle"), _out(second, "a red circle"))


def test_concept_of_another_model_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    concept = _concept(model)
    concept.meta["model_fingerprint"] = "0" * 64
    with pytest.raises(UserError, match="another base model"):
        apply_concept(model, concept)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a concept folder"):
        Concept.load(tmp_path)
    (tmp_path / "concept.json").write_text(json.dumps({"format": 99}))
    (tmp_path / "concept.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="damaged concept"):
        Concept.load(tmp_path)


def test_diffusers_exports_load_in_diffusers(tiny_model_dir: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    concept = _concept(model)
    apply_concept(model, concept)
    folder = export_diffusers(concept, tmp_path / "export", list(model.unet.attn_processors))

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    for token in concept.all_tokens:
        pipe.load_textual_inversion(folder / f"learned_embeds-{token.strip('<>')}.safetensors")
    pipe.unet.load_attn_procs(
        folder, weight_name="pytorch_custom_diffusion_weights.safetensors", _pipeline=pipe
    )
    procs = {type(p).__name__ for n, p in pipe.unet.attn_processors.items() if ".attn2." in n}
    assert procs == {"CustomDiffusionAttnProcessor"}
    ids = model.token_ids([concept.prompt])
    assert (
        ids.tolist()
        == pipe.tokenizer(
            [concept.prompt], padding="max_length", max_length=16, truncation=True
        ).input_ids
    )
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = pipe.unet(x, 300, pipe.text_encoder(ids)[0]).sample
    torch.testing.assert_close(theirs, _out(model, concept.prompt), rtol=1e-4, atol=1e-5)

    # The plain partial state dict loads into a bare UNet too.
    fresh = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    fresh.unet.load_state_dict(load_file(folder / "unet_kv.safetensors"), strict=False)
    for name, param in kv_parameters(fresh).items():
        assert torch.equal(param, concept.kv_weights[name])
