"""Stage 1 on the tiny model: what each stage may change, the masked loss, resume, prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from layoutedit.config import LearnConfig
from layoutedit.errors import UserError
from layoutedit.learning.checkpoints import CheckpointDir, RunTotals
from layoutedit.learning.concept import Concept, apply_concept
from layoutedit.learning.finetune import kv_parameters, run_finetune
from layoutedit.learning.learn import EXTRA_TOKENS, concept_prompt, learn_concept, prepare_data
from layoutedit.learning.prior import generated_prior, load_prior_folder
from layoutedit.learning.textual_inversion import run_textual_inversion
from layoutedit.learning.tokens import add_placeholders, embedding_table
from layoutedit.learning.training import NoProgress, masked_mse
from layoutedit.loading.model_loading import LoadedModel, load_model
from layoutedit.scenes.scene import Scene, load_scene
from layoutedit.shapes.world import sample_scene, write_scene_folder

# Tiny ops: one intra-op thread is much faster on a busy 2-core machine.

TINY = LearnConfig(ti_steps=2, ti_batch_size=1, ft_steps=2, ft_batch_size=1, checkpoint_every=0)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scene_folder(sample_scene(3, 2), tmp_path_factory.mktemp("scene") / "s")


def _setup(model_dir: Path, scene_dir: Path, tmp: Path) -> tuple[LoadedModel, Scene]:
    model = load_model(str(model_dir), cache_dir=tmp)
    return model, load_scene(scene_dir, latent_size=model.latent_size)


def _unet_state(model: LoadedModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.unet.state_dict().items()}


def _text_state(model: LoadedModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.text_encoder.state_dict().items()}


def test_masked_loss_ignores_everything_outside_the_mask() -> None:
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 4, 8, 8, generator=gen, requires_grad=True)
    target = torch.randn(2, 4, 8, 8, generator=gen)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 2:5, 1:4] = 1
    mask[1, :, 6:, 6:] = 1
    loss = masked_mse(pred, target, mask)
    perturbed = target + 100.0 * (1 - mask) * torch.randn(2, 4, 8, 8, generator=gen)
    assert torch.equal(masked_mse(pred, perturbed, mask), loss)
    # It is the mean over the masked elements (C x mask pixels of each sample).
    inside = mask.expand_as(pred).bool()
    expected = ((pred - target)[inside] ** 2).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert pred.grad is not None
    assert torch.count_nonzero(pred.grad * (1 - mask)) == 0


def test_textual_inversion_changes_only_the_placeholder_row(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path
) -> None:
    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    ids = add_placeholders(model, dict(zip(scene.tokens, scene.names, strict=True)))
    data = prepare_data(model, scene, ids)
    table_before = embedding_table(model).weight.detach().clone()
    text_before, unet_before = _text_state(model), _unet_state(model)
    cfg = TINY.model_copy(update={"ti_lr": 1e-2})
    run_textual_inversion(
        model, data, cfg, [0], "ti-0", CheckpointDir(None), RunTotals(), NoProgress()
    )
    table = embedding_table(model).weight.detach()
    changed = torch.nonzero((table != table_before).any(dim=1)).flatten().tolist()
    assert changed == [ids[scene.tokens[0]]]  # not object 1's row, not any word
    for key, value in _text_state(model).items():
        if "token_embedding" not in key:
            assert torch.equal(value, text_before[key]), key
    assert all(torch.equal(v, unet_before[k]) for k, v in _unet_state(model).items())
    assert all(not p.requires_grad for p in model.text_encoder.parameters())


def test_finetune_changes_only_kv_and_extra_tokens(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path
) -> None:
    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    inits = dict(zip(scene.tokens, scene.names, strict=True))
    inits.update(zip(EXTRA_TOKENS, ("ktn", "pll"), strict=True))
    ids = add_placeholders(model, inits)
    data = prepare_data(model, scene, ids)
    table_before = embedding_table(model).weight.detach().clone()
    text_before, unet_before = _text_state(model), _unet_state(model)
    cfg = TINY.model_copy(update={"ft_lr": 1e-3})
    extra = [ids[t] for t in EXTRA_TOKENS]
    run_finetune(
        model,
        data,
        cfg,
        concept_prompt(scene),
        extra,
        None,
        CheckpointDir(None),
        RunTotals(),
        NoProgress(),
    )
    table = embedding_table(model).weight.detach()
    changed = torch.nonzero((table != table_before).any(dim=1)).flatten().tolist()
    assert changed == sorted(extra)
    for key, value in _text_state(model).items():
        if "token_embedding" not in key:
            assert torch.equal(value, text_before[key]), key
    kv = set(kv_parameters(model))
    assert kv and all(".attn2.to_k." in k or ".attn2.to_v." in k for k in kv)
    for key, value in _unet_state(model).items():
        assert torch.equal(value, unet_before[key]) != (key in kv), key


def test_learned_concept_saved_and_loaded_gives_identical_outputs(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path
) -> None:
    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    result = learn_concept(model, scene, TINY)
    concept = result.concept
    k = len(scene.objects)
    # Sequential: 2 steps x batch 1 per object; fine-tune 2 steps x batch 1.
    per_pass = 2 * 1 * k + 2 * 1
    assert concept.meta["unet_evals"] == {
        "forward": per_pass,
        "backward": per_pass,
        "total": 2 * per_pass,
    }
    assert set(concept.meta["seconds"]) >= {"textual_inversion", "finetune"}
    assert concept.meta["names"] == list(scene.names)
    assert concept.prompt == f"{scene.prompt} <new0> <new1>"
    positions = concept.meta["positions"]
    ids = model.tokenizer(concept.prompt).input_ids
    assert all(ids[p] == model.tokenizer.convert_tokens_to_ids(t) for t, p in positions.items())

    concept.save(tmp_path / "concept")
    fresh = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    apply_concept(fresh, Concept.load(tmp_path / "concept"))
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = model.unet(x, 400, model.encode_prompts([concept.prompt] * 2)).sample
        b = fresh.unet(x, 400, fresh.encode_prompts([concept.prompt] * 2)).sample
    torch.testing.assert_close(a, b, rtol=0, atol=0)


class _StopAt:
    """A progress hook that interrupts the run at a given step of a given stage."""

    def __init__(self, stage: str, step: int) -> None:
        self.target, self.at = stage, step
        self.current, self.count = "", 0

    def stage(self, name: str, total: int, done: int) -> None:
        self.current, self.count = name, done

    def step(self, loss: float) -> None:
        self.count += 1
        if self.current == self.target and self.count == self.at:
            raise KeyboardInterrupt


class _Starts(NoProgress):
    """Records where each stage starts (steps already done)."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}

    def stage(self, name: str, total: int, done: int) -> None:
        self.starts[name] = done


