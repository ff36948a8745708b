"""SDXL models: loading both text encoders, their conditioning, learning and editing end to end.

The model is a tiny random pipeline in the SDXL layout (`build_sdxl_pipeline_folder`): two
tokenizers and CLIP text encoders (the second with a projection), an Euler scheduler config,
and a UNet with text-and-time added embeddings, several transformer layers per block and no
cross-attention at the latent side. Its UNet raises without `added_cond_kwargs`, so every
passing learn or edit shows the pooled embeddings and time ids reached it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import FAST_SETTINGS
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from layoutedit.attention_recording import choose_attention_res
from layoutedit.cli.app import app
from layoutedit.errors import UserError
from layoutedit.learning.concept import Concept, apply_concept
from layoutedit.learning.tokens import init_row
from layoutedit.loading.conditioning import TextConditioning
from layoutedit.loading.model_loading import load_model
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.shapes.architecture import TEST_TINY, SdxlParts, build_sdxl_pipeline_folder
from layoutedit.shapes.world import sample_scene, write_scene_folder

PARTS = SdxlParts()
WIDTHS = (16, PARTS.text_width_2)  # the two encoders' hidden sizes (TEST_TINY: 16)


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sdxl_pipeline_folder(tmp_path_factory.mktemp("sdxl") / "model", TEST_TINY)


def test_an_sdxl_folder_loads_both_encoders_and_conditions_the_unet(sdxl_dir: Path) -> None:
    model = load_model(str(sdxl_dir))
    assert model.family == "sdxl" and len(model.text_encoders) == 2
    assert type(model.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert model.tokenizer_2.pad_token == "!"  # its own tokenizer, not a copy of the first
    with torch.no_grad():
        text = model.encode_text(["a red circle", ""])
        # The penultimate hidden states of both encoders, side by side.
        ids = [
            model.tokenizers[i](
                ["a red circle"], padding="max_length", return_tensors="pt"
            ).input_ids
            for i in (0, 1)
        ]
        states = [
            enc(i, output_hidden_states=True).hidden_states[-2]
            for enc, i in zip(model.text_encoders, ids, strict=True)
        ]
    assert text.embeddings.shape == (2, model.max_length, sum(WIDTHS))
    assert torch.allclose(text.embeddings[:1], torch.cat(states, dim=-1))
    assert text.pooled is not None and text.pooled.shape == (2, PARTS.projection_dim)
    side = float(model.image_size)
    assert text.time_ids is not None
    assert text.time_ids.tolist() == [[side, side, 0.0, 0.0, side, side]] * 2
    # force_zeros_for_empty_prompt: the unconditional row is zeros, as the SDXL pipeline has it
    assert not text.embeddings[1].any() and not text.pooled[1].any()
    z = torch.randn(2, 4, model.latent_size, model.latent_size)
    with torch.no_grad():
        assert model.unet(z, 10, **text.unet_kwargs()).sample.shape == z.shape
        with pytest.raises(TypeError):  # the UNet cannot run without the SDXL extras
            model.unet(z, 10, encoder_hidden_states=text.embeddings)
    both = TextConditioning.cat([text[1:], text[:1]])
    assert torch.equal(both.pooled[1], text.pooled[0])  # type: ignore[index]


def test_sdxl_attention_grids_skip_the_latent_side(sdxl_dir: Path) -> None:
    model = load_model(str(sdxl_dir))
    sides = cross_attention_sides(model.unet, model.latent_size)
    assert set(sides.values()) == {8, 4}  # no cross-attention at 16 x 16, as on SDXL
    assert any(".transformer_blocks.1.attn2" in name for name in sides)
    # The guidance's grid is the latent side / 4 (SDXL at 1024 px: 32 of 128), a grid of
    # down/up layers with cross-attention.
    assert choose_attention_res(sides, model.latent_size, None) == 4
    assert choose_attention_res({"x.attn2.p": 64, "y.attn2.p": 32}, 128, None) == 32
    assert {layer.heads for layer in model.cross_attention_layers} == {TEST_TINY.heads}


def _cli(model: Path, cache: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["--model", str(model), "--backend", "cpu", "--cache-dir", str(cache), *args]
    )
    return result.exit_code, result.output


def test_sdxl_learns_both_encoders_and_edits_the_same_in_a_fresh_process(
    sdxl_dir: Path, tmp_path: Path
) -> None:
    world = sample_scene(5, 2)
    scene = write_scene_folder(world, tmp_path / "scene", layouts=[np.roll(world.labels(), 10, 1)])
    config = tmp_path / "fast.toml"
    config.write_text(FAST_SETTINGS)
    cache = tmp_path / "cache"
    code, output = _cli(
        sdxl_dir,
        cache,
        "learn",
        str(scene),
        "--config",
        str(config),
        "--out",
        str(tmp_path / "learned"),
    )
    assert code == 0, output
    folder = tmp_path / "learned" / "concept"
    concept = Concept.load(folder)
    assert concept.meta["family"] == "sdxl"
    tensors = load_file(str(folder / "concept.safetensors"))
    for token in concept.all_tokens:
        assert tensors[f"embeddings/{token}"].shape == (WIDTHS[0],)
        assert tensors[f"embeddings_2/{token}"].shape == (WIDTHS[1],)
    # Both encoders' placeholder rows learned: they left their initial value (mean of the
    # name's rows) in each table.
    base = load_model(str(sdxl_dir))
    name, token = concept.meta["names"][0], concept.tokens[0]
    for encoder, rows in enumerate((concept.embeddings, concept.embeddings_2)):
        assert not torch.allclose(rows[token], init_row(base, name, encoder))

    args = ["edit", str(scene), "--config", str(config), "--concept", str(folder), "--seeds", "0"]
    code, output = _cli(sdxl_dir, cache, *args, "--out", str(tmp_path / "here"))
    assert code == 0, output
    image = Image.open(tmp_path / "here" / "layout1" / "seed-0.png")
    assert image.size == (world.image.shape[1], world.image.shape[0])

    # The concept alone (a fresh process, a fresh cache) gives the same image.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    fresh = [
        sys.executable,
        "-m",
        "layoutedit",
        "--model",
        str(sdxl_dir),
        "--backend",
        "cpu",
        "--cache-dir",
        str(tmp_path / "cache2"),
        *args,
        "--out",
        str(tmp_path / "fresh"),
    ]
    run = subprocess.run(fresh, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    again = Image.open(tmp_path / "fresh" / "layout1" / "seed-0.png")
    assert np.array_equal(np.asarray(image), np.asarray(again))


def test_concepts_of_one_family_never_apply_to_the_other(
    sdxl_dir: Path, tiny_model_dir: Path
) -> None:
    sdxl, sd1 = load_model(str(sdxl_dir)), load_model(str(tiny_model_dir))
    assert sdxl.fingerprint != sd1.fingerprint
    rows = {t: torch.zeros(WIDTHS[0]) for t in ("<a>", "<new0>", "<new1>")}
    one = Concept(("<a>",), ("<new0>", "<new1>"), rows, {}, "<a>", {"family": "sd1"})
    with pytest.raises(UserError, match="learned on sd1, this model is sdxl"):
        apply_concept(sdxl, one)
    two = Concept(
        ("<a>",),
        ("<new0>", "<new1>"),
        rows,
        {},
        "<a>",
        {},
        embeddings_2={t: torch.zeros(WIDTHS[1]) for t in rows},
    )
    with pytest.raises(UserError, match="learned on sdxl"):
        apply_concept(sd1, two)
    apply_concept(sdxl, two)  # a concept with rows for both encoders applies to both
    assert sdxl.tokenizer_2.convert_tokens_to_ids("<a>") != sdxl.tokenizer_2.unk_token_id


def test_sdxl_round_trips_through_the_single_file_layout(sdxl_dir: Path, tmp_path: Path) -> None:
    from layoutedit.loading.single_file import export_single_file

    file = export_single_file(sdxl_dir, tmp_path / "sdxl.safetensors")
    folder, single = load_model(str(sdxl_dir)), load_model(str(file))
    assert single.family == "sdxl" and single.tokenizer_2.pad_token == "!"
    with torch.no_grad():
        a, b = folder.encode_text(["a red circle"]), single.encode_text(["a red circle"])
    # Two storage layouts of the same weights may take other kernels: equal to float32
    # rounding (2.4e-7 seen on an AMD EPYC), not bit for bit.
    assert a.pooled is not None and b.pooled is not None
    torch.testing.assert_close(a.embeddings, b.embeddings, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.pooled, b.pooled, rtol=1e-5, atol=1e-5)


def test_an_sdxl_unet_without_its_second_encoder_is_one_line(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "half")
    path = folder / "unet" / "config.json"
    path.write_text(
        json.dumps({**json.loads(path.read_text()), "addition_embed_type": "text_time"})
    )
    with pytest.raises(UserError, match=r"text_encoder_2/config\.json"):
        load_model(str(folder))


def test_sdxl_learning_options_resume_and_batched_guidance(sdxl_dir: Path, tmp_path: Path) -> None:
    """Prior preservation (guided generation), the placeholder attention loss over SDXL's
    grids, trained placeholder rows in the fine-tune, a resume from checkpoints that holds
    both tables, and an edit with the unconditional and conditional passes in one batch."""
    from edit_support import fast_config, moved_layout, shapes_scene

    from layoutedit.backend import get_backend
    from layoutedit.config import LearnConfig
    from layoutedit.editing.session import edit
    from layoutedit.learning.learn import learn_concept

    cfg = LearnConfig(
        ti_steps=2,
        ti_batch_size=1,
        ti_joint=True,
        ft_steps=2,
        ft_batch_size=1,
        checkpoint_every=1,
        attention_loss_weight=0.3,
        ft_train_tokens=True,
        prior_preservation=True,
        prior_images=1,
        prior_steps=2,
    )
    scene = shapes_scene()
    first = learn_concept(
        load_model(str(sdxl_dir)), scene, cfg, checkpoint_dir=tmp_path / "ck", prior_folder=tmp_path
    ).concept
    assert first.meta["prior"] == {"count": 2}
    # Every stage's last checkpoint is there: a rerun resumes at the end of each, loading
    # both tables' rows, and learns nothing new.
    model = load_model(str(sdxl_dir))
    again = learn_concept(model, scene, cfg, checkpoint_dir=tmp_path / "ck", prior_folder=tmp_path)
    for token in first.all_tokens:
        assert torch.equal(first.embeddings[token], again.concept.embeddings[token])
        assert torch.equal(first.embeddings_2[token], again.concept.embeddings_2[token])
    assert again.totals.counter.as_dict() == first.meta["unet_evals"]

    backend = get_backend("cpu-fast")
    assert backend.batch_cfg
    # Two seeds: cpu-fast samples them as one batch (pooled embeddings and time ids too).
    config = fast_config(use_concept=True, seeds=(0, 1))
    [out] = edit(model, scene, [moved_layout(scene)], config, backend, concept=first)
    assert [c.image.shape for c in out.candidates] == [scene.image.shape] * 2
    assert all(np.isfinite(c.loss) for c in out.candidates) and out.attention_res == 4
