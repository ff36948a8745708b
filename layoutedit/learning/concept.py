"""A learned concept: what Stage 1 produces and Stage 2 applies to the base model.

A concept is the learned embedding row of each placeholder token and of the two extra tokens,
the fine-tuned cross-attention key/value weights of the UNet, the scene prompt and its
metadata. On disk it is a folder with `concept.safetensors` (tensors `embeddings/<token>`,
on SDXL also `embeddings_2/<token>` for its second text encoder, and `kv/<unet state-dict
key>`) and `concept.json` (everything else), written atomically.
`export_diffusers` writes the same weights in the forms diffusers loads directly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from layoutedit.atomic import atomic_folder
from layoutedit.errors import UserError
from layoutedit.learning.tokens import check_placeholders, set_rows

if TYPE_CHECKING:
    from layoutedit.loading.model_loading import LoadedModel

CONCEPT_FORMAT = 1
TENSORS_FILE = "concept.safetensors"
META_FILE = "concept.json"
EMB_PREFIX = "embeddings/"
EMB2_PREFIX = "embeddings_2/"
KV_PREFIX = "kv/"
CUSTOM_DIFFUSION_FILE = "pytorch_custom_diffusion_weights.safetensors"


@dataclass
class Concept:
    """Learned tokens and K/V weights for one scene on one base model.

    Attributes:
        tokens: object placeholders in object order, e.g. ("<cat>", "<pot>", "<plant>").
        extra_tokens: the two fine-tuned extra tokens, ("<new0>", "<new1>").
        embeddings: token -> (D,) fp32 learned row (object and extra tokens).
        kv_weights: UNet state-dict key (`...attn2.to_k.weight` / `...attn2.to_v.weight`) ->
            fine-tuned weight (out, in), fp32.
        prompt: scene prompt with every placeholder and the extra tokens.
        meta: names, model fingerprint and family, learn config, UNet evaluations, timings,
            positions.
        embeddings_2: token -> (D2,) fp32 row of the second text encoder (SDXL); empty for
            a model with one text encoder.
    """

    tokens: tuple[str, ...]
    extra_tokens: tuple[str, ...]
    embeddings: dict[str, torch.Tensor]
    kv_weights: dict[str, torch.Tensor]
    prompt: str
    meta: dict[str, Any] = field(default_factory=dict)
    embeddings_2: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def all_tokens(self) -> tuple[str, ...]:
        """Object placeholders then the extra tokens."""
        return (*self.tokens, *self.extra_tokens)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor under its file key (`embeddings/<token>`, `embeddings_2/<token>`,
        `kv/<key>`), contiguous."""
        out = {f"{EMB_PREFIX}{t}": v.contiguous() for t, v in self.embeddings.items()}
        out.update({f"{EMB2_PREFIX}{t}": v.contiguous() for t, v in self.embeddings_2.items()})
        out.update({f"{KV_PREFIX}{k}": v.contiguous() for k, v in self.kv_weights.items()})
        return out

    def header(self) -> dict[str, Any]:
        """The JSON part (everything except tensors)."""
        return {
            "format": CONCEPT_FORMAT,
            "tokens": list(self.tokens),
            "extra_tokens": list(self.extra_tokens),
            "prompt": self.prompt,
            "meta": self.meta,
        }

    def save(self, folder: Path) -> None:
        """Write `concept.safetensors` + `concept.json` into `folder`, atomically.

        Files are written into a temporary sibling folder that is then renamed, so an
        interrupted save leaves either the old folder or the new one, never a mix.
        """
        with atomic_folder(folder) as tmp:
            save_file(self.tensors(), str(tmp / TENSORS_FILE), metadata={"format": "pt"})
            text = json.dumps(self.header(), indent=2, sort_keys=True, default=str)
            (tmp / META_FILE).write_text(text)

    @classmethod
    def from_parts(cls, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Concept:
        """Build a concept from `header()` and `tensors()` output (e.g. from the cache)."""
        if header.get("format") != CONCEPT_FORMAT:
            raise UserError(f"unsupported concept format {header.get('format')!r}")
        embeddings = {
            k[len(EMB_PREFIX) :]: v for k, v in tensors.items() if k.startswith(EMB_PREFIX)
        }
        second = {k[len(EMB2_PREFIX) :]: v for k, v in tensors.items() if k.startswith(EMB2_PREFIX)}
        kv = {k[len(KV_PREFIX) :]: v for k, v in tensors.items() if k.startswith(KV_PREFIX)}
        concept = cls(
            tokens=tuple(header["tokens"]),
            extra_tokens=tuple(header["extra_tokens"]),
            embeddings=embeddings,
            kv_weights=kv,
            prompt=str(header["prompt"]),
            meta=dict(header.get("meta", {})),
            embeddings_2=second,
        )
        missing = [t for t in concept.all_tokens if t not in embeddings]
        if second:
            missing += [f"{t} (second text encoder)" for t in concept.all_tokens if t not in second]
        if missing:
            raise UserError(f"concept has no embedding for {', '.join(missing)}")
        return concept

    @classmethod
    def load(cls, folder: Path) -> Concept:
        """Read a concept folder written by `save`.

        Raises:
            UserError: the folder or a file is missing or damaged.
        """
        folder = Path(folder)
        if folder.is_file():
            raise UserError(
                "is a file: give the concept folder that `learn --out` writes (OUT/concept)",
                path=folder,
            )
        try:
            header = json.loads((folder / META_FILE).read_text())
            tensors = load_file(str(folder / TENSORS_FILE))
        except FileNotFoundError as exc:
            raise UserError(
                f"not a concept folder ({Path(str(exc.filename)).name} missing)", path=folder
            ) from None
        except (ValueError, OSError, SafetensorError) as exc:
            raise UserError(f"damaged concept: {exc}", path=folder) from None
        return cls.from_parts(header, tensors)


def apply_concept(model: LoadedModel, concept: Concept) -> None:
    """Apply a concept to a model in place: add its tokens, set their rows, load K/V weights.

    Applying the same concept twice is harmless (rows and weights are overwritten).

    Raises:
        UserError: the concept was learned on another base model, or on a model of another
            family (rows for one text encoder while the model has two, or the reverse).
    """
    learned_on = concept.meta.get("model_fingerprint")
    if learned_on and learned_on != model.fingerprint:
        raise UserError(
            f"this concept was learned on another base model (fingerprint {learned_on[:12]}, "
            f"this model {model.fingerprint[:12]}); learn it again with this --model"
        )
    family = concept.meta.get("family")
    encoders = len(model.text_encoders)
    if (family and family != model.family) or (encoders > 1) != bool(concept.embeddings_2):
        learned = family or ("sdxl" if concept.embeddings_2 else "a one-text-encoder model")
        raise UserError(
            f"this concept was learned on {learned}, this model is {model.family}; "
            "learn it again with this --model"
        )
    check_placeholders(model, concept.all_tokens)  # a crafted concept cannot retrain <|endoftext|>
    rows = [concept.embeddings, concept.embeddings_2][:encoders]
    for encoder, table in enumerate(rows):
        set_rows(model, {t: table[t] for t in concept.all_tokens}, encoder)
    params = dict(model.unet.named_parameters())
    with torch.no_grad():
        for key, value in concept.kv_weights.items():
            if key not in params or params[key].shape != value.shape:
                raise UserError(f"concept weight {key} does not fit this model's UNet")
            params[key].copy_(value.to(device=params[key].device, dtype=params[key].dtype))


def _token_file_name(token: str) -> str:
    """`learned_embeds-<core>.safetensors`, one file name per token: letters, digits, `-` and
    `_` are kept; when anything else had to become `_` (`<a.b>` and `<a,b>`, emoji), the
    token's SHA-256 prefix is appended, so two tokens never share a file."""
    core = token[1:-1] if token.startswith("<") and token.endswith(">") else token
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in core)
    if safe != core or not safe:
        safe += "-" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]
    return f"learned_embeds-{safe}.safetensors"


