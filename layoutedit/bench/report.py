"""The benchmark's outputs: a rich table, bench.json, bench.md and examples.png.

Every file is written to a temporary name and renamed, so a crash leaves no half file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from rich import box
from rich.table import Table

from layoutedit.atomic import write_png_atomic, write_text_atomic
from layoutedit.bench.cases import Case, identity_case
from layoutedit.bench.metrics import PSNR_CAP_DB
from layoutedit.bench.run import BenchResult, Comparison, VariantRow
from layoutedit.shapes.world import labels_to_colour_mask

JSON_NAME, MD_NAME, PNG_NAME = "bench.json", "bench.md", "examples.png"


def _f(digits: int) -> Callable[[float | None], str]:
    def fmt(value: float | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.{digits}f}"

    return fmt


Column = tuple[str, Callable[[VariantRow], "float | None"], Callable[["float | None"], str]]
COLUMNS: tuple[Column, ...] = (
    ("layout\nIoU", lambda r: r.metrics["layout_iou"], _f(3)),
    ("in-\nregion", lambda r: r.metrics["in_region"], _f(3)),
    ("colour\nerr", lambda r: r.metrics["colour_error"], _f(1)),
    ("shape\nIoU", lambda r: r.metrics["shape_iou"], _f(3)),
    ("bg PSNR\ndB", lambda r: r.metrics["background_psnr"], _f(1)),
    ("learn\ns", lambda r: r.learn_seconds, _f(1)),
    ("edit\ns", lambda r: r.edit_seconds, _f(2)),
    ("UNet evals\n/edit", lambda r: r.unet_evaluations, _f(0)),
    ("peak\nMB", lambda r: r.peak_rss_mb, _f(0)),
)
"""Table columns: header, value of a row, format. Higher is better for the IoUs, the share
and the PSNR; lower for colour error and every cost."""


GPU_COLUMN: Column = ("GPU\nMB", lambda r: r.peak_cuda_mb, _f(0))
"""Shown when a row ran on CUDA: the allocator's peak."""
SHARE_COLUMN: Column = ("attn\nshare", lambda r: r.attention_share, _f(2))
LEFT_COLUMN: Column = ("left\ndB", lambda r: r.metrics["vacated_psnr"], _f(1))
OBJECT_COLUMN: Column = ("object\ndB", lambda r: r.metrics.get("object_psnr"), _f(1))
"""These in Markdown only (the terminal prints the share below the table, which must fit
80 columns; the vacated-pixel and object PSNRs are in bench.json and bench.md)."""
V2_COLUMNS: tuple[Column, ...] = (
    ("image\ndB", lambda r: r.metrics.get("image_psnr"), _f(1)),
    ("revealed\ndB", lambda r: r.metrics.get("revealed_psnr"), _f(1)),
    ("shadow\ndB", lambda r: r.metrics.get("shadow_psnr"), _f(1)),
    ("left\ntexture", lambda r: r.metrics.get("vacated_texture_distance"), _f(3)),
    ("seam\nerr", lambda r: r.metrics.get("seam_error"), _f(1)),
)
"""World v2's metrics, in Markdown only as well (the terminal shows their differences)."""


def is_v2(rows: Sequence[VariantRow]) -> bool:
    """Whether the rows scored world v2 cases (they carry v2's metrics)."""
    return any("image_psnr" in r.metrics for r in rows)


def attention_share_line(result: BenchResult) -> str | None:
    """`attention share on the source: full 0.62, ...` for the rows that have one."""
    parts = [f"{r.name} {r.attention_share:.2f}" for r in result.rows if r.attention_share]
    if not parts:
        return None
    return "token attention share on the source objects: " + ", ".join(parts)


