"""Run variants over cases and collect the table: `run_bench` is the library entry point.

    cases = make_cases(8, seed=0)
    result = run_bench(cases, [PasteVariant()])
    write_reports(result, Path("bench-out"))      # layoutedit.bench.report

Every variant sees the same cases, scene by scene. Per variant the table gives the mean of
each metric over all edits, the mean learn seconds per scene, the mean seconds and UNet
evaluations per edit, and the peak memory while the variant ran (resident set size; with
CUDA, the allocator's peak too).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import groupby
from typing import Any

import numpy as np

from layoutedit.bench.cases import Case
from layoutedit.bench.memory import PeakMemory
from layoutedit.bench.scoring import (
    LOWER_IS_BETTER,
    METRICS,
    Scores,
    colour_model,
    metrics_of,
    score,
    segmenter_check,
)
from layoutedit.bench.stats import Interval, bootstrap_mean, paired_difference
from layoutedit.bench.variants import Variant
from layoutedit.editing.paste import background_mean, paste_edit

SEGMENTER_MIN_IOU = 0.9
"""The segmenter must find the objects of a source and of a paste rendering this well."""

Say = Callable[[str], None]


@dataclass
class VariantRow:
    """One row of the table."""

    name: str
    description: str
    edits: int
    metrics: dict[str, float]
    """Mean over edits of each of `scoring.METRICS` (world v2: `scoring.METRICS_V2`)."""
    learn_seconds: float
    """Mean per scene (0 for variants that learn nothing)."""
    learn_unet_evaluations: float
    """Mean per scene."""
    edit_seconds: float
    """Mean per edit."""
    unet_evaluations: float
    """Mean per edit (forwards + backwards), learning excluded."""
    peak_rss_mb: float
    peak_cuda_mb: float | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per metric, the 95 % bootstrap interval of the mean over edits."""
    attention_share: float | None = None
    """Mean over scenes and objects of the token's attention share on its source object
    (`layoutedit.learning.concept_check`); None without a model."""


@dataclass(frozen=True)
class Comparison:
    """`full` minus another row on one metric, paired over the edits both made."""

    variant: str
    metric: str
    difference: float
    low: float
    high: float
    full_better: bool
    """The interval excludes zero on the side where `full` is better."""

    @property
    def real(self) -> bool:
        """Whether the interval excludes zero (either side)."""
        return self.low > 0 or self.high < 0


