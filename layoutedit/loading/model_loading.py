"""Loading the base model named by `--model`, and the few things the method reads from it.

`--model` may be:
- `builtin:NAME` - a model shipped in the package (`layoutedit/models/NAME`);
- a local diffusers folder in the Stable Diffusion layout (`model_index.json`, `unet/`, ...),
  SDXL's too (`text_encoder_2/`, `tokenizer_2/`);
- a Hugging Face repo id, read from the local Hugging Face cache only (never downloaded);
- a single `.safetensors` file: our own single-file layout (`export_single_file`) or an
  original Stable Diffusion checkpoint with a diffusers config folder (`model_config`).

Pickle files (`.ckpt`, `.bin`, `.pt`, `.pth`) can run code when loaded, so they are refused
unless `allow_pickle=True`. Head counts, token length and latent size are read from the
loaded model, never assumed. The family (`sd1`, `sd2`, `sdxl`) decides how prompts become
UNet inputs (`layoutedit.loading.conditioning`); nothing else asks for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from layoutedit.errors import UserError
from layoutedit.loading.completer import COMPLETER_FOLDER, load_completer
from layoutedit.loading.conditioning import (
    ClipPromptEncoder,
    PromptEncoder,
    SdxlPromptEncoder,
    TextConditioning,
)
from layoutedit.loading.corrector import CORRECTOR_FOLDER, load_corrector
from layoutedit.loading.families import family_of, forces_zero_empty_prompt, is_sdxl_folder
from layoutedit.loading.fingerprint import model_fingerprint
from layoutedit.loading.unet_grids import cross_attention_sides
from layoutedit.precision import cast_weights, check_finite, force_upcast, no_autocast

BUILTIN_PREFIX = "builtin:"
BUILTIN_ROOT = Path(__file__).resolve().parent.parent / "models"
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
COMPONENTS = ("unet", "vae", "text_encoder")
SDXL_COMPONENTS = ("text_encoder_2",)  # besides COMPONENTS, with `tokenizer_2/`
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class CrossAttentionLayer:
    """One cross-attention layer of the UNet, as read from the model."""

    name: str  # module name, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    heads: int
    query_side: int  # side of the square query grid at the model's latent size

    @property
    def processor_name(self) -> str:
        """Key of this layer in `unet.attn_processors` / `unet.set_attn_processor`."""
        return f"{self.name}.processor"


REFINER_FOLDER = "refiner"
"""Subfolder of a model folder holding its refiner UNet, if any (`editing.refine`; diffusers
layout, safetensors)."""


@dataclass
class LoadedModel:
    """A Stable-Diffusion-layout model ready for the method.

    Components keep their Hugging Face types; the properties read every shape the method
    needs from them. SDXL models also have `tokenizer_2` / `text_encoder_2`.
    """

    spec: str
    path: Path
    # Components are typed Any because diffusers' models do not type-check as nn.Modules
    # under mypy; the comments name the real classes.
    tokenizer: Any  # CLIPTokenizer
    text_encoder: Any  # CLIPTextModel
    vae: Any  # AutoencoderKL
    unet: Any  # UNet2DConditionModel
    scheduler_config: dict[str, Any]
    fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)
    tokenizer_2: Any = None  # CLIPTokenizer (SDXL only)
    text_encoder_2: Any = None  # CLIPTextModelWithProjection (SDXL only)
    zero_empty_prompt: bool = True
    """SDXL: the unconditional input is zeros (`force_zeros_for_empty_prompt`)."""
    refiner: Any = None  # UNet2DConditionModel with more input channels (`editing.refine`)
    """The model folder's `refiner/` UNet, None when it has none (every Stable Diffusion
    model and both embedded ones; `make refiner` builds one for `shapes-tiny-v2`)."""
    corrector: Any = None  # loading.corrector.Corrector (`editing.correct`), float32
    """The model folder's `corrector/` net, None when it has none."""
    completer: Any = None  # loading.completer.Completer (`editing.complete`), float32
    """The model folder's `completer/` net, None when it has none."""

    @property
    def family(self) -> str:
        """`sdxl` (two text encoders), `sd2` (1024-wide text or v-prediction) or `sd1`."""
        return family_of(dict(self.unet.config), len(self.text_encoders), self.prediction_type)

    @property
    def text_encoders(self) -> tuple[Any, ...]:
        """Every text encoder, first one first (two for SDXL)."""
        if self.text_encoder_2 is None:
            return (self.text_encoder,)
        return (self.text_encoder, self.text_encoder_2)

    @property
    def tokenizers(self) -> tuple[Any, ...]:
        """The tokenizer of each text encoder, in `text_encoders` order."""
        if self.text_encoder_2 is None:
            return (self.tokenizer,)
        return (self.tokenizer, self.tokenizer_2)

    @property
    def modules(self) -> tuple[Any, ...]:
        """Every weight-holding component: UNet, VAE, the text encoders, the refiner, the
        corrector and the completer."""
        extra = tuple(m for m in (self.refiner, self.corrector, self.completer) if m is not None)
        return (self.unet, self.vae, *self.text_encoders, *extra)

    @property
    def prompt_encoder(self) -> PromptEncoder:
        """How this model's family turns prompts into UNet inputs."""
        if self.text_encoder_2 is None:
            return ClipPromptEncoder(self.tokenizer, self.text_encoder, self.max_length)
        return SdxlPromptEncoder(
            (self.tokenizer, self.tokenizer_2),
            (self.text_encoder, self.text_encoder_2),
            self.max_length,
            self.image_size,
            self.zero_empty_prompt,
        )

    @property
    def device(self) -> torch.device:
        """Device of the UNet's weights."""
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the UNet's weights."""
        return next(self.unet.parameters()).dtype

    @property
    def latent_size(self) -> int:
        """Side of the square latent grid the UNet was trained at (64 for SD 1.x)."""
        size = self.unet.config.sample_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def latent_channels(self) -> int:
        """Channels of a latent (4 for SD 1.x)."""
        return int(self.unet.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel along a side (8 for SD 1.x, 4 for shapes-tiny)."""
        return int(2 ** (len(self.vae.config.block_out_channels) - 1))

    @property
    def image_size(self) -> int:
        """Side of the square image the model works at, in pixels."""
        return self.latent_size * self.vae_scale_factor

    @property
    def scaling_factor(self) -> float:
        """VAE latent scaling factor (0.18215 for SD 1.x)."""
        return float(self.vae.config.scaling_factor)

    @property
    def max_length(self) -> int:
        """Tokens the text encoders read: the smallest of the tokenizers' and the encoders'."""
        limits = []
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            positions = int(encoder.config.max_position_embeddings)
            limits += [
                positions,
                int(getattr(tokenizer, "model_max_length", positions) or positions),
            ]
        return min(limits)

    @property
    def prediction_type(self) -> str:
        """What the UNet predicts: `epsilon`, `v_prediction` or `sample`."""
        return str(self.scheduler_config.get("prediction_type", "epsilon"))

    @property
    def cross_attention_layers(self) -> list[CrossAttentionLayer]:
        """Every cross-attention (`attn2`) layer with its head count and query-grid side."""
        from diffusers.models.attention_processor import Attention

        sides = cross_attention_sides(self.unet, self.latent_size)
        return [
            CrossAttentionLayer(name, int(module.heads), sides[f"{name}.processor"])
            for name, module in self.unet.named_modules()
            if isinstance(module, Attention) and name.endswith("attn2")
        ]

    @property
    def attention_heads(self) -> dict[str, int]:
        """Cross-attention layer name -> number of heads."""
        return {layer.name: layer.heads for layer in self.cross_attention_layers}

    def token_ids(self, prompts: list[str]) -> torch.Tensor:
        """(B, L) int64 token ids, padded/truncated to `max_length`, on the model's device."""
        batch = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )
        return batch.input_ids.to(self.text_encoder.device)

    def encode_text(self, prompts: list[str]) -> TextConditioning:
        """Everything the UNet reads of the prompts (`TextConditioning`; L = `max_length`).

        Runs with gradients enabled when the caller has them on (textual inversion needs
        them); wrap in `torch.no_grad()` for inference. Call the UNet with
        `unet(z, t, **cond.unet_kwargs())`.
        """
        return self.prompt_encoder.encode(prompts)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """The (B, L, D) embeddings cross-attention reads (SDXL: both encoders' side by side;
        its UNet needs `encode_text`'s pooled embeddings and time ids as well)."""
        return self.encode_text(prompts).embeddings

    def image_to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 square image -> (1, 3, S, S) in [-1, 1], S = `image_size`."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
        if image.shape[0] != image.shape[1]:
            raise ValueError("image is not square: pad it with grids.square_pad first")
        if image.shape[0] != self.image_size:
            # Resizing keeps the content; the model only works at its native size.
            pil = Image.fromarray(image).resize((self.image_size,) * 2, Image.Resampling.LANCZOS)
            image = np.asarray(pil)
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None]
        return tensor.to(device=self.vae.device, dtype=self.vae.dtype) / 127.5 - 1.0

    @torch.no_grad()
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 square image -> scaled latent (1, C, h, w), h = w = `latent_size`.

        Uses the mean of the VAE posterior (deterministic), times the scaling factor.
        """
        # The VAE runs in its own dtype (fp32 when its config forces it), never autocast.
        with no_autocast(self.vae.device):
            posterior = self.vae.encode(self.image_to_tensor(image)).latent_dist
        return check_finite(posterior.mean * self.scaling_factor, "source latent", self.vae.dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Scaled latents (B, C, h, w) -> images (B, H, W, 3) uint8, H = W = `image_size`."""
        check_finite(latents, "latent to decode", self.dtype)
        latents = latents.to(device=self.vae.device, dtype=self.vae.dtype) / self.scaling_factor
        with no_autocast(self.vae.device):
            images = self.vae.decode(latents).sample  # (B, 3, H, W) in about [-1, 1]
        # A NaN would clamp to NaN and round to 0: a black image instead of an error.
        check_finite(images, "decoded image", self.vae.dtype)
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).cpu().numpy()


