"""Bootstrap intervals and the paired comparison of the bench table."""

from __future__ import annotations

import numpy as np

from layoutedit.bench.cases import identity_case, make_cases
from layoutedit.bench.run import compare
from layoutedit.bench.scoring import Scores
from layoutedit.bench.stats import bootstrap_mean, paired_difference


def test_interval_holds_the_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_mean(rng.normal(1.0, 1.0, 10).tolist())
    large = bootstrap_mean(rng.normal(1.0, 1.0, 1000).tolist())
    assert small.low <= small.mean <= small.high
    assert (large.high - large.low) < (small.high - small.low)
    assert large.low < 1.0 < large.high


def test_paired_difference_sees_a_small_constant_shift_that_unpaired_noise_hides() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0.0, 1.0, 16)
    shifted = base + 0.05  # per-edit noise is 20x the shift, but pairing cancels it
    diff = paired_difference(shifted.tolist(), base.tolist())
    assert diff.excludes_zero and diff.low > 0
    noise = paired_difference(rng.normal(0, 1, 16).tolist(), rng.normal(0, 1, 16).tolist())
    assert not noise.excludes_zero


def test_nan_values_are_dropped_and_too_few_values_give_no_interval() -> None:
    assert bootstrap_mean([1.0, float("nan"), 3.0, 1.0, 3.0, 2.0]).mean == 2.0
    assert np.isnan(bootstrap_mean([float("nan")]).mean)
    single = paired_difference([0.9], [0.1])  # one edit: no evidence either way
    assert single.mean == 0.8 and np.isnan(single.low) and not single.excludes_zero


def _scores(layout_iou: float, colour_error: float) -> Scores:
    return Scores(layout_iou, 0.5, colour_error, 0.5, 20.0, 25.0)


def test_compare_marks_full_better_per_metric_direction() -> None:
    ids = [str(i) for i in range(12)]
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.01, 12)
    full = {i: _scores(0.6 + n, 20.0 + n) for i, n in zip(ids, noise, strict=True)}
    other = {i: _scores(0.3 + n, 40.0 + n) for i, n in zip(ids, noise, strict=True)}
    rows = {c.metric: c for c in compare({"full": full, "no-x": other})}
    assert rows["layout_iou"].full_better and rows["layout_iou"].difference > 0
    assert rows["colour_error"].full_better and rows["colour_error"].difference < 0
    assert not rows["shape_iou"].real  # identical


def test_identity_case_targets_the_source_itself() -> None:
    case = make_cases(1, seed=0)[0]
    same = identity_case(case)
    assert same.kind == "identity" and same.case_id.endswith("identity")
    assert np.array_equal(same.layout, case.source_labels)
    assert np.array_equal(same.target_masks, case.source.masks)
