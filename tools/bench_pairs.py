"""Paired differences between any two rows of one bench run (the bench prints `full` minus
each row only).

Usage: python tools/bench_pairs.py bench-out ROW OTHER[,OTHER...]

Per metric: ROW minus OTHER over the cases both edited, mean [95 % paired bootstrap
interval] (`bench.run_diff.diff_rows`); `*` where the interval excludes zero with ROW
better, `-` with ROW worse. Markdown, world v2's own metrics in a second table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layoutedit.bench.report import METRIC_NAMES, METRIC_NAMES_V2, difference_cells, markdown_table
from layoutedit.bench.run_diff import diff_rows, load_run
from layoutedit.errors import UserError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a bench --out folder or its bench.json")
    parser.add_argument("row")
    parser.add_argument("others", help="comma-separated rows")
    args = parser.parse_args()
    try:
        comparisons = diff_rows(load_run(args.run), args.row, args.others.split(","))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    label = f"{args.row} minus"
    print("\n".join(markdown_table(*difference_cells(comparisons, label, metrics=METRIC_NAMES))))
    if any(c.metric == "image_psnr" for c in comparisons):
        cells = difference_cells(comparisons, label, metrics=METRIC_NAMES_V2)
        print("\n" + "\n".join(markdown_table(*cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
