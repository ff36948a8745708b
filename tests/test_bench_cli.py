"""`layoutedit bench` end to end with the model-free paste variant, and run_bench's scoring
direction (an edit that moves nothing scores below the paste reference)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from layoutedit.bench.cases import Case, make_cases
from layoutedit.bench.metrics import PSNR_CAP_DB
from layoutedit.bench.run import run_bench
from layoutedit.bench.scoring import METRICS
from layoutedit.bench.variants import EditOutput, PasteVariant, SceneOutput
from layoutedit.cli.app import app

COLUMN_WORDS = ("layout", "region", "colour", "shape", "PSNR", "learn", "edit", "UNet", "peak")


def test_bench_paste_writes_table_json_md_png(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app, ["bench", "--variants", "paste", "--scenes", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for word in (*COLUMN_WORDS, "paste"):
        assert word in result.output
    data = json.loads((out / "bench.json").read_text())
    [row] = data["rows"]
    assert row["name"] == "paste" and row["edits"] == 4  # 2 scenes x 2 layouts
    assert set(row["metrics"]) == set(METRICS)
    assert row["metrics"]["layout_iou"] > 0.9 and row["metrics"]["in_region"] > 0.95
    assert row["unet_evaluations"] == 0 and row["learn_seconds"] == 0
    assert data["segmenter"]["passed"] is True
    assert len(data["cases"]) == 4 and len(data["edits"]) == 4
    md = (out / "bench.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| variant"))
    for word in COLUMN_WORDS:
        assert word in header
    assert "| paste |" in md
    sheet = Image.open(out / "examples.png")
    # Columns: source, layout, truth, paste; rows: one per scene (2).
    assert sheet.width > 4 * 64 * 3 and sheet.height > 2 * 64 * 3
    assert not list(out.glob("*.tmp"))


def test_bench_json_and_seed(tmp_path: Path) -> None:
    runner = CliRunner()
    a = runner.invoke(
        app,
        [
            "--json",
            "bench",
            "--variants",
            "paste",
            "--scenes",
            "1",
            "--layouts",
            "1",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    b = runner.invoke(
        app,
        [
            "--json",
            "bench",
            "--variants",
            "paste",
            "--scenes",
            "1",
            "--layouts",
            "1",
            "--seed",
            "4",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ca, cb = json.loads(a.stdout)["cases"], json.loads(b.stdout)["cases"]
    assert ca[0]["scene_seed"] != cb[0]["scene_seed"]


def test_bench_user_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["bench", "--variants", "paste,magic", "--out", str(tmp_path)])
    assert bad.exit_code == 2
    assert "magic" in bad.output and "Traceback" not in bad.output
    seed = runner.invoke(app, ["bench", "--variants", "paste", "--seed", "-3"])
    assert seed.exit_code == 2 and "--seed" in seed.output
    assert not (tmp_path / "bench.json").exists()


class _Unchanged:
    """A variant that returns the source: nothing moves."""

    name = "unchanged"
    description = "the source image"

    def scene_cases(self, cases: Sequence[Case]) -> list[Case]:
        return list(cases)

    def run_scene(self, cases: Sequence[Case]) -> SceneOutput:
        return SceneOutput([EditOutput(c.source.image.copy(), 0.0, 0.0) for c in cases])


def test_scores_rank_paste_above_doing_nothing() -> None:
    cases = [c for c in make_cases(2, seed=0, layouts_per_scene=2) if c.kind != "scale"]
    result = run_bench(cases, [PasteVariant(), _Unchanged()])
    paste, unchanged = (r.metrics for r in result.rows)
    assert paste["layout_iou"] > unchanged["layout_iou"] + 0.1
    assert paste["in_region"] > unchanged["in_region"]
    # Returning the source keeps the shared background, except the faint anti-aliased rims
    # the moved objects leave where they were (the truth has none): high, not perfect.
    assert 25.0 < unchanged["background_psnr"] < PSNR_CAP_DB
    assert unchanged["shape_iou"] > 0.9 and unchanged["colour_error"] < 5
    assert [len(v) for v in result.outputs.values()] == [len(cases)] * 2
    assert all(isinstance(img, np.ndarray) for img in result.outputs["paste"].values())


def test_markdown_adds_the_gpu_column_only_when_measured() -> None:
    from rich.console import Console

    from layoutedit.bench.report import markdown, rich_table

    def header(md: str) -> str:
        return next(line for line in md.splitlines() if line.startswith("| variant"))

    result = run_bench(make_cases(1, seed=0, layouts_per_scene=1), [PasteVariant()])
    assert "GPU MB" not in header(markdown(result))
    result.rows[0].peak_cuda_mb = 512.0
    assert header(markdown(result)).endswith("| GPU MB |")
    assert "| 512 |" in markdown(result)
    console = Console(width=80, record=True)
    console.print(rich_table(result))
    text = console.export_text()
    assert "GPU" not in text and "…" not in text  # fits 80 columns untruncated


def test_comparisons_fit_80_columns_with_their_marks() -> None:
    """Seven metrics with intervals cropped every cell on a terminal; it shows means and
    marks, and bench.md keeps the intervals."""
    from rich.console import Console

    from layoutedit.bench.report import markdown, rich_comparisons
    from layoutedit.bench.run import Comparison
    from layoutedit.bench.scoring import METRICS

    result = run_bench(make_cases(1, seed=0, layouts_per_scene=1), [PasteVariant()])
    result.comparisons = [
        Comparison(variant, metric, -0.123456, -0.2, -0.05, full_better=False)
        for variant in ("no-guidance", "no-concepts", "no-steering")
        for metric in METRICS
    ]
    console = Console(width=80, record=True)
    table = rich_comparisons(result)
    assert table is not None
    console.print(table)
    text = console.export_text()
    assert "…" not in text and text.count("-0.123-") == 3 * len(METRICS)
    assert "[-0.2, -0.05]-" in markdown(result)
