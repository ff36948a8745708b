"""Model architectures the planner knows: published configs (no weights) or a model folder.

`configs/sd15.json`, `sd21.json` and `sdxl.json` hold the published configuration values of
Stable Diffusion 1.5, 2.1 (768 px, v-prediction) and SDXL base 1.0: the UNet's, the VAE's,
each text encoder's (CLIP) and the scheduler's. A diffusers folder (`unet/config.json`, ...)
or `builtin:shapes-tiny` gives the same from its own files, so any model can be planned
before its weights are downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layoutedit.errors import UserError
from layoutedit.loading.families import family_of

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
KNOWN = ("sd15", "sd21", "sdxl")
FAMILIES = {
    "sd1": "Stable Diffusion 1.x (epsilon)",
    "sd2": "Stable Diffusion 2.x (v-prediction or epsilon)",
    "sdxl": "Stable Diffusion XL (two text encoders)",
}


@dataclass(frozen=True)
class ArchSpec:
    """Configs of every component of one model.

    Attributes:
        name: what the user passed (`sd15`, a path, ...).
        family: `sd1`, `sd2` or `sdxl`.
        unet, vae: diffusers configs.
        text_encoders: one CLIP text config per encoder (two for SDXL).
        scheduler: the scheduler config (noise schedule, `prediction_type`).
    """

    name: str
    family: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoders: tuple[dict[str, Any], ...]
    scheduler: dict[str, Any]

    @property
    def latent_size(self) -> int:
        """Side of the latent grid at the model's native size."""
        size = self.unet.get("sample_size", 64)
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def vae_factor(self) -> int:
        """Image pixels per latent pixel (8 for Stable Diffusion)."""
        return int(2 ** (len(self.vae.get("block_out_channels", [0] * 4)) - 1))

    @property
    def image_size(self) -> int:
        """Native image side in pixels."""
        return self.latent_size * self.vae_factor

    @property
    def max_length(self) -> int:
        """Text tokens read by the (first) text encoder."""
        return int(self.text_encoders[0].get("max_position_embeddings", 77))

    @property
    def prediction_type(self) -> str:
        """`epsilon` or `v_prediction`."""
        return str(self.scheduler.get("prediction_type", "epsilon"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UserError("missing config file", path=path) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read config: {exc}", path=path) from None


def _from_folder(name: str, folder: Path) -> ArchSpec:
    encoders = [_read_json(folder / "text_encoder" / "config.json")]
    if (folder / "text_encoder_2" / "config.json").exists():
        encoders.append(_read_json(folder / "text_encoder_2" / "config.json"))
    unet = _read_json(folder / "unet" / "config.json")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    prediction = str(scheduler.get("prediction_type", "epsilon"))
    return ArchSpec(
        name=name,
        family=family_of(unet, len(encoders), prediction),
        unet=unet,
        vae=_read_json(folder / "vae" / "config.json"),
        text_encoders=tuple(encoders),
        scheduler=scheduler,
    )


def load_arch(spec: str) -> ArchSpec:
    """The architecture `spec` names.

    Args:
        spec: `sd15`, `sd21`, `sdxl`, `builtin:NAME`, a diffusers folder, or a JSON file in
            the format of `configs/*.json`.

    Raises:
        UserError: nothing of that name, or its configs cannot be read.
    """
    if spec in KNOWN:
        return _from_json(spec, CONFIG_DIR / f"{spec}.json")
    if spec.startswith("builtin:"):
        from layoutedit.loading.model_loading import resolve_model_path

        return _from_folder(spec, resolve_model_path(spec))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "unet" / "config.json").exists():
            raise UserError("not a diffusers model folder (no unet/config.json)", path=path)
        return _from_folder(spec, path)
    if path.suffix == ".json" and path.exists():
        return _from_json(spec, path)
    raise UserError(
        f"unknown architecture {spec!r}: give {', '.join(KNOWN)}, builtin:shapes-tiny, a "
        "diffusers folder or a JSON file like layoutedit/planning/configs/sd15.json"
    )


def _from_json(name: str, path: Path) -> ArchSpec:
    data = _read_json(path)
    try:
        encoders = tuple(dict(e) for e in data["text_encoders"])
        unet, scheduler = dict(data["unet"]), dict(data["scheduler"])
        prediction = str(scheduler.get("prediction_type", "epsilon"))
        return ArchSpec(
            name=name,
            family=str(data.get("family") or family_of(unet, len(encoders), prediction)),
            unet=unet,
            vae=dict(data["vae"]),
            text_encoders=encoders,
            scheduler=scheduler,
        )
    except (KeyError, TypeError) as exc:
        raise UserError(f"architecture file lacks {exc}", path=path) from None


SUPPORTED_FAMILIES = (
    "Model families: Stable Diffusion 1.x and 2.x (epsilon or v-prediction, e.g. SD 1.5, "
    "SD 2.1 at 768 px), SDXL base (both text encoders learn the placeholders; pooled "
    "embeddings and time ids are passed to its UNet) and the embedded shapes-tiny."
)
"""What learning and editing support, for `learn --help` and `inspect --help`."""
