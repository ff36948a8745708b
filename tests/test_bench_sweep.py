"""`layoutedit bench --sweep`: rows from a TOML file, checked, and their concepts shared."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bench_diffusion import STEPS, tiny_settings
from typer.testing import CliRunner

from layoutedit.bench.cases import make_cases
from layoutedit.bench.diffusion import DiffusionRuntime
from layoutedit.bench.run import run_bench
from layoutedit.bench.sweep import load_sweep
from layoutedit.bench.variants import build_variants
from layoutedit.cli.app import app
from layoutedit.config import Settings
from layoutedit.errors import UserError

SWEEP = """
[res16]
edit = { attention_res = 16, refinement = { 0 = 0.5 } }

[ti3]
learn = { ti_steps = 3 }
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_rows_carry_their_changes(tmp_path: Path) -> None:
    res16, ti3 = load_sweep(_write(tmp_path, SWEEP), Settings())
    assert res16.name == "res16" and res16.learn_overrides == {}
    assert res16.edit_overrides == {"attention_res": 16, "refinement": {0: 0.5}}
    assert ti3.learn_overrides == {"ti_steps": 3} and ti3.edit_overrides == {}
    assert "learn.ti_steps=3" in ti3.description


def test_a_row_that_edits_without_the_concept_learns_none(tmp_path: Path) -> None:
    text = "[plain]\nedit = { use_concept = false }\n[learned]\nedit = { steps = 3 }\n"
    plain, learned = load_sweep(_write(tmp_path, text), Settings())
    assert not plain.uses_concept and learned.uses_concept


def test_identity_rows_edit_each_scene_to_its_own_mask(tmp_path: Path) -> None:
    text = "[ti3-id]\nidentity = true\nlearn = { ti_steps = 3 }\n[plain]\nidentity = false\n"
    fast, plain = load_sweep(_write(tmp_path, text), Settings())
    assert fast.identity and fast.learn_overrides == {"ti_steps": 3}
    assert fast.description == "identity with learn.ti_steps=3"
    assert not plain.identity and plain.description == "full (no changes)"
    case = make_cases(1, seed=0, layouts_per_scene=2)
    [variant] = build_variants([], lambda: None, [fast])  # type: ignore[arg-type,return-value]
    assert [c.kind for c in variant.scene_cases(case)] == ["identity"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no rows"),
        ("[full]\nedit = { steps = 3 }\n", "already a row"),
        ('["bad name"]\nedit = { steps = 3 }\n', "row name"),
        ("[a]\nmodel = { steps = 3 }\n", "unknown section 'model'"),
        ("[a]\nedit = { stepz = 3 }\n", "unknown setting edit.stepz"),
        ("[a]\nscene = { prompt_template = 'no field' }\n", "bad setting scene"),
        ("[a]\nedit = { steps = 0 }\n", "row 'a': bad setting edit.steps"),
        ("[a]\nedit = { refinement = { x = 0.5 } }\n", "step numbers"),
        ("[a]\nedit = 3\n", "edit must be a table"),
        ("a = 3\n", "must be a table"),
        ("[a]\nidentity = 1\n", "identity must be true or false"),
    ],
)
def test_bad_sweep_files_name_the_file_and_row(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UserError, match=message) as info:
        load_sweep(path, Settings(), taken=["full"])
    assert info.value.path == path


def test_bad_sweep_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, "[a]\nedit = { stepz = 3 }\n")
    result = CliRunner().invoke(
        app, ["bench", "--variants", "paste", "--sweep", str(path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert str(path) in result.output and "stepz" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_edit_rows_share_the_concept_and_learn_rows_learn_their_own(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = tiny_settings()
    rows = load_sweep(
        _write(
            tmp_path, "[s40]\nedit = { scale_factor = 40.0 }\n[ti3]\nlearn = { ti_steps = 3 }\n"
        ),
        settings,
        taken=["full"],
    )
    made: list[DiffusionRuntime] = []

    def factory() -> DiffusionRuntime:
        made.append(DiffusionRuntime(str(tiny_model_dir), "cpu", settings, tmp_path, tmp_path))
        return made[0]

    cases = make_cases(1, seed=0, layouts_per_scene=1)
    result = run_bench(cases, build_variants(["full"], factory, rows))
    [runtime] = made
    assert [r.name for r in result.rows] == ["full", "s40", "ti3"]
    assert len(runtime._learned) == 2  # full and s40 share one concept; ti3 learns its own
    learned = sorted(runtime._learned.values(), key=lambda item: item.unet_evaluations)
    assert learned[1].unet_evaluations > learned[0].unet_evaluations  # 3 TI steps, not 2
    # The inversion depends on the concept, so ti3 does not reuse full's.
    assert len(runtime._inverted) == 2
    assert all(r.unet_evaluations >= STEPS for r in result.rows)


def test_missing_sweep_file_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sweep file not found"):
        load_sweep(tmp_path / "nope.toml", Settings())
