"""gpu-check's model-size checks: a random-weight model of Stable Diffusion 1.5's or SDXL's
size, written as a diffusers folder and loaded the way `edit` loads it.

For one model (`check_size`), each figure in the report:

- `load`: `torch.cuda.max_memory_allocated` from before `load_model` to right after it
  (weights read straight onto the GPU in the editing dtype, `layoutedit.precision`) against
  the weights' own bytes (the UNet and text encoders in fp16, the VAE in fp32 when its config
  says `force_upcast`); passes within `LOAD_HEADROOM`. CUDA only.
- `finite`: the source's latent (encoded by the edit session) and its decoded image.
- `kernels`: one UNet call with PyTorch's SDPA on every layer against the same call with
  xformers (`kernels.xformers_failure` says when it does not run here; on the CPU, the
  explicit `AttnProcessor` stands in), max |a - b| <= `KERNEL_TOLERANCE` (1 + |a|).
- `guidance`: the attention-guidance gradient of the first step (`AttentionGuide.
  loss_and_grad`) in half precision against the same model in fp32: finite, cosine
  >= `MIN_COSINE`.

The files are written in fp16 on a GPU (half the bytes to write and read), fp32 on the
CPU; the fp32 reference loads the same fp16 values, so only the arithmetic differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layoutedit.backend import Backend
from layoutedit.planning.archs import ArchSpec

GIB = 2**30
LOAD_HEADROOM = GIB
"""What loading may hold above the weights (CUDA context excluded: it is not allocated)."""
KERNEL_TOLERANCE = 1e-2
MIN_COSINE = 0.9


def _release(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def write_random_folder(arch: ArchSpec, folder: Path, device: torch.device) -> Path:
    """A diffusers folder of `arch` with random weights (built on `device`, where random
    initialisation of SDXL's 3.5 billion weights takes seconds), a shapes-world tokenizer
    (77 tokens for the real sizes) and the arch's scheduler config."""
    from transformers import CLIPTokenizer

    from layoutedit.planning.meta_model import build_plan_model
    from layoutedit.shapes.tokenizer import write_tokenizer
    from layoutedit.shapes.world import VOCABULARY

    stored = torch.float16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    plan = build_plan_model(arch, device=device, dtype=torch.float32)
    for hook in plan.hooks:  # the planner's SDXL conditioning is not part of the model
        hook.remove()
    model = plan.model
    length = int(arch.text_encoders[0].get("max_position_embeddings", 77))
    write_tokenizer(folder / "tokenizer", VOCABULARY, length)
    parts: dict[str, Any] = {"unet": model.unet, "vae": model.vae}
    for index, encoder in enumerate(plan.text_encoders):
        parts["text_encoder" if index == 0 else "text_encoder_2"] = encoder
    if len(plan.text_encoders) > 1:
        # SDXL's second tokenizer: the same vocabulary, padding with "!".
        second = CLIPTokenizer.from_pretrained(folder / "tokenizer", pad_token="!")
        second.save_pretrained(folder / "tokenizer_2")
    for name, module in parts.items():
        module.to(dtype=stored).save_pretrained(folder / name, safe_serialization=True)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(arch.scheduler))
    index_file = {"_class_name": "StableDiffusionPipeline", "force_zeros_for_empty_prompt": True}
    (folder / "model_index.json").write_text(json.dumps(index_file))
    del plan, model, parts
    _release(device)
    return folder


def with_dtype(backend: Backend, dtype: torch.dtype) -> Backend:
    """`backend` with another weight dtype (its kernels, device and batching as they are)."""

    class WithDtype(type(backend)):  # type: ignore[misc]
        @property
        def dtype(self) -> torch.dtype:
            return dtype

    return WithDtype()


def _scene_and_layout() -> tuple[Any, Any]:
    from layoutedit.scenes.scene import layout_from_labels, scene_from_arrays
    from layoutedit.shapes.world import MASK_BACKGROUND, MASK_PALETTE, sample_scene

    world = sample_scene(3, 2)
    scene = scene_from_arrays(
        world.image, world.labels(), world.names, MASK_PALETTE[:2], MASK_BACKGROUND
    )
    return scene, layout_from_labels(np.roll(scene.labels, 12, axis=1), scene)


def _session(model: Any, backend: Backend) -> tuple[Any, Any]:
    from layoutedit.config import EditConfig
    from layoutedit.editing.session import EditSession

    config = EditConfig(steps=4, seeds=(0,), use_concept=False, blend_steps=0)
    scene, layout = _scene_and_layout()
    return EditSession(model, scene, config, backend), layout