@pytest.mark.parametrize(
    ("stop", "starts"),
    [
        # Interrupted in step 2 of 3 of TI: resumes after step 1, fine-tune from 0.
        (("textual inversion ti", 2), {"textual inversion ti": 1, "fine-tune": 0}),
        # Interrupted in step 2 of 2 of the fine-tune: TI is done, fine-tune resumes at 1.
        (("fine-tune", 2), {"textual inversion ti": 3, "fine-tune": 1}),
    ],
)
def test_interrupted_run_resumes_to_the_same_concept(
    tiny_model_dir: Path,
    scene_dir: Path,
    tmp_path: Path,
    stop: tuple[str, int],
    starts: dict[str, int],
) -> None:
    cfg = TINY.model_copy(
        update={"ti_steps": 3, "ft_steps": 2, "ti_joint": True, "checkpoint_every": 1}
    )
    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    reference = learn_concept(model, scene, cfg).concept

    ckpt = tmp_path / "ckpt"
    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        learn_concept(model, scene, cfg, checkpoint_dir=ckpt, progress=_StopAt(*stop))
    assert (ckpt / "ti" / "state.json").exists()
    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    record = _Starts()
    resumed = learn_concept(model, scene, cfg, checkpoint_dir=ckpt, progress=record).concept
    assert record.starts == starts
    for token in reference.all_tokens:
        torch.testing.assert_close(resumed.embeddings[token], reference.embeddings[token])
    for key, value in reference.kv_weights.items():
        torch.testing.assert_close(resumed.kv_weights[key], value)
    assert resumed.meta["unet_evals"] == reference.meta["unet_evals"]


def test_joint_mode_learns_every_object_in_one_stage(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path
) -> None:
    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    cfg = TINY.model_copy(
        update={"ti_joint": True, "ti_steps": 2, "ti_batch_size": 2, "ft_steps": 1}
    )
    before = {
        t: model.text_encoder.get_input_embeddings()
        .weight[model.tokenizer(n, add_special_tokens=False).input_ids]
        .mean(0)
        .detach()
        .clone()
        for t, n in zip(scene.tokens, scene.names, strict=True)
    }
    concept = learn_concept(model, scene, cfg).concept
    for token in scene.tokens:
        assert not torch.allclose(concept.embeddings[token], before[token])
    # 2 steps x batch 2 in total (not per object), then 1 fine-tune step of batch 1.
    assert concept.meta["unet_evals"]["forward"] == 2 * 2 + 1


def test_prior_from_a_published_layout_folder(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path
) -> None:
    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    folder = tmp_path / "prior"
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        pixels = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)  # not square, not 64 px
        Image.fromarray(pixels).save(folder / "img" / f"{i}.png")
    (folder / "images.txt").write_text("img/0.png\nimg/1.png\n")
    (folder / "caption.txt").write_text("a photo of a circle\na photo of a square\n")
    prior = load_prior_folder(model, folder)
    assert prior.latents.shape == (2, 4, 16, 16)
    assert prior.captions == ["a photo of a circle", "a photo of a square"]

    cfg = TINY.model_copy(update={"prior_preservation": True, "prior_dir": folder, "ti_steps": 1})
    concept = learn_concept(model, scene, cfg).concept
    k = len(scene.objects)
    # The fine-tune batch is doubled (instance + prior): 2 steps x 2.
    assert concept.meta["unet_evals"]["forward"] == k * 1 + 2 * 2
    assert concept.meta["prior"] == {"count": 2}

    (folder / "caption.txt").write_text("only one caption\n")
    with pytest.raises(UserError, match=r"caption\.txt has 1"):
        load_prior_folder(model, folder)


def test_generated_prior_is_cached(tiny_model_dir: Path, scene_dir: Path, tmp_path: Path) -> None:
    from layoutedit.counting import UNetCounter
    from layoutedit_cache import ConceptCache

    model, scene = _setup(tiny_model_dir, scene_dir, tmp_path)
    cfg = TINY.model_copy(update={"prior_images": 2, "prior_steps": 2})
    cache = ConceptCache(tmp_path / "cache")
    counter = UNetCounter()
    first = generated_prior(model, scene.names, cfg, cache=cache, counter=counter)
    k = len(scene.names)
    assert first.latents.shape == (2 * k, 4, 16, 16)
    assert first.captions[0] == f"a photo of a {scene.names[0]}"
    # 2 images x 2 steps x (unconditional + conditional) per class prompt.
    assert counter.forward == k * 2 * 2 * 2
    again = generated_prior(model, scene.names, cfg, cache=cache, counter=counter)
    assert counter.forward == k * 2 * 2 * 2  # served from the cache: no UNet call
    assert torch.equal(again.latents, first.latents)
    assert {e.kind for e in cache.entries()} == {"prior"}
