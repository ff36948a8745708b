"""`make gpu-check`: on a CUDA machine, check the GPU path and the planner in one go.

    python -m layoutedit.planning.gpu_check --out gpu-check-report.json

Parts, each timed, each recorded even when it fails (the report says which failed and why):

1. `tests`: `pytest -m gpu` (the GPU tests; they skip without CUDA).
2. `backends`: learn and edit shapes-tiny scenes on every usable backend, same cases, with
   the speed-up over the first (`bench.backend_compare`).
3. `sd15`: an SD 1.5-sized model with random weights on the device: one step of every
   learning and editing phase (plain and `--low-memory`), its real peak memory
   (`torch.cuda.max_memory_allocated`) and seconds per step, next to the planner's figures
   for the same phases (the ratio measured / planned), and predicted totals for a learn and
   an edit from the measured seconds.

Writes one JSON report and prints a summary. A part that would not fit the time budget is
skipped with that reason. `--device cpu --tiny` runs the same parts on the CPU with tiny
models (what the tests run, in seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from layoutedit.config import Settings, resolve_settings

BUDGET_S = 480.0  # 8 minutes in all


def _part(report: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    """Run one part; record its result or its error and its seconds."""
    began = time.perf_counter()
    try:
        report["parts"][name] = {"ok": True, "result": work()}
    except Exception as exc:  # one failing part must not hide the others
        report["parts"][name] = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
        }
    report["parts"][name]["seconds"] = time.perf_counter() - began


def run_gpu_tests(pytest_args: list[str], timeout: float) -> dict[str, Any]:
    """`pytest -m gpu -q` in a subprocess; its exit code and the tail of its output."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, *pytest_args], capture_output=True, text=True, timeout=timeout, check=False
    )
    # Exit code 5: no test was collected (a machine without the test folder).
    if done.returncode not in (0, 5):
        raise RuntimeError(f"pytest -m gpu failed (exit {done.returncode}): {done.stdout[-800:]}")
    return {"exit_code": done.returncode, "tail": done.stdout[-800:]}


def time_backends(model: str, backends: list[str], settings: Settings) -> dict[str, Any]:
    """Learn and edit the same shapes cases on each backend (`bench --backends`)."""
    from layoutedit.bench.backend_compare import compare_backends
    from layoutedit.bench.cases import make_cases

    cases = make_cases(1, seed=0, layouts_per_scene=1)
    return {"model": model, "rows": compare_backends(backends, model, settings, cases).rows()}


def usable_backends(device: str) -> list[str]:
    """The backends to time: the reference first, then the accelerated ones usable here."""
    from layoutedit.backend import list_backends

    usable = {i.name for i in list_backends() if i.available}
    wanted = ["cpu", "cpu-fast", "cuda"] if device == "cuda" else ["cpu", "cpu-fast"]
    return [n for n in wanted if n in usable]


