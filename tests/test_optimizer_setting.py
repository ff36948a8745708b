"""`learn.optimizer`: 8-bit AdamW (bitsandbytes) for the fine-tune, one-line errors where it
cannot run, and the default leaving concept keys as they were."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from layoutedit.config import LearnConfig, resolve_settings
from layoutedit.errors import UserError
from layoutedit.learning.checkpoints import CheckpointDir, RunTotals
from layoutedit.learning.concept_store import learn_key_config
from layoutedit.learning.finetune import run_finetune
from layoutedit.learning.learn import EXTRA_TOKENS, concept_prompt, prepare_data
from layoutedit.learning.tokens import add_placeholders
from layoutedit.learning.training import NoProgress, make_optimizer
from layoutedit.loading.model_loading import load_model
from layoutedit.scenes.scene import load_scene
from layoutedit.shapes.world import sample_scene, write_scene_folder

CUDA = torch.device("cuda")  # a device name only: nothing is allocated on it


def _params() -> list[torch.Tensor]:
    return [torch.nn.Parameter(torch.zeros(3, 4))]


def test_setting_reads_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[learn]\noptimizer = "adamw8bit"\n')
    assert resolve_settings(None, config).learn.optimizer == "adamw8bit"
    assert LearnConfig().optimizer == "adamw"
    config.write_text('[learn]\noptimizer = "sgd"\n')
    with pytest.raises(UserError):
        resolve_settings(None, config)


def test_adamw8bit_off_cuda_is_one_line() -> None:
    with pytest.raises(UserError) as caught:
        make_optimizer("adamw8bit", _params(), 1e-3, torch.device("cpu"))
    assert "CUDA" in str(caught.value) and "\n" not in str(caught.value)


def test_adamw8bit_without_bitsandbytes_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import raises ImportError
    with pytest.raises(UserError, match="pip install bitsandbytes"):
        make_optimizer("adamw8bit", _params(), 1e-3, CUDA)


def test_adamw8bit_comes_from_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[float] = []

    class FakeAdamW8bit(torch.optim.AdamW):
        def __init__(self, params: list[torch.Tensor], lr: float) -> None:
            made.append(lr)
            super().__init__(params, lr=lr)

    fake = SimpleNamespace(optim=SimpleNamespace(AdamW8bit=FakeAdamW8bit))
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    assert isinstance(make_optimizer("adamw8bit", _params(), 2e-3, CUDA), FakeAdamW8bit)
    assert made == [2e-3]
    assert type(make_optimizer("adamw", _params(), 1e-3, torch.device("cpu"))) is torch.optim.AdamW


def test_default_optimizer_keeps_the_concept_key() -> None:
    scene = SimpleNamespace(prompt="a picture of <a>")
    default = learn_key_config(LearnConfig(), scene)  # type: ignore[arg-type]
    assert "optimizer" not in default
    eight = learn_key_config(LearnConfig(optimizer="adamw8bit"), scene)  # type: ignore[arg-type]
    assert eight["optimizer"] == "adamw8bit"


def test_finetune_asks_for_its_optimizer(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = write_scene_folder(sample_scene(3, 2), tmp_path / "s")
    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    scene = load_scene(folder, latent_size=model.latent_size)
    inits = dict(zip(scene.tokens, scene.names, strict=True))
    inits.update(zip(EXTRA_TOKENS, ("ktn", "pll"), strict=True))
    ids = add_placeholders(model, inits)
    data = prepare_data(model, scene, ids)
    cfg = LearnConfig(ft_steps=1, ft_batch_size=1, checkpoint_every=0, optimizer="adamw8bit")
    with pytest.raises(UserError, match="CUDA"):
        run_finetune(
            model,
            data,
            cfg,
            concept_prompt(scene),
            [ids[t] for t in EXTRA_TOKENS],
            None,
            CheckpointDir(None),
            RunTotals(),
            NoProgress(),
        )
