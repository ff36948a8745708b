"""Single-file models: our own one-`.safetensors` layout, and original SD checkpoints.

Our layout keeps a whole model in one safetensors file that loads without running code:
tensors under the prefixes `unet.`, `vae.` and `text_encoder.`, and in the file's metadata
(string -> string) the component configs as JSON, the scheduler config, and the tokenizer's
text files. An SDXL model adds `text_encoder_2.` tensors, its config, `tokenizer_2_files` and
`force_zeros_for_empty_prompt`. `export_single_file` writes one from a diffusers folder.

Any other `.safetensors` (or, with `allow_pickle`, `.ckpt`) is taken as an original Stable
Diffusion checkpoint (SD 1.x, 2.x or SDXL) and loaded by diffusers' `from_single_file`,
offline: it needs a local diffusers config folder (`--model-config`) or the matching configs
already in the local Hugging Face cache.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from layoutedit.atomic import write_safetensors_atomic
from layoutedit.errors import UserError
from layoutedit.loading.families import forces_zero_empty_prompt, is_sdxl_folder

FORMAT_KEY = "layoutedit_format"
FORMAT = "single-file/1"
COMPONENTS = ("unet", "vae", "text_encoder")
SDXL_COMPONENTS = ("text_encoder_2",)


def export_single_file(model_dir: Path, file: Path) -> Path:
    """Write the diffusers folder `model_dir` as one safetensors file in our layout.

    Only `.safetensors` weights are read (no pickle). The file is written to a temporary
    name and renamed, so an interrupted export leaves nothing.
    """
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {FORMAT_KEY: FORMAT}
    sdxl = is_sdxl_folder(model_dir)
    for comp in (*COMPONENTS, *SDXL_COMPONENTS) if sdxl else COMPONENTS:
        weights = sorted(p for p in (model_dir / comp).glob("*.safetensors") if "." not in p.stem)
        if not weights:
            raise UserError(f"no .safetensors weights in {comp}/", path=model_dir)
        for weight in weights:
            for key, value in load_file(weight).items():
                tensors[f"{comp}.{key}"] = value.contiguous()
        metadata[f"{comp}_config"] = (model_dir / comp / "config.json").read_text()
    metadata["scheduler_config"] = (model_dir / "scheduler" / "scheduler_config.json").read_text()
    for tok in ("tokenizer", "tokenizer_2") if sdxl else ("tokenizer",):
        tok_files = {
            p.name: p.read_text(encoding="utf-8")
            for p in sorted((model_dir / tok).iterdir())
            if p.suffix in (".json", ".txt")
        }
        metadata[f"{tok}_files"] = json.dumps(tok_files)
    if sdxl:
        metadata["force_zeros_for_empty_prompt"] = json.dumps(forces_zero_empty_prompt(model_dir))
    return write_safetensors_atomic(file, tensors, metadata)


def _metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise UserError(f"not a readable safetensors file: {exc}", path=path) from None


def _load_ours(path: Path, meta: dict[str, str], dtype: torch.dtype) -> dict[str, Any]:
    state = load_file(str(path))
    sdxl = "text_encoder_2_config" in meta
    by_comp: dict[str, dict[str, torch.Tensor]] = {
        c: {} for c in ((*COMPONENTS, *SDXL_COMPONENTS) if sdxl else COMPONENTS)
    }
    for key, value in state.items():
        comp, _, rest = key.partition(".")
        if comp in by_comp:
            by_comp[comp][rest] = value
    unet = UNet2DConditionModel.from_config(json.loads(meta["unet_config"]))
    vae = AutoencoderKL.from_config(json.loads(meta["vae_config"]))
    text_cfg = json.loads(meta["text_encoder_config"])
    text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(text_cfg))
    modules: tuple[tuple[str, Any], ...] = (
        ("unet", unet),
        ("vae", vae),
        ("text_encoder", text_encoder),
    )
    parts: dict[str, Any] = {}
    if sdxl:
        config_2 = CLIPTextConfig.from_dict(json.loads(meta["text_encoder_2_config"]))
        parts["text_encoder_2"] = CLIPTextModelWithProjection(config_2)
        parts["zero_empty_prompt"] = bool(json.loads(meta["force_zeros_for_empty_prompt"]))
        modules += (("text_encoder_2", parts["text_encoder_2"]),)
    for comp, module in modules:
        missing, unexpected = module.load_state_dict(by_comp[comp], strict=False)
        # Buffers such as position_ids may or may not be saved; weights must all be there.
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise UserError(
                f"{comp} weights do not match its config "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})",
                path=path,
            )
        if dtype != torch.float32:
            module.to(dtype)
    for tok in ("tokenizer", "tokenizer_2") if sdxl else ("tokenizer",):
        with tempfile.TemporaryDirectory(prefix="layoutedit-tok-") as tmp:
            for name, text in json.loads(meta[f"{tok}_files"]).items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            parts[tok] = CLIPTokenizer.from_pretrained(tmp, local_files_only=True)
    return {
        **parts,
        "text_encoder": text_encoder,
        "vae": vae,
        "unet": unet,
        "scheduler_config": json.loads(meta["scheduler_config"]),
    }


class _LazyTensors(Mapping[str, torch.Tensor]):
    """A safetensors file as a read-only mapping that loads a tensor only when indexed."""

    def __init__(self, path: Path) -> None:
        self._file = safe_open(str(path), framework="pt")
        self._keys = list(self._file.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _cached_config(path: Path) -> Path:
    """The diffusers config folder of the checkpoint's architecture, from the local HF cache.

    diffusers would download it when it is missing; layoutedit never goes online, so the
    lookup happens here, offline, and a miss is a UserError that says what to pass.
    """
    from diffusers.loaders.single_file_utils import fetch_diffusers_config
    from huggingface_hub import snapshot_download

    repo = "the config of its architecture"
    try:
        if path.suffix.lower() != ".safetensors":
            raise ValueError("pickle checkpoints are not inspected")
        # Only a few keys and shapes decide the architecture: read just those.
        repo = fetch_diffusers_config(_LazyTensors(path))["pretrained_model_name_or_path"]
        patterns = ["**/*.json", "*.json", "*.txt", "**/*.txt"]
        return Path(snapshot_download(repo, local_files_only=True, allow_patterns=patterns))
    except Exception:  # unknown architecture, or not in the local cache
        raise UserError(
            f"no model config could be found offline (looked for {repo} in the local Hugging "
            "Face cache): pass --model-config DIR, a diffusers folder of the same "
            "architecture (its weights are not needed)",
            path=path,
        ) from None


def _load_original(path: Path, dtype: torch.dtype, model_config: Path | None) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if model_config is not None and not (model_config / "model_index.json").exists():
        raise UserError(
            "--model-config must be a diffusers folder with model_index.json", path=model_config
        )
    if model_config is None:
        model_config = _cached_config(path)
    sdxl = is_sdxl_folder(model_config)
    # SD 1.x / 2.x pipelines take safety-checker arguments; SDXL's has none.
    options = {} if sdxl else {"safety_checker": None, "requires_safety_checker": False}
    pipeline: Any = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    try:
        pipe = pipeline.from_single_file(
            str(path),
            config=str(model_config),
            local_files_only=True,
            torch_dtype=dtype,
            **options,
        )
    except Exception as exc:  # diffusers raises many types for a missing offline config
        hint = f"could not load it with the config in {model_config}"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{hint} ({first[:200]})", path=path) from None
    parts: dict[str, Any] = {
        "tokenizer": pipe.tokenizer,
        "text_encoder": pipe.text_encoder,
        "vae": pipe.vae,
        "unet": pipe.unet,
        "scheduler_config": dict(pipe.scheduler.config),
    }
    if sdxl:
        parts["tokenizer_2"] = pipe.tokenizer_2
        parts["text_encoder_2"] = pipe.text_encoder_2
        parts["zero_empty_prompt"] = forces_zero_empty_prompt(model_config)
    return parts


def load_single_file(
    path: Path, *, allow_pickle: bool, dtype: torch.dtype, model_config: Path | None
) -> tuple[dict[str, Any], dict[str, Path], dict[str, Any]]:
    """Load a single-file model.

    Returns:
        The components (tokenizer, text_encoder, vae, unet, scheduler_config; SDXL also
        tokenizer_2, text_encoder_2, zero_empty_prompt), the files
        the fingerprint covers (name -> path), and extra config for the fingerprint.
    """
    files = {path.name: path}
    if path.suffix.lower() == ".safetensors":
        meta = _metadata(path)
        if meta.get(FORMAT_KEY) == FORMAT:
            return _load_ours(path, meta, dtype), files, {"format": FORMAT}
    elif not allow_pickle:  # resolve_model_path refuses first; this guards direct callers
        raise UserError("pickle checkpoint refused; pass --allow-pickle to load it", path=path)
    if model_config is not None:
        for cfg in sorted(model_config.rglob("*.json")):
            files[f"config/{cfg.relative_to(model_config)}"] = cfg
    return _load_original(path, dtype, model_config), files, {"format": "original"}