def _refuse_pickle(path: Path, allow_pickle: bool) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise UserError(
            "pickle checkpoints can run arbitrary code when loaded and are refused; convert it "
            "to .safetensors, or pass --allow-pickle if you trust the file",
            path=path,
        )


def _hf_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    # Read the cache location now (not at import) so HF_HUB_CACHE / HF_HOME set later count.
    cache = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None
    )
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        where = cache or "the default Hugging Face cache (~/.cache/huggingface/hub)"
        raise UserError(
            f"model {repo_id!r} is not in {where} and layoutedit never downloads; on a "
            f"connected machine run `huggingface-cli download {repo_id}` and copy its "
            "Hugging Face cache here (or set HF_HUB_CACHE), or pass a local folder to --model"
        ) from None


def resolve_model_path(spec: str, *, allow_pickle: bool = False) -> Path:
    """The local folder or file that `spec` names (no loading).

    Raises:
        UserError: nothing found, a builtin model not built, or a refused pickle file.
    """
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX) :]
        folder = BUILTIN_ROOT / name
        if not (folder / "model_index.json").exists():
            raise UserError(
                f"embedded model not built: {spec} has no files in {folder}; run `make model`, "
                "or pass another model with --model"
            )
        return folder
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            _refuse_pickle(path, allow_pickle)
            if path.suffix.lower() != ".safetensors" and path.suffix.lower() not in PICKLE_SUFFIXES:
                raise UserError(
                    "not a model file: expected a diffusers folder or a .safetensors file",
                    path=path,
                )
        elif not (path / "unet").is_dir():
            raise UserError(
                "not a diffusers model folder (no unet/ subfolder; Stable Diffusion layout "
                "expected: model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)",
                path=path,
            )
        return path
    if _REPO_ID.match(spec) and not spec.startswith((".", "~")):
        return _hf_snapshot(spec)
    raise UserError(
        "model not found: give a diffusers folder, a .safetensors file, a Hugging Face repo id "
        "in the local cache, or builtin:shapes-tiny",
        path=path,
    )


