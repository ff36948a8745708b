"""Settings: published defaults, presets, TOML files and flags, and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from layoutedit.config import (
    PRESETS,
    EditConfig,
    LearnConfig,
    SceneOptions,
    Settings,
    load_config_file,
    resolve_settings,
)
from layoutedit.errors import UserError


def test_defaults_are_the_published_ones_of_method_md() -> None:
    learn, edit, scene = LearnConfig(), EditConfig(), SceneOptions()
    # Stage 1: 200 TI steps per object, batch 4, lr 5e-4; 800 fine-tune steps, lr 1e-5, batch 2.
    assert (learn.ti_steps, learn.ti_batch_size, learn.ti_lr) == (200, 4, 5e-4)
    assert (learn.ft_steps, learn.ft_batch_size, learn.ft_lr) == (800, 2, 1e-5)
    assert learn.scale_lr and learn.gradient_accumulation == 1
    assert learn.prior_weight == 1.0
    assert learn.ti_single_template == "a photo of a {token}"
    # Stage 2: DDIM 50 steps, eta 0, guidance 5, scale factor 20, r from 1.0 to 0.5, ...
    assert (edit.steps, edit.eta, edit.guidance_scale) == (50, 0.0, 5.0)
    assert (edit.scale_factor, edit.scale_range) == (20.0, (1.0, 0.5))
    assert edit.softmax_scale == 100.0
    assert edit.max_iter_to_alter == 25
    assert edit.refinement == {0: 0.6, 10: 0.7, 20: 0.8}
    assert edit.max_refinement_steps == 40
    assert edit.blend_steps == 15
    assert edit.seeds == (0, 8, 88, 888, 8888)
    # Scenes: the published prompt template; tolerance and snapping of the issue.
    assert scene.prompt_template == "a high quality picture of {objects}"
    assert (scene.colour_tolerance, scene.snap_max_share) == (40.0, 0.01)
    assert resolve_settings() == Settings()


def test_published_preset_is_the_defaults_and_fast_is_smaller() -> None:
    assert resolve_settings("published") == Settings()
    fast = resolve_settings("fast")
    assert fast.learn.ti_steps == PRESETS["fast"]["learn"]["ti_steps"] < 200
    assert fast.edit.steps < 50
    assert fast.edit.refinement == {0: 0.6}  # replaced whole, not merged with the defaults
    assert fast.edit.guidance_scale == 5.0  # untouched fields keep their defaults


def test_precedence_preset_then_file_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        "[edit]\nsteps = 30\nguidance_scale = 7.5\n\n[learn]\nti_steps = 5\n\n"
        "[scene]\ncolour_tolerance = 25\n"
    )
    settings = resolve_settings(
        "fast", config, {"edit": {"steps": 12, "guidance_scale": None}, "learn": {}}
    )
    assert settings.edit.steps == 12  # flag beats file
    assert settings.edit.guidance_scale == 7.5  # file beats default; a None flag is ignored
    assert settings.learn.ti_steps == 5  # file beats preset
    assert settings.learn.ft_steps == PRESETS["fast"]["learn"]["ft_steps"]  # preset beats default
    assert settings.edit.blend_steps == PRESETS["fast"]["edit"]["blend_steps"]
    assert settings.scene.colour_tolerance == 25


def test_toml_refinement_keys_become_step_numbers(tmp_path: Path) -> None:
    config = tmp_path / "r.toml"
    config.write_text('[edit.refinement]\n0 = 0.5\n"12" = 0.9\n')
    assert load_config_file(config)["edit"]["refinement"] == {0: 0.5, 12: 0.9}
    assert resolve_settings(None, config).edit.refinement == {0: 0.5, 12: 0.9}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[edit\nsteps = 3", "not valid TOML"),
        ("steps = = 3", "not valid TOML"),
        ("[edit]\nsteps = 0\n", "bad setting edit.steps"),
        ('[edit]\nsteps = "ten"\n', "bad setting edit.steps"),
        ("[edit]\nstep = 10\n", "bad setting edit.step"),
        ("[scene]\ncolour_tolerance = -1\n", "bad setting scene.colour_tolerance"),
        ("[edit.refinement]\nfirst = 0.5\n", "step numbers"),
        ("edit = 3\n", "`edit` must be a table"),
        ('learn = "fast"\n', "`learn` must be a table"),
        ("[training]\nsteps = 3\n", "bad setting training"),
        ('[scene]\nprompt_template = "a photo"\n', "prompt_template: .*must contain"),
    ],
)
def test_bad_config_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        resolve_settings(None, config)
    assert info.value.path == config
    assert info.value.exit_code == 2
    assert info.value.line().startswith(f"{config}: ")


def test_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found") as info:
        resolve_settings(None, tmp_path / "none.toml")
    assert info.value.path == tmp_path / "none.toml"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(UserError, match="UTF-8"):
        resolve_settings(None, binary)
    with pytest.raises(UserError, match="folder"):
        resolve_settings(None, tmp_path)


def test_bad_flag_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text("[edit]\nsteps = 30\n")
    with pytest.raises(UserError, match=r"edit\.steps") as info:
        resolve_settings(None, config, {"edit": {"steps": 0}})
    assert info.value.path is None


def test_unknown_preset() -> None:
    with pytest.raises(UserError, match="unknown preset 'turbo'"):
        resolve_settings("turbo")


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        EditConfig().steps = 3  # type: ignore[misc]


def test_a_model_without_a_preset_gets_its_tuned_one() -> None:
    from layoutedit.config import PRESETS, resolve_settings

    tuned = resolve_settings(model="builtin:shapes-tiny")
    assert tuned.edit.steps == PRESETS["shapes-tiny"]["edit"]["steps"]
    assert tuned.edit.steps != EditConfig().steps
    assert tuned.scene.prompt_template == "{objects}"  # presets reach the scene section too
    # Any other model gets the published defaults; a named preset always wins.
    assert resolve_settings(model="/models/sd15").edit == EditConfig()
    assert resolve_settings("published", model="builtin:shapes-tiny").edit == EditConfig()
    assert resolve_settings("fast", model="/models/sd15").edit.steps == 10
