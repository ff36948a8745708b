"""Paired differences between any two rows of a bench.json (the bench prints `full` minus
each row only).

Usage: python tools/bench_pairs.py bench-out/bench.json ROW OTHER[,OTHER...]

Per metric: the mean of ROW minus OTHER over the edits both scored, with its 95 % paired
bootstrap interval (`bench.stats.paired_difference`); `*` where the interval excludes zero.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from layoutedit.bench.stats import paired_difference

METRICS = (
    "image_psnr",
    "revealed_psnr",
    "shadow_psnr",
    "vacated_texture_distance",
    "vacated_psnr",
    "layout_iou",
    "colour_error",
    "background_psnr",
    "object_psnr",
    "shape_iou",
    "seam_error",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("row")
    parser.add_argument("others")
    args = parser.parse_args()
    data = json.loads(args.bench_json.read_text())
    by: dict[str, dict[str, dict]] = defaultdict(dict)
    for edit in data["edits"]:
        by[edit["variant"]][edit["case"]] = edit
    cases = sorted(by[args.row])
    nan = float("nan")
    print(f"| {args.row} minus | " + " | ".join(METRICS) + " |")
    print("| --- |" + " ---: |" * len(METRICS))
    for other in args.others.split(","):
        cells = []
        for metric in METRICS:
            a = [by[args.row][c].get(metric) for c in cases]
            b = [by[other][c].get(metric) for c in cases]
            diff = paired_difference(
                [nan if v is None else v for v in a], [nan if v is None else v for v in b]
            )
            real = "*" if diff.low > 0 or diff.high < 0 else ""
            cells.append(f"{diff.mean:+.3g} [{diff.low:+.3g}, {diff.high:+.3g}]{real}")
        print(f"| {other} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