def _weight_files(folder: Path, allow_pickle: bool) -> list[Path]:
    """The weight files diffusers/transformers will load from a component folder."""
    plain = sorted(p for p in folder.glob("*.safetensors") if "." not in p.stem)
    if plain:
        return plain
    pickled = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        _refuse_pickle(pickled[0], allow_pickle)
        return pickled
    raise UserError("no weight files (.safetensors) in this model component", path=folder)


def _load_folder(
    folder: Path, *, allow_pickle: bool, dtype: torch.dtype
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Load the components of a diffusers folder; return them and the files they came from.

    Weights are read straight into `dtype` (never fp32 first, then cast: on a GPU that
    moment needed twice the memory), then moved to the device by `load_model`; the VAE in
    fp32 when its config says `force_upcast` (`layoutedit.precision`). No `device_map`:
    transformers needs a newer accelerate for it than the oldest one supported."""
    sdxl = is_sdxl_folder(folder)
    components = (*COMPONENTS, *SDXL_COMPONENTS) if sdxl else COMPONENTS
    tokenizers = ("tokenizer", "tokenizer_2") if sdxl else ("tokenizer",)
    if sdxl and not (folder / "text_encoder" / "config.json").exists():
        raise UserError(
            "SDXL refiner models (one text encoder, aesthetic-score time ids) are not "
            "supported; use an SDXL base model",
            path=folder,
        )
    files: dict[str, Path] = {}
    for comp in components:
        if not (folder / comp / "config.json").exists():
            raise UserError(f"model folder has no {comp}/config.json", path=folder)
        for weight in _weight_files(folder / comp, allow_pickle):
            files[f"{comp}/{weight.name}"] = weight
    for sub in (*tokenizers, "scheduler", *components):
        for cfg in sorted((folder / sub).glob("*.json")) + sorted((folder / sub).glob("*.txt")):
            files[f"{sub}/{cfg.name}"] = cfg
    safe = not allow_pickle or any(k.endswith(".safetensors") for k in files)
    try:
        vae_config = AutoencoderKL.load_config(folder / "vae", local_files_only=True)
        vae_dtype = torch.float32 if vae_config.get("force_upcast", True) else dtype
        parts: dict[str, Any] = {
            "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
            "text_encoder": CLIPTextModel.from_pretrained(
                folder / "text_encoder",
                local_files_only=True,
                use_safetensors=safe,
                dtype=dtype,
            ),
            "vae": AutoencoderKL.from_pretrained(
                folder / "vae",
                local_files_only=True,
                use_safetensors=safe,
                torch_dtype=vae_dtype,
            ),
            "unet": UNet2DConditionModel.from_pretrained(
                folder / "unet",
                local_files_only=True,
                use_safetensors=safe,
                torch_dtype=dtype,
            ),
        }
        if sdxl:
            parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(
                folder / "tokenizer_2", local_files_only=True
            )
            parts["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
                folder / "text_encoder_2",
                local_files_only=True,
                use_safetensors=safe,
                dtype=dtype,
            )
            parts["zero_empty_prompt"] = forces_zero_empty_prompt(folder)
    except (OSError, ValueError) as exc:
        raise UserError(f"could not load the model: {exc}".splitlines()[0], path=folder) from None
    parts["scheduler_config"] = _scheduler_config(folder / "scheduler")
    parts["refiner"] = _load_refiner(folder / REFINER_FOLDER, allow_pickle, dtype)
    parts["corrector"] = _load_extra(folder / CORRECTOR_FOLDER, load_corrector, "corrector")
    parts["completer"] = _load_extra(folder / COMPLETER_FOLDER, load_completer, "completer")
    return parts, files


def _load_refiner(folder: Path, allow_pickle: bool, dtype: torch.dtype) -> Any:
    """The refiner UNet of a model folder (`editing.refine`), None when there is none.

    Not part of the model's fingerprint: concepts and inversions never run it, so adding
    or retraining a refiner keeps them valid."""
    if not (folder / "config.json").exists():
        return None
    weights = _weight_files(folder, allow_pickle)
    safe = not allow_pickle or any(w.suffix == ".safetensors" for w in weights)
    try:
        return UNet2DConditionModel.from_pretrained(
            folder, local_files_only=True, use_safetensors=safe, torch_dtype=dtype
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"could not load the refiner: {exc}".splitlines()[0], path=folder) from None


def _load_extra(folder: Path, load: Callable[[Path], Any], what: str) -> Any:
    """The `what` net of a model folder's subfolder `folder` (`load(folder)`: the corrector,
    `editing.correct`; the completer, `editing.complete`), None when there is none. Outside
    the fingerprint, as the refiner."""
    if not folder.exists():
        return None
    try:
        return load(folder)
    except ValueError as exc:
        raise UserError(f"could not load the {what}: {exc}", path=folder) from None


def _scheduler_config(folder: Path) -> dict[str, Any]:
    import json

    path = folder / "scheduler_config.json"
    if not path.exists():
        raise UserError("model folder has no scheduler/scheduler_config.json", path=folder.parent)
    return dict(json.loads(path.read_text()))


def load_model(
    spec: str,
    *,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: Path | None = None,
    model_config: Path | None = None,
) -> LoadedModel:
    """Load the model `spec` names (see the module docstring for the forms), offline.

    Args:
        spec: what the user passed as `--model`.
        allow_pickle: accept pickle checkpoints (`.ckpt`, `.bin`, ...): they can run code.
        device: where the components go (read in `dtype` on the CPU, then moved: the device
            never holds a copy in another dtype).
        dtype: weight dtype of the phase that runs next (`layoutedit.precision`): fp32 for
            training, fp16/bf16 for inference on a GPU; the VAE is fp32 when its config
            says `force_upcast`.
        cache_dir: where the memo of weight-file hashes lives (default: layoutedit's cache).
        model_config: diffusers config folder for an original SD single-file checkpoint.

    Returns:
        The model in eval mode with gradients off on every weight.

    Raises:
        UserError: the model cannot be found or loaded.
    """
    path = resolve_model_path(spec, allow_pickle=allow_pickle)
    if path.is_file():
        from layoutedit.loading.single_file import load_single_file

        parts, files, config = load_single_file(
            path, allow_pickle=allow_pickle, dtype=dtype, model_config=model_config
        )
    else:
        parts, files = _load_folder(path, allow_pickle=allow_pickle, dtype=dtype)
        config = {}
    if parts.get("text_encoder_2") is not None:
        # SD 1.x / 2.x fingerprints stay as they were; SDXL's name the family, so a concept
        # or cache entry of one family can never be taken for the other's.
        config = {**config, "family": "sdxl"}
    fingerprint = model_fingerprint(files, config, cache_dir)
    model = LoadedModel(
        spec=spec,
        path=path,
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        vae=parts["vae"],
        unet=parts["unet"],
        scheduler_config=parts["scheduler_config"],
        fingerprint=fingerprint,
        tokenizer_2=parts.get("tokenizer_2"),
        text_encoder_2=parts.get("text_encoder_2"),
        zero_empty_prompt=bool(parts.get("zero_empty_prompt", True)),
        refiner=parts.get("refiner"),
        corrector=parts.get("corrector"),
        completer=parts.get("completer"),
    )
    if model.family == "sdxl" and model.text_encoder_2 is None:
        raise UserError(
            "this UNet takes SDXL's pooled text embeddings and time ids, but the model has "
            "no second text encoder (text_encoder_2/)",
            path=path,
        )
    if path.is_file():  # a single file is read on the CPU: the VAE follows force_upcast here
        cast_weights(model.vae, torch.float32 if force_upcast(model.vae) else dtype)
    for module in model.modules:
        module.requires_grad_(False)
        module.eval()
        module.to(device)
    return model
