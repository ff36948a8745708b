"""`make gpu-check`: on a CUDA machine, check the GPU path and the planner in one go.

    python -m layoutedit.planning.gpu_check --out gpu-check-report.json

Parts, in this order, each timed, each recorded even when it fails (the report says which
failed and why), each skipped with the reason when the time budget (5 minutes) is short:

1. `sizes`: a random model of SD 1.5's size and one of SDXL's, written as diffusers folders
   and loaded as `edit` loads them (`gpu_check_sizes`): peak memory right after loading
   within the fp16 weights + 1 GiB, the source latent and decoded image finite, xformers
   and SDPA within 1e-2, the guidance gradient finite with cosine >= 0.9 against fp32.
2. `round_trip`: the embedded model learned with `learn --low-memory`'s settings, edited
   (the concept from the cache), learned again in the normal mode, in one process.
3. `oom`: `layoutedit edit` with the allocator held to a small share of the GPU
   (`torch.cuda.set_per_process_memory_fraction`): one `error:` line and exit 2.
4. `planner`: an SD 1.5-sized model with random weights on the device: one step of every
   learning and editing phase (plain and `--low-memory`), its real peak memory
   (`torch.cuda.max_memory_allocated`) and seconds per step next to the planner's figures
   for the same phases (the ratio measured / planned), and predicted totals.
5. `tests`: `pytest -m gpu` (the GPU tests; they skip without CUDA).
6. `backends`: learn and edit shapes-tiny scenes on every usable backend, same cases, with
   the speed-up over the first (`bench.backend_compare`).

Writes one JSON report and prints a summary; exit 1 when a part failed. `--device cpu
--tiny` runs the same code on the CPU with tiny models (the self-test the tests run): the
CUDA-only figures (peak memory, the allocator limit) are recorded as not measured, the
out-of-memory error is raised by a stand-in decoder, and the half-precision run is the
`cpu` backend with fp16 weights.
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
from layoutedit.planning.gpu_check_flows import forced_oom, round_trip

GIB = 2**30

BUDGET_S = 300.0  # 5 minutes in all


def _part(report: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    """Run one part; record its result (failed when it says `ok: false`) or its error, and
    its seconds."""
    began = time.perf_counter()
    try:
        result = work()
        failed = isinstance(result, dict) and result.get("ok") is False
        report["parts"][name] = {"ok": not failed, "result": result}
        if failed:
            report["parts"][name]["error"] = "a check failed (see result)"
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
    # On a GPU the CPU reference and cuda (cpu-fast's compile would take a minute of the
    # five); on the CPU both CPU backends.
    wanted = ["cpu", "cuda"] if device == "cuda" else ["cpu", "cpu-fast"]
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


def _size_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for size in result.get("sizes", []):
        if "skipped" in size:
            lines.append(f"  {size['size']}: skipped ({size['skipped']})")
            continue
        load, finite, kernels, guidance = (
            size["load"],
            size["finite"],
            size["kernels"],
            size["guidance"],
        )
        peak = load["peak_bytes"]
        loaded = (
            f"load peak {peak / GIB:.2f} GiB (limit {load['limit_bytes'] / GIB:.2f})"
            if peak is not None
            else f"weights {load['weights_bytes'] / GIB:.2f} GiB (peak on CUDA only)"
        )
        kernel = (
            f"{kernels['other']} vs sdpa {kernels['max_abs_diff']:.1e}"
            if kernels.get("compared")
            else f"kernels not compared ({kernels.get('reason')})"
        )
        lines.append(
            f"  {size['size']}: {'ok' if size['ok'] else 'FAILED'}; {loaded}; latent finite "
            f"{finite['latent']}, image finite {finite['image']}; {kernel}; guidance cosine "
            f"{guidance['cosine_vs_fp32']:.3f} vs fp32, finite {guidance['finite']}"
        )
    return lines


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One line per part, and per model size, round-trip check and measured model phase."""
    lines = []
    for name, part in report["parts"].items():
        if "skipped" in part:
            lines.append(f"{name}: skipped ({part['skipped']})")
            continue
        state = "ok" if part["ok"] else f"FAILED ({part['error'][:160]})"
        lines.append(f"{name}: {state} in {part['seconds']:.1f} s")
        result = part.get("result") or {}
        if not isinstance(result, dict):
            continue
        lines.extend(_size_lines(result))
        for check, passed in result.get("checks", {}).items():
            lines.append(f"  {check}: {'yes' if passed else 'NO'}")
        for error in result.get("error_lines", []):
            lines.append(f"  exit {result['exit_code']}: {error}")
        for row in result.get("rows", []):
            lines.append(
                f"  {row['backend']}: learn {row['learn_s']:.1f} s, edit {row['edit_s']:.2f} s, "
                f"edit x{row['edit_speedup']:.2f}, max px diff {row['max_pixel_diff']}"
            )
        for variant in result.get("models", []):
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


NEED_S = {
    "sd15": 40.0,
    "sdxl": 90.0,
    "round_trip": 45.0,
    "oom": 30.0,
    "planner": 45.0,
    "tests": 45.0,
    "backends": 60.0,
}
"""Seconds a part (or model size) needs at least on a GPU: it is skipped, with that reason,
when less of the budget is left."""


