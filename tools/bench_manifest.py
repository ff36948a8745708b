"""Write the benchmark's scenes as a batch manifest, to time `layoutedit batch` on them.

    python tools/bench_manifest.py --scenes 8 --out bench-batch
    layoutedit batch bench-batch/scenes.jsonl --out bench-batch/out

Each case scene of `layoutedit bench` (`layoutedit.bench.cases.make_cases`, same seed and
layouts per scene) becomes a scene folder with its rough target layouts under
`target_layout/`, and one manifest row whose edits are those layouts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from layoutedit.bench.cases import make_cases
from layoutedit.shapes.world import write_scene_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8, help="bench scenes (default 8)")
    parser.add_argument("--layouts", type=int, default=2, help="layouts per scene (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="case seed, as bench --seed")
    parser.add_argument("--out", type=Path, required=True, help="folder for scenes + manifest")
    args = parser.parse_args()
    by_scene: dict[int, list] = {}
    for case in make_cases(args.scenes, seed=args.seed, layouts_per_scene=args.layouts):
        by_scene.setdefault(case.scene_seed, []).append(case)
    rows = []
    for seed, cases in by_scene.items():
        name = f"scene-{seed}"
        write_scene_folder(cases[0].source, args.out / name, [c.layout for c in cases])
        edits = [
            {"layout": f"{name}/target_layout/layout{i}.png"} for i in range(1, len(cases) + 1)
        ]
        rows.append({"scene": name, "edits": edits, "id": name})
    manifest = args.out / "scenes.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{manifest}: {len(rows)} scenes, {sum(len(r['edits']) for r in rows)} edits")


if __name__ == "__main__":
    main()