def guidance_gradient(session: Any, layout: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) losses and the (1, C, h, w) guidance gradient of the first DDIM step from the
    seed-0 start, as `AttentionGuide.loss_and_grad` computes them in an edit."""
    from layoutedit.counting import UNetCounter
    from layoutedit.editing.denoising import UNetRunner
    from layoutedit.editing.sampling import AttentionGuide
    from layoutedit.scenes.grids import region_masks

    regions = region_masks(layout.labels, len(session.scene.objects), session.res)
    guide = AttentionGuide(
        store=session.store,
        positions=session.positions,
        regions=torch.from_numpy(regions).to(session.source.device),
        last=session.last,
        steps=session.config.steps,
        softmax_scale=session.config.softmax_scale,
    )
    precision = session.precision
    counter = UNetCounter()
    runner = UNetRunner(session.model.unet, precision.weights, precision.autocast, counter)
    t = session.sampler.timesteps[0]
    return guide.loss_and_grad(runner, session.start_noise(0), t, session.cond, counter)


def compare_kernels(model: Any, precision: Any, device: torch.device) -> dict[str, Any]:
    """One UNet call with SDPA everywhere against xformers (the explicit processor on the
    CPU, where xformers has no kernels)."""
    from diffusers.models.attention_processor import AttnProcessor

    from layoutedit.precision import unet_forward
    from layoutedit_cuda.kernels import make_processor, xformers_failure

    other, note = "xformers", None
    if device.type != "cuda":
        other, note = "explicit", "no xformers kernels on the CPU: the explicit processor"
    else:
        failure = xformers_failure(device)
        if failure is not None:
            return {"compared": False, "reason": f"xformers does not run here: {failure}"}
    generator = torch.Generator().manual_seed(1)
    shape = (1, int(model.unet.config.in_channels), model.latent_size, model.latent_size)
    z = torch.randn(shape, generator=generator).to(device)
    with torch.no_grad():
        cond = model.encode_text(["a picture"])
        model.unet.set_attn_processor(make_processor("sdpa"))
        reference = unet_forward(model.unet, precision, z, 500, cond)
        model.unet.set_attn_processor(
            make_processor("xformers") if other == "xformers" else AttnProcessor()
        )
        candidate = unet_forward(model.unet, precision, z, 500, cond)
    diff = (candidate - reference).abs()
    allowed = KERNEL_TOLERANCE * (1 + reference.abs())
    return {
        "compared": True,
        "other": other,
        "note": note,
        "max_abs_diff": float(diff.max()),
        "finite": bool(torch.isfinite(candidate).all() and torch.isfinite(reference).all()),
        "ok": bool((diff <= allowed).all()),
    }


def _weight_bytes(model: Any, dtype: torch.dtype) -> int:
    """Bytes of the model's weights in `dtype`, the VAE in fp32 when it forces an upcast."""
    from layoutedit.precision import force_upcast

    total = 0
    for module in model.modules:
        size = 4 if module is model.vae and force_upcast(model.vae) else dtype.itemsize
        for t in [*module.parameters(), *module.buffers()]:
            # Integer buffers (the text encoders' position ids) keep their own size.
            total += t.numel() * (size if t.is_floating_point() else t.element_size())
    return total


def check_size(
    name: str, folder: Path, device: torch.device, backend: Backend, cache_dir: Path
) -> dict[str, Any]:
    """Every check of the module docstring for the model in `folder`; `ok` when all pass.

    Args:
        name: the size's name in the report (`sd15`, `sdxl`).
        folder: from `write_random_folder`.
        device: where it runs.
        backend: the half-precision run's backend (`cuda`; on the CPU a `cpu` with fp16).
        cache_dir: the loader's memo of weight hashes.
    """
    from layoutedit.loading.model_loading import load_model
    from layoutedit.planning.auto_memory import resident_bytes
    from layoutedit.precision import NonFiniteError, edit_precision

    half = backend.dtype
    out: dict[str, Any] = {"size": name, "device": str(device), "dtype": str(half)}
    _release(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    model = load_model(str(folder), device=device, dtype=half, cache_dir=cache_dir)
    expected = _weight_bytes(model, half)
    load: dict[str, Any] = {"weights_bytes": expected, "resident_bytes": resident_bytes(model)}
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        load.update(peak_bytes=peak, limit_bytes=expected + LOAD_HEADROOM)
        load["ok"] = peak <= expected + LOAD_HEADROOM
    else:
        load.update(peak_bytes=None, ok=None, note="measured on CUDA only")
    load["ok_dtype"] = load["resident_bytes"] <= expected
    out["load"] = load
    precision = edit_precision(backend)
    out["kernels"] = compare_kernels(model, precision, device)
    session, layout = _session(model, backend)
    finite: dict[str, Any] = {"latent": bool(torch.isfinite(session.source).all())}
    try:
        image = model.decode_latents(session.source)[0]
        finite["image"] = True
        finite["image_mean"] = float(image.mean())
    except NonFiniteError as exc:
        finite.update(image=False, error=exc.line())
    out["finite"] = finite
    losses, grad_half = guidance_gradient(session, layout)
    grad_half = grad_half.float().cpu()
    del session, model
    _release(device)
    reference = load_model(str(folder), device=device, dtype=torch.float32, cache_dir=cache_dir)
    session, layout = _session(reference, with_dtype(backend, torch.float32))
    ref_losses, grad_full = guidance_gradient(session, layout)
    grad_full = grad_full.float().cpu()
    del session, reference
    _release(device)
    finite_grad = bool(torch.isfinite(grad_half).all())
    cosine = float(
        torch.nn.functional.cosine_similarity(grad_half.flatten(), grad_full.flatten(), dim=0)
    )
    out["guidance"] = {
        "finite": finite_grad,
        "cosine_vs_fp32": cosine,
        "losses": [float(v) for v in losses],
        "losses_fp32": [float(v) for v in ref_losses],
        "ok": finite_grad and cosine >= MIN_COSINE,
    }
    kernels_ok = out["kernels"].get("ok", True) is not False
    out["ok"] = bool(
        load["ok"] is not False
        and load["ok_dtype"]
        and finite["latent"]
        and finite["image"]
        and kernels_ok
        and out["guidance"]["ok"]
    )
    return out