def _tiny_folders(work: Path) -> dict[str, Path]:
    """The self-test's stand-ins for SD 1.5 and SDXL: the tests' tiny folders."""
    from layoutedit.shapes.architecture import (
        TEST_TINY,
        build_pipeline_folder,
        build_sdxl_pipeline_folder,
    )

    return {
        "sd15": build_pipeline_folder(work / "tiny", TEST_TINY),
        "sdxl": build_sdxl_pipeline_folder(work / "tiny-sdxl", TEST_TINY),
    }


def _half_backend(device: str) -> Any:
    """The half-precision run's backend: `cuda`; on the CPU, `cpu` with fp16 weights."""
    from layoutedit.backend import get_backend
    from layoutedit.planning.gpu_check_sizes import with_dtype

    if device == "cuda":
        return get_backend("cuda")
    return with_dtype(get_backend("cpu"), torch.float16)


def _run_device(device: str) -> torch.device:
    """The device the checks run on: this process's GPU (`LOCAL_RANK`), or the CPU."""
    if device != "cuda":
        return torch.device("cpu")
    from layoutedit.editing.sharding import cuda_device_index

    return torch.device("cuda", cuda_device_index())


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
    device = _run_device(args.device)
    report: dict[str, Any] = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "tiny": args.tiny,
        "budget_s": args.budget_s,
        "parts": {},
    }

    def left() -> float:
        return args.budget_s - (time.perf_counter() - began)

    def run(name: str, work: Callable[[], Any]) -> None:
        need = NEED_S[name] if device.type == "cuda" else 0.0
        if left() < need:
            report["parts"][name] = {
                "ok": True,
                "skipped": f"time budget: {left():.0f} s left, needs about {need:.0f} s",
                "seconds": 0.0,
            }
            return
        _part(report, name, work)

    backend = "cuda" if device.type == "cuda" else "cpu"
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work_dir:
        work = Path(work_dir)
        cache = work / "cache"
        tiny = _tiny_folders(work) if args.tiny else {}
        folders: dict[str, Path] = {}

        def sizes() -> dict[str, Any]:
            from layoutedit.planning.archs import load_arch
            from layoutedit.planning.gpu_check_sizes import check_size, write_random_folder

            results: list[dict[str, Any]] = []
            for name in ("sd15", "sdxl"):
                need = NEED_S[name] if device.type == "cuda" else 0.0
                if left() < need:
                    results.append({"size": name, "skipped": f"time budget: {left():.0f} s left"})
                    continue
                arch = load_arch(str(tiny[name]) if tiny else name)
                folder = write_random_folder(arch, work / f"{name}-random", device)
                folders[name] = folder
                results.append(check_size(name, folder, device, _half_backend(args.device), cache))
            return {"sizes": results, "ok": all(r.get("ok", True) for r in results)}

        run("sizes", sizes)
        model = str(tiny["sd15"]) if tiny else "builtin:shapes-tiny"
        fast = resolve_settings("fast", model=model)
        if tiny:  # a few steps: the self-test checks the flow, not the learning
            fast = resolve_settings(
                "fast",
                overrides={"learn": {"ti_steps": 2, "ft_steps": 2}, "edit": {"steps": 3}},
                model=model,
            )
        run(
            "round_trip",
            lambda: round_trip(model, backend, work / "round-trip-cache", work, fast),
        )

        def oom() -> dict[str, Any]:
            target, fraction = model, 0.0
            if device.type == "cuda":
                # SD 1.5's fp16 weights alone exceed 1 GiB (the tiny model's exceed 1 MiB), so
                # loading or the first step runs out of memory.
                target = str(folders["sd15"]) if "sd15" in folders and not tiny else model
                allowed = GIB if target != model else 2**20
                total = torch.cuda.get_device_properties(device).total_memory
                fraction = min(1.0, allowed / total)
            # A GPU machine starts the command in seconds; a busy CPU box may take minutes.
            limit = max(30.0, min(120.0, left() - 5.0) if device.type == "cuda" else left() - 5.0)
            return forced_oom(target, backend, device.type, cache, work, fraction, limit)

        run("oom", oom)
        arch = str(tiny["sd15"]) if tiny else "sd15"
        planner_backend = "cuda" if device.type == "cuda" else "cpu-fast"
        published = resolve_settings("published", model=arch)

        def planner() -> dict[str, Any]:
            variants: list[dict[str, Any]] = []
            for low in (False, True):
                if device.type == "cuda" and left() < NEED_S["planner"] / 2 and variants:
                    continue  # the plain variant is kept; the low-memory one would not fit
                variants.append(measure_model(arch, args.device, planner_backend, published, low))
            return {"models": variants}

        run("planner", planner)
        run("tests", lambda: run_gpu_tests(args.pytest_args.split(), max(30.0, left() / 2)))
        run(
            "backends",
            lambda: time_backends(model, usable_backends(args.device), fast),
        )
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
