"""`layoutedit plan`: memory and FLOPs of a learn and an edit, planned without weights or GPU."""

from __future__ import annotations

from typing import Annotated

import typer

from layoutedit.cli.common import ConfigOption, PresetOption, console, state, user_errors

HELP = """Plan the memory and compute of learning and editing on a model, before you have it.

Builds the model from its config on PyTorch's `meta` device (no weights, no GPU, seconds),
runs one step of every phase through layoutedit's own code and prints, per phase, the peak
memory of live tensors by kind (weights, gradients, optimiser state, activations, recorded
attention), the FLOPs of the step and how often it runs; then the totals of a learn and of
an edit for the preset. Not counted: the CUDA context, allocator caching and kernel
workspaces (add about 0.5-1 GB on a GPU).

--arch: sd15, sd21, sdxl (published configs), builtin:shapes-tiny, a diffusers folder, or a
JSON file like layoutedit/planning/configs/sd15.json.

Examples:

  layoutedit plan --arch sd15

  layoutedit plan --arch sd15 --low-memory

  layoutedit plan --arch ~/models/my-sd21 --preset fast --backend cpu --json

With --scenes: the GPU-hours of a batch (`layoutedit batch`) of that many scenes, each
learned once, inverted once and edited --edits times, at --utilisation of --peak-tflops:

  layoutedit plan --arch sd15 --scenes 100000 --edits 4 --gpus 8
"""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("plan", help=HELP)
    @user_errors
    def plan_command(
        ctx: typer.Context,
        arch: Annotated[
            str, typer.Option("--arch", help="sd15, sd21, sdxl, builtin:NAME, a folder or JSON.")
        ] = "sd15",
        preset: PresetOption = None,
        config: ConfigOption = None,
        backend: Annotated[
            str,
            typer.Option("--backend", help="Backend to plan for (need not be usable here)."),
        ] = "cuda",
        low_memory: Annotated[
            bool,
            typer.Option(
                "--low-memory",
                help="Plan with low_memory on: gradient checkpointing (learning and the "
                "guidance pass), fp16 frozen weights with fp32 trained ones and 8-bit Adam "
                "moments for the fine-tune (on fp16 backends), a tiled decode above 512 px.",
            ),
        ] = False,
        objects: Annotated[
            int, typer.Option("--objects", min=1, max=32, help="Objects in the scene.")
        ] = 3,
        tflops: Annotated[
            float | None,
            typer.Option(
                "--tflops",
                min=0.001,
                help="Sustained TFLOPS of your device, to turn the FLOPs into predicted seconds "
                "(e.g. 40 for an RTX 3090 in fp16; `make gpu-check` measures real seconds).",
            ),
        ] = None,
        scenes: Annotated[
            int | None,
            typer.Option("--scenes", min=1, help="Plan a batch of this many scenes."),
        ] = None,
        edits: Annotated[
            int, typer.Option("--edits", min=1, help="Edits per scene of the batch.")
        ] = 1,
        gpus: Annotated[int, typer.Option("--gpus", min=1, help="GPUs the batch runs on.")] = 1,
        peak_tflops: Annotated[
            float,
            typer.Option(
                "--peak-tflops",
                min=0.001,
                help="Peak TFLOPS of one GPU for the batch plan (default: an A100's dense "
                "fp16 peak).",
            ),
        ] = 312.0,
        utilisation: Annotated[
            float,
            typer.Option(
                "--utilisation",
                min=0.001,
                max=1.0,
                help="Share of the peak learning and editing sustain (an assumption).",
            ),
        ] = 0.3,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        from layoutedit.config import resolve_settings
        from layoutedit.planning.archs import load_arch
        from layoutedit.planning.plan import make_plan
        from layoutedit.planning.report import evaluations_line, plan_table

        spec = load_arch(arch)
        settings = resolve_settings(preset, config, model=arch)
        plan = make_plan(spec, settings, backend=backend, low_memory=low_memory, objects=objects)
        job = None
        if scenes is not None:
            from layoutedit.planning.cluster import cluster_plan

            job = cluster_plan(
                plan,
                scenes=scenes,
                edits=edits,
                gpus=gpus,
                peak_tflops=peak_tflops,
                utilisation=utilisation,
            )
        if json_out or state(ctx).json:
            payload = plan.as_dict()
            if job is not None:
                payload["batch"] = job.as_dict()
            if tflops is not None:
                payload["predicted_seconds"] = {
                    "tflops": tflops,
                    "learn": plan.learn_total.flops / (tflops * 1e12),
                    "edit": plan.edit_total.flops / (tflops * 1e12),
                }
            state(ctx).emit_json(payload)
            return
        console.print(plan_table(plan))
        console.print(evaluations_line("learn", plan.learn_total))
        console.print(evaluations_line("edit", plan.edit_total))
        if tflops is not None:
            learn_s = plan.learn_total.flops / (tflops * 1e12)
            edit_s = plan.edit_total.flops / (tflops * 1e12)
            console.print(
                f"at {tflops:g} TFLOPS: learn about {learn_s / 60:.1f} min, edit about "
                f"{edit_s:.0f} s (FLOPs of matrix products, convolutions and attention only)"
            )
        if job is not None:
            for line in job.lines():
                console.print(line, highlight=False)
        for note in plan.notes:
            console.print(f"note: {note}")
        console.print(f"planned in {plan.seconds:.1f} s")