def _release(device: str) -> None:
    """Free what the last model left (reference cycles included) before the next is built."""
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def measure_model(
    arch_name: str, device: str, backend: str, settings: Settings, low_memory: bool
) -> dict[str, Any]:
    """One step of every phase on a random-weight model on `device`, and the plan of it."""
    from layoutedit.planning.archs import load_arch
    from layoutedit.planning.plan import (
        backend_instance,
        low_memory_settings,
        plan_editing,
        plan_learning,
    )
    from layoutedit.planning.totals import edit_total, learn_total

    arch = load_arch(arch_name)
    instance = backend_instance(backend)
    if low_memory:
        settings = low_memory_settings(settings, instance)
    learn, edit = settings.learn, settings.edit
    planned = {**plan_learning(arch, learn, instance, 3), **plan_editing(arch, edit, instance, 3)}
    measured = dict(plan_learning(arch, learn, instance, 3, device=device))
    _release(device)  # the learning model must not sit under the editing model's peaks
    measured.update(plan_editing(arch, edit, instance, 3, device=device))
    _release(device)
    phases = []
    for name, real in measured.items():
        plan = planned[name]
        real_peak = real.device_peak if real.device_peak is not None else real.peak_total
        phases.append(
            {
                "phase": name,
                "planned_peak_bytes": plan.peak_total,
                "measured_peak_bytes": real_peak,
                "peak_ratio": real_peak / plan.peak_total if plan.peak_total else None,
                "planned_flops": plan.flops,
                "measured_flops": real.flops,
                "seconds_per_step": real.seconds,
            }
        )
    timed = {name: real.seconds or 0.0 for name, real in measured.items()}
    learn_repeats = learn_total(planned, learn, 3).repeats
    edit_repeats = edit_total(planned, edit).repeats
    return {
        "arch": arch_name,
        "device": device,
        "backend": backend,
        "low_memory": low_memory,
        "phases": phases,
        "predicted_learn_seconds": sum(timed[n] * k for n, k in learn_repeats.items()),
        "predicted_edit_seconds": sum(timed[n] * k for n, k in edit_repeats.items()),
        "planned_learn_peak_bytes": learn_total(planned, learn, 3).peak_bytes,
        "planned_edit_peak_bytes": edit_total(planned, edit).peak_bytes,
        "note": "seconds are of one step, the first (warm-up included): an upper bound",
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One line per part and per measured model phase."""
    lines = []
    for name, part in report["parts"].items():
        state = "ok" if part["ok"] else f"FAILED ({part['error'][:160]})"
        lines.append(f"{name}: {state} in {part['seconds']:.1f} s")
        result = part.get("result") or {}
        for row in result.get("rows", []) if isinstance(result, dict) else []:
            lines.append(
                f"  {row['backend']}: learn {row['learn_s']:.1f} s, edit {row['edit_s']:.2f} s, "
                f"edit x{row['edit_speedup']:.2f}, max px diff {row['max_pixel_diff']}"
            )
        for variant in result.get("models", []) if isinstance(result, dict) else []:
            tag = "low memory" if variant["low_memory"] else "plain"
            learn_s, edit_s = variant["predicted_learn_seconds"], variant["predicted_edit_seconds"]
            lines.append(
                f"  {variant['arch']} {tag}: predicted learn {learn_s:.0f} s, edit {edit_s:.0f} s"
            )
            for phase in variant["phases"]:
                ratio = phase["peak_ratio"]
                lines.append(
                    f"    {phase['phase']}: {phase['measured_peak_bytes'] / 2**30:.2f} GiB measured"
                    f" / {phase['planned_peak_bytes'] / 2**30:.2f} planned"
                    f" (x{ratio:.2f}), {phase['seconds_per_step'] or 0:.3f} s/step"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run every part, write the report, print the summary; exit 1 if a part failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="Tiny models (a CPU self-test).")
    parser.add_argument("--out", type=Path, default=Path("gpu-check-report.json"))
    parser.add_argument("--budget-s", type=float, default=BUDGET_S)
    parser.add_argument("--pytest-args", default="", help="Extra pytest arguments (one string).")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; `--device cpu --tiny` runs the self-test")
        return 2
    report: dict[str, Any] = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "torch": torch.__version__,
        "tiny": args.tiny,
        "parts": {},
    }

    def left() -> float:
        return args.budget_s - (time.perf_counter() - began)

    _part(report, "tests", lambda: run_gpu_tests(args.pytest_args.split(), max(30.0, left() / 4)))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        tiny_dir = None
        if args.tiny:
            from layoutedit.shapes.architecture import TEST_TINY, build_pipeline_folder

            tiny_dir = build_pipeline_folder(Path(work) / "tiny", TEST_TINY)
        model = str(tiny_dir) if tiny_dir else "builtin:shapes-tiny"
        _part(
            report,
            "backends",
            lambda: time_backends(
                model, usable_backends(args.device), resolve_settings("fast", model=model)
            ),
        )
        arch = str(tiny_dir) if tiny_dir else "sd15"
        backend = "cuda" if args.device == "cuda" else "cpu-fast"
        settings = resolve_settings("published", model=arch)

        def models() -> dict[str, Any]:
            variants: list[dict[str, Any]] = []
            for low in (False, True):
                if left() < 60 and variants:
                    variants.append({"skipped": "time budget", "low_memory": low})
                    continue
                variants.append(measure_model(arch, args.device, backend, settings, low))
            return {"models": [v for v in variants if "phases" in v]}

        _part(report, "sd15", models)
    report["seconds"] = time.perf_counter() - began
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from layoutedit.atomic import write_text_atomic

    write_text_atomic(args.out, json.dumps(report, indent=2, default=str))
    for line in summary_lines(report):
        print(line)
    print(f"report: {args.out} ({report['seconds']:.0f} s)")
    return 0 if all(p["ok"] for p in report["parts"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
