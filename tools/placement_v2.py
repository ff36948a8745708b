"""How well placements from painted regions match the exact ones on world v2 cases.

Usage: python tools/placement_v2.py --seed 2000 --scenes 16

For each object of each case, its whole (amodal) source mask is moved by the estimated and
by the exact placement; the table gives the mean IoU of the two, per placement method, split
by whether the object moved and whether it is partly hidden in the source or the target.
Pure numpy: no model.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from layoutedit.bench.cases_v2 import make_cases_v2
from layoutedit.scenes.layout_ops import estimate_placements, snap_still, warp_mask
from layoutedit.scenes.occlusion_fit import occlusion_placements

CELL = 4.0  # px of a latent cell at shapes-tiny's 64 px


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--scale-snap", type=float, default=0.15)
    args = parser.parse_args()
    cases = make_cases_v2(args.scenes, seed=args.seed, layouts_per_scene=2)
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for case in cases:
        assert case.source.amodal is not None and case.truth.amodal is not None
        fit = [
            snap_still(p, 0.5 * CELL)
            for p in estimate_placements(case.source_labels, case.layout, case.n_objects)
        ]
        occl = occlusion_placements(
            case.source_labels, case.layout, case.n_objects, 1.25 * CELL, args.scale_snap
        )
        for i, exact in enumerate(case.placements):
            moved = (exact.dst_cx, exact.dst_cy, exact.scale) != (exact.src_cx, exact.src_cy, 1)
            hidden = bool(
                case.source.amodal[i].sum() > case.source.masks[i].sum()
                or case.truth.amodal[i].sum() > case.truth.masks[i].sum()
            )
            group = f"{'moved' if moved else 'still'}, {'hidden' if hidden else 'whole'}"
            whole = case.source.amodal[i]
            want = warp_mask(whole, exact)
            for name, est in (("fit + still 0.5", fit[i]), ("occlusion", occl[i])):
                got = warp_mask(whole, est)
                value = float((got & want).sum() / max(1, (got | want).sum()))
                groups[name][group].append(value)
                groups[name]["all"].append(value)
    names = sorted(next(iter(groups.values())))
    print("| method | " + " | ".join(f"{n} (n)" for n in names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for method, by in groups.items():
        cells = [f"{np.mean(by[n]):.3f} ({len(by[n])})" for n in names]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