def _token_files(tokens: Sequence[str]) -> dict[str, str]:
    """token -> file name; UserError naming both tokens if two would share a file (also on
    a case-insensitive file system)."""
    files: dict[str, str] = {}
    seen: dict[str, str] = {}
    for token in tokens:
        name = _token_file_name(token)
        other = seen.get(name.casefold())
        if other is not None:
            raise UserError(
                f"tokens {other} and {token} would be exported to the same file {name}; "
                "rename one of the objects"
            )
        seen[name.casefold()] = token
        files[token] = name
    return files


def export_diffusers(concept: Concept, folder: Path, unet_processor_names: list[str]) -> Path:
    """Write the concept in forms diffusers loads directly.

    - one textual-inversion file per token, `{token: (D,) tensor}` (diffusers' own format):
      `pipe.load_textual_inversion(folder / "learned_embeds-cat.safetensors")`; for SDXL
      `{"clip_l": (1, D1), "clip_g": (1, D2)}`, the SDXL embedding format, loaded per encoder:
      `pipe.load_textual_inversion(sd["clip_g"], token="<cat>", text_encoder=
      pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)` and the same with `clip_l`;
    - `pytorch_custom_diffusion_weights.safetensors` with the K/V weights under Custom
      Diffusion processor names (`<layer>.processor.to_k_custom_diffusion.weight`), plus an
      empty entry for every other attention layer, which is how diffusers' loader knows the
      whole processor set: `pipe.unet.load_attn_procs(folder, weight_name=
      "pytorch_custom_diffusion_weights.safetensors", _pipeline=pipe)` (diffusers 0.42 only
      installs the processors when it is given the pipeline);
    - `unet_kv.safetensors`: the same weights as a partial UNet state dict, for
      `pipe.unet.load_state_dict(safetensors.torch.load_file(path), strict=False)`.

    Args:
        concept: the concept to export.
        folder: output folder (replaced atomically).
        unet_processor_names: `list(unet.attn_processors)` of the base model.
    """
    folder = Path(folder)
    files = _token_files(concept.all_tokens)
    with atomic_folder(folder) as tmp:
        for token in concept.all_tokens:
            row = concept.embeddings[token].float().contiguous()
            rows = {token: row}
            if concept.embeddings_2:
                second = concept.embeddings_2[token].float().contiguous()
                rows = {"clip_l": row[None], "clip_g": second[None]}
            save_file(rows, str(tmp / files[token]), metadata={"format": "pt"})
        cd: dict[str, torch.Tensor] = {}
        for name in unet_processor_names:
            layer = name.removesuffix(".processor")
            k, v = f"{layer}.to_k.weight", f"{layer}.to_v.weight"
            if k in concept.kv_weights and v in concept.kv_weights:
                cd[f"{name}.to_k_custom_diffusion.weight"] = concept.kv_weights[k].contiguous()
                cd[f"{name}.to_v_custom_diffusion.weight"] = concept.kv_weights[v].contiguous()
            else:
                cd[name] = torch.zeros(0)  # "no custom processor here" for diffusers' loader
        save_file(cd, str(tmp / CUSTOM_DIFFUSION_FILE), metadata={"format": "pt"})
        kv = {k: v.contiguous() for k, v in concept.kv_weights.items()}
        save_file(kv, str(tmp / "unet_kv.safetensors"), metadata={"format": "pt"})
        (tmp / "prompt.txt").write_text(concept.prompt + "\n")
    return folder