@dataclass
class BenchResult:
    """What a run measured: rows, per-edit records, the segmenter check, output images."""

    options: dict[str, Any]
    cases: list[dict[str, Any]]
    rows: list[VariantRow]
    edits: list[dict[str, Any]]
    segmenter: dict[str, Any]
    seconds: float
    comparisons: list[Comparison] = field(default_factory=list)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    """Variant name -> case id -> output image (an identity row's ids are its own), for the
    example sheet."""
    case_list: list[Case] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (no images)."""
        return {
            "options": self.options,
            "seconds": round(self.seconds, 2),
            "rows": [asdict(r) for r in self.rows],
            "comparisons": [asdict(c) for c in self.comparisons],
            "segmenter": self.segmenter,
            "cases": self.cases,
            "edits": self.edits,
        }


def case_record(case: Case) -> dict[str, Any]:
    """JSON description of a case: seed, kind, objects and how each moves (world v2: also
    the depth order, back to front)."""
    extra = {} if case.depth_order is None else {"depth_order": list(case.depth_order)}
    return {
        "id": case.case_id,
        "scene_seed": case.scene_seed,
        "kind": case.kind,
        "background": case.source.background,
        "objects": [
            {
                "name": name,
                "from": [round(p.src_cx, 2), round(p.src_cy, 2)],
                "to": [round(p.dst_cx, 2), round(p.dst_cy, 2)],
                "scale": round(p.scale, 3),
                "region": shape,
            }
            for name, p, shape in zip(case.names, case.placements, case.region_shapes, strict=True)
        ],
        **extra,
    }


def check_segmenter(cases: Sequence[Case]) -> dict[str, Any]:
    """The segmenter's validation over the cases: lowest per-object IoU on the sources and
    on cut-and-paste renderings; `passed` when both reach SEGMENTER_MIN_IOU."""
    source, pasted = [], []
    for case in cases:
        fill = background_mean(case.source.image, case.source_labels, case.n_objects)
        image, masks = paste_edit(
            case.source.image, case.source.masks, case.placements, fill, case.depth_order
        )
        check = segmenter_check(case, image, masks)
        source.append(check["source_min_iou"])
        pasted.append(check["paste_min_iou"])
    return {
        "source_min_iou": round(min(source), 4),
        "source_mean_min_iou": round(float(np.mean(source)), 4),
        "paste_min_iou": round(min(pasted), 4),
        "paste_mean_min_iou": round(float(np.mean(pasted)), 4),
        "threshold": SEGMENTER_MIN_IOU,
        "passed": min(*source, *pasted) >= SEGMENTER_MIN_IOU,
    }


def compare(
    scores: dict[str, dict[str, Scores]],
    reference: str = "full",
    metrics: Sequence[str] = METRICS,
) -> list[Comparison]:
    """`reference` minus every other row, per metric, paired over their common edits.

    Args:
        scores: variant -> case id -> scores.
        metrics: the metric names to compare (`scoring.metrics_of` the cases' world).
    """
    if reference not in scores:
        return []
    out = []
    base = scores[reference]
    for name, rows in scores.items():
        common = [case for case in base if case in rows]
        if name == reference or not common:
            continue
        for metric in metrics:
            ref = [getattr(base[c], metric) for c in common]
            other = [getattr(rows[c], metric) for c in common]
            diff = paired_difference(ref, other)
            full_better = diff.high < 0 if metric in LOWER_IS_BETTER else diff.low > 0
            out.append(Comparison(name, metric, diff.mean, diff.low, diff.high, bool(full_better)))
    return out


def _bounds(interval: Interval) -> tuple[float, float]:
    return (round(interval.low, 4), round(interval.high, 4))


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def run_bench(
    cases: Sequence[Case],
    variants: Sequence[Variant],
    *,
    options: dict[str, Any] | None = None,
    say: Say | None = None,
) -> BenchResult:
    """Run every variant on every case and score the outputs.

    Args:
        cases: from `make_cases` (cases of one scene are consecutive).
        variants: the rows, in table order.
        options: recorded in the result as given (what the run was asked for).
        say: progress lines (None: quiet).
    """
    say = say or (lambda _line: None)
    began = time.perf_counter()
    metrics = metrics_of(cases[0].world) if cases else METRICS
    scenes = [list(group) for _, group in groupby(cases, key=lambda c: c.scene_seed)]
    models = {c.case_id: colour_model(c) for c in cases}
    rows, records = [], []
    outputs: dict[str, dict[str, np.ndarray]] = {}
    by_variant: dict[str, dict[str, Scores]] = {}
    for variant in variants:
        say(f"variant {variant.name}")
        memory = PeakMemory()
        memory.start()
        learn_s, learn_evals, shares = [], [], []
        images = outputs.setdefault(variant.name, {})
        edit_s, evals, scores = [], [], []
        by_case = by_variant.setdefault(variant.name, {})
        for scene_cases in scenes:
            group = variant.scene_cases(scene_cases)
            out = variant.run_scene(group)
            learn_s.append(out.learn_seconds)
            learn_evals.append(out.learn_unet_evaluations)
            if out.attention_shares is not None:
                shares.extend(out.attention_shares)
            for case, edit in zip(group, out.edits, strict=True):
                s = score(case, edit.image, models[scene_cases[0].case_id])
                by_case[case.case_id] = s
                scores.append(s)
                images[case.case_id] = edit.image
                edit_s.append(edit.seconds)
                evals.append(edit.unet_evaluations)
                records.append(
                    {
                        "variant": variant.name,
                        "case": case.case_id,
                        **{k: round(v, 4) for k, v in s.as_dict().items()},
                        "edit_seconds": round(edit.seconds, 4),
                        "unet_evaluations": edit.unet_evaluations,
                        **edit.info,
                    }
                )
        memory.stop()
        rows.append(
            VariantRow(
                name=variant.name,
                description=variant.description,
                edits=len(scores),
                metrics={m: _mean([getattr(s, m) for s in scores]) for m in metrics},
                intervals={
                    m: _bounds(bootstrap_mean([getattr(s, m) for s in scores])) for m in metrics
                },
                attention_share=_mean(shares) if shares else None,
                learn_seconds=_mean(learn_s),
                learn_unet_evaluations=_mean(learn_evals),
                edit_seconds=_mean(edit_s),
                unet_evaluations=_mean(evals),
                peak_rss_mb=memory.rss_mb,
                peak_cuda_mb=memory.cuda_mb,
            )
        )
    return BenchResult(
        options=dict(options or {}),
        cases=[case_record(c) for c in cases],
        rows=rows,
        edits=records,
        segmenter=check_segmenter(cases),
        seconds=time.perf_counter() - began,
        comparisons=compare(by_variant, metrics=metrics),
        outputs=outputs,
        case_list=list(cases),
    )