def table_cells(
    rows: Sequence[VariantRow], wide: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Header and cell text of the table (shared by the terminal and Markdown views).

    `wide` (Markdown) adds the vacated-pixel and object PSNRs, the attention share and,
    when a row has one, the CUDA peak; the terminal table stays narrow enough for 80
    columns, and bench.json always has them all."""
    columns = list(COLUMNS)
    if wide:
        columns[5:5] = [LEFT_COLUMN, OBJECT_COLUMN, *(V2_COLUMNS if is_v2(rows) else ())]
    if wide and any(r.attention_share is not None for r in rows):
        columns.insert(columns.index(COLUMNS[5]), SHARE_COLUMN)
    if wide and any(r.peak_cuda_mb is not None for r in rows):
        columns.append(GPU_COLUMN)
    header = ["variant", *(c[0] for c in columns)]
    body = [[r.name, *(fmt(get(r)) for _, get, fmt in columns)] for r in rows]
    return header, body


def rich_table(result: BenchResult) -> Table:
    """The terminal table: one row per variant."""
    header, body = table_cells(result.rows)
    n_cases = len(result.cases)
    n_scenes = len({c["scene_seed"] for c in result.cases})
    world = " (world v2)" if is_v2(result.rows) else ""
    table = Table(
        title=f"layoutedit bench{world}: {n_scenes} scenes, {n_cases} edits per variant",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    # Narrow columns with short two-line headers: the table fits an 80-column terminal.
    for i, name in enumerate(header):
        if i == 0:
            table.add_column(name, justify="left", no_wrap=True)
        else:
            table.add_column(name, justify="right", min_width=5)
    for cells in body:
        table.add_row(*cells)
    return table


METRIC_NAMES = {
    "layout_iou": "layout IoU",
    "in_region": "in-region",
    "colour_error": "colour err",
    "shape_iou": "shape IoU",
    "background_psnr": "bg PSNR dB",
    "vacated_psnr": "left dB",
    "object_psnr": "object dB",
}


METRIC_NAMES_V2 = {
    "image_psnr": "image dB",
    "revealed_psnr": "revealed dB",
    "shadow_psnr": "shadow dB",
    "vacated_psnr": "left dB",
    "vacated_texture_distance": "left texture",
    "seam_error": "seam err",
}
"""The difference table of world v2 (left dB is in both: where an object left matters most
there)."""


def _short(names: dict[str, str]) -> dict[str, str]:
    """Two-line headers for the terminal (`layout\nIoU`), as the main table has."""
    return {m: name.replace(" ", "\n", 1) for m, name in names.items()}


SHORT_METRIC_NAMES = _short(METRIC_NAMES)


def _terse(value: float) -> str:
    """A signed difference in at most 7 characters, so that a terminal row of seven metrics
    fits 80 columns: -0.027, -0.0094 (two digits below 0.01), -3e-04 (one below 0.001)."""
    if value != 0 and abs(value) < 0.001:
        return f"{value:+.0e}"
    return f"{value:+.2g}" if abs(value) < 0.01 else f"{value:+.3g}"


def difference_cells(
    comparisons: Sequence[Comparison],
    label: str,
    intervals: bool = True,
    metrics: dict[str, str] = METRIC_NAMES,
) -> tuple[list[str], list[list[str]]]:
    """One row per variant, one cell per metric: the mean difference [95 % interval], `*`
    where the interval excludes zero on the better side, `-` on the worse side.

    `intervals=False` (the terminal) leaves the intervals out and uses two-line headers,
    so that seven metrics fit 80 columns; the Markdown reports keep them. `metrics`: metric
    -> header (`METRIC_NAMES`, or `METRIC_NAMES_V2` for world v2's own table)."""
    names = metrics if intervals else _short(metrics)
    header = [label, *names.values()]
    body = []
    for name in dict.fromkeys(c.variant for c in comparisons):
        cells = [name]
        for metric in metrics:
            found = [c for c in comparisons if c.variant == name and c.metric == metric]
            if not found:
                cells.append("")
                continue
            c = found[0]
            mark = "*" if c.full_better else ("-" if c.real else "")
            if math.isnan(c.difference):
                cells.append("n/a")  # no edit has the measure (nothing left in identity)
                continue
            if not intervals:
                cells.append(f"{_terse(c.difference)}{mark}")
                continue
            bounds = "[too few edits]" if math.isnan(c.low) else f"[{c.low:+.3g}, {c.high:+.3g}]"
            cells.append(f"{c.difference:+.3g} {bounds}{mark}")
        body.append(cells)
    return header, body


def comparison_cells(
    result: BenchResult, intervals: bool = True, metrics: dict[str, str] = METRIC_NAMES
) -> tuple[list[str], list[list[str]]]:
    """`full` minus each row, per metric (`difference_cells`; `*`: full better)."""
    return difference_cells(result.comparisons, "full minus", intervals, metrics)


def _interval_text(low: float, high: float) -> str:
    return "-" if math.isnan(low) else f"[{low:.3g}, {high:.3g}]"


def interval_cells(
    result: BenchResult, metrics: dict[str, str] = METRIC_NAMES
) -> tuple[list[str], list[list[str]]]:
    """Each row's 95 % bootstrap interval of each metric's mean."""
    header = ["variant", *metrics.values()]
    body = [
        [
            r.name,
            *(_interval_text(*r.intervals[m]) if m in r.intervals else "" for m in metrics),
        ]
        for r in result.rows
    ]
    return header, body


def rich_comparisons(result: BenchResult) -> Table | None:
    """The terminal table of `comparison_cells` (None when there is no `full` row)."""
    if not result.comparisons:
        return None
    return rich_differences(
        result.comparisons,
        "full minus",
        "full minus each row (mean): * full better, - full worse, where the 95 % "
        "paired interval excludes 0 (the intervals are in bench.md)",
    )


def rich_comparisons_v2(result: BenchResult) -> Table | None:
    """The terminal table of `full` minus each row on world v2's metrics (None without a
    `full` row or for v1 results)."""
    if not result.comparisons or not is_v2(result.rows):
        return None
    return rich_differences(
        result.comparisons,
        "full minus",
        "world v2 metrics, full minus each row (mean; lower is better for texture and seam): "
        "* full better, - full worse, where the 95 % paired interval excludes 0",
        METRIC_NAMES_V2,
    )


def rich_differences(
    comparisons: Sequence[Comparison],
    label: str,
    title: str,
    metrics: dict[str, str] = METRIC_NAMES,
) -> Table:
    """The terminal table of `difference_cells` (means and marks, 80 columns)."""
    header, body = difference_cells(comparisons, label, intervals=False, metrics=metrics)
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for cells in body:
        table.add_row(*cells)
    return table


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """Markdown lines of a table: the header row, the alignment row (numbers right), the body."""
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
        *("| " + " | ".join(cells) + " |" for cells in body),
    ]


def markdown(result: BenchResult) -> str:
    """bench.md: the table, what the columns mean, the segmenter check and the cases."""
    header, body = table_cells(result.rows, wide=True)
    header = [h.replace("\n/", "/").replace("\n", " ") for h in header]
    opts = result.options
    lines = [
        "# layoutedit bench",
        "",
        f"Scenes {len({c['scene_seed'] for c in result.cases})}, edits per variant "
        f"{len(result.cases)}; options: "
        + ", ".join(f"{k}={v}" for k, v in opts.items() if k != "settings")
        + f"; {result.seconds:.1f} s in all.",
        "",
        *markdown_table(header, body),
        "",
        "Variants: " + "; ".join(f"`{r.name}`: {r.description}" for r in result.rows) + ".",
        "",
        "95 % bootstrap intervals of each mean (resampling edits):",
        "",
        *markdown_table(*interval_cells(result)),
        "",
    ]
    v2 = is_v2(result.rows)
    if v2:
        lines += [
            "World v2 metrics, 95 % bootstrap intervals of each mean:",
            "",
            *markdown_table(*interval_cells(result, METRIC_NAMES_V2)),
            "",
        ]
    if result.comparisons:
        lines += [
            "`full` minus each row on the same edits: mean [95 % paired bootstrap interval]; "
            "`*` the interval excludes zero with `full` better, `-` with `full` worse "
            "(colour error: lower is better). `identity` edits other cases and is not paired.",
            "",
            *markdown_table(*comparison_cells(result)),
            "",
        ]
    if result.comparisons and v2:
        lines += [
            "World v2 metrics, `full` minus each row (as above; lower is better for the "
            "left texture and the seam error):",
            "",
            *markdown_table(*comparison_cells(result, metrics=METRIC_NAMES_V2)),
            "",
        ]
    lines += [
        "Columns (means over edits): layout IoU of the objects found by colour against the "
        "exact transformed masks; in-region share of found pixels inside the rough layout "
        "regions; colour error, RGB distance (0-255) of mean output and source colours; shape "
        "IoU after cropping to bounding boxes; background PSNR against the target image over "
        "pixels that are background in source and target (the target has no outline where an "
        f"object was; {PSNR_CAP_DB:.0f} dB = identical); left dB, PSNR against the target "
        "image over the pixels an object left (object in the source, background in the "
        "target: a trace of the object shows here; - when no edit vacated a pixel); object dB, "
        "PSNR against the target image inside the target's objects, 1 px in from their "
        "edges (shade and pattern as drawn, which a mean colour hides); attention "
        "share, per object, of its token's attention (guidance grid) on its source mask "
        "before any edit; learn seconds "
        "per scene (one concept is shared by the rows that use one, each row shows "
        "its cost); seconds and UNet evaluations per edit (the scene's inversion shared over "
        "its edits); peak resident memory of the process while the variant ran, learning "
        "included for the first row that uses a concept (GPU MB: the CUDA "
        "allocator's peak, when on a GPU).",
        "",
    ]
    if v2:
        lines += [
            "World v2 (each against the re-rendered truth): the colour error compares with "
            "each object's colour in the truth (lit where it now stands); bg PSNR keeps only "
            "pixels that no shadow touches in the source or the target; image dB, PSNR of the "
            "whole image; revealed dB, over object pixels the source hid and the target shows; "
            "shadow dB, where any object's shadow shows in the source or the target (darkening "
            "over a tenth of the light's strength), objects excluded: a ghost shadow left "
            "behind and a missing new one both cost; left texture, 0-1 distance of local "
            "gradient orientation and magnitude histograms (8 px cells) of the output and the "
            "truth where an object left, which a blur or a smooth fill cannot fake (lower is "
            "better); seam err, mean absolute error (0-255) in a 2 px band along the moved "
            "objects' edges (lower is better).",
            "",
        ]
    seg = result.segmenter
    verdict = "passed" if seg["passed"] else "FAILED"
    lines += [
        f"Segmenter check ({verdict}, threshold {seg['threshold']}): lowest per-object IoU on "
        f"the sources {seg['source_min_iou']:.3f}, on cut-and-paste renderings "
        f"{seg['paste_min_iou']:.3f}.",
        "",
        "## Cases",
        "",
        "| case | kind | background | objects (from -> to, scale) |",
        "| --- | --- | --- | --- |",
    ]
    for case in result.cases:
        objs = "; ".join(
            f"{o['name']} ({o['from'][0]:.0f},{o['from'][1]:.0f}) -> "
            f"({o['to'][0]:.0f},{o['to'][1]:.0f}) x{o['scale']:.2f}"
            for o in case["objects"]
        )
        lines.append(f"| {case['id']} | {case['kind']} | {case['background']} | {objs} |")
    return "\n".join(lines) + "\n"


def _clean(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _output_of(images: dict[str, np.ndarray], case: Case) -> np.ndarray:
    """A row's output for `case`: its own, else its scene's identity edit, else white."""
    found = images.get(case.case_id, images.get(identity_case(case).case_id))
    return found if found is not None else np.full_like(case.source.image, 255)


def example_sheet(result: BenchResult, max_cases: int = 4, zoom: int = 3) -> Image.Image:
    """Rows: a few cases (one per scene first); columns: source, layout, truth, one output
    per variant. Pixels are enlarged `zoom` times with nearest neighbour."""
    chosen: list[int] = []
    seen: set[int] = set()
    for i, case in enumerate(result.case_list):
        if case.scene_seed not in seen:
            seen.add(case.scene_seed)
            chosen.append(i)
    chosen = (chosen + [i for i in range(len(result.case_list)) if i not in chosen])[:max_cases]
    titles = ["source", "layout", "truth", *result.outputs]
    side = result.case_list[0].source.image.shape[0] * zoom
    pad, head = 4, 16
    width = len(titles) * (side + pad) + pad
    height = head + len(chosen) * (side + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(titles):
        draw.text((pad + j * (side + pad), 2), title, fill=(0, 0, 0))
    for row, i in enumerate(chosen):
        case = result.case_list[i]
        tiles = [
            case.source.image,
            labels_to_colour_mask(case.layout, case.n_objects),
            case.truth.image,
            *(_output_of(images, case) for images in result.outputs.values()),
        ]
        for j, tile in enumerate(tiles):
            big = Image.fromarray(tile).resize((side, side), Image.Resampling.NEAREST)
            sheet.paste(big, (pad + j * (side + pad), head + row * (side + pad)))
    return sheet


def write_reports(result: BenchResult, folder: Path) -> dict[str, Path]:
    """Write bench.json, bench.md and examples.png into `folder` (created); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / JSON_NAME, "md": folder / MD_NAME, "png": folder / PNG_NAME}
    payload = json.dumps(_clean(result.to_json()), indent=2, allow_nan=False)
    write_text_atomic(paths["json"], payload + "\n")
    write_text_atomic(paths["md"], markdown(result))
    write_png_atomic(paths["png"], example_sheet(result))
    return paths
