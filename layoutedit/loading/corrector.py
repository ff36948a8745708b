"""The corrector network (`editing.correct`): its architecture, and saving and loading it.

A model folder may ship it as `corrector/`: `corrector.safetensors` and `CORRECTOR.json`
(the widths, the steps and pairs it learned from). It lives with the loader because the
loader builds it; what it does in an edit is `editing.correct`'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CORRECTOR_FOLDER = "corrector"
"""Subfolder of a model folder holding its corrector, if any. Not part of the model's
fingerprint: concepts and inversions never run it."""

CORRECTOR_WIDTHS = (16, 32, 64, 128, 128)
"""Channels at each scale, full resolution first; each further scale halves the side."""

GUIDE_MASKS = ("zone", "objects", "hidden", "shadows")
"""The masks the corrector reads beside the image, in order (`editing.correct.guide_masks`)."""

CORRECTOR_WEIGHTS = "corrector.safetensors"
CORRECTOR_INFO = "CORRECTOR.json"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
    )


class Corrector(nn.Module):
    """U-shaped net: (B, 3, H, W) image in [-1, 1] and (B, 4, H, W) `GUIDE_MASKS` 0/1 ->
    (B, 3, H, W) change in [-1, 1] units, zero outside the zone (the first mask). H and W
    divisible by 2^(len(widths) - 1)."""

    def __init__(self, widths: Sequence[int] = CORRECTOR_WIDTHS) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        w = self.widths
        self.down = nn.ModuleList()
        cin = 3 + len(GUIDE_MASKS)
        for i, cout in enumerate(w):
            self.down.append(_block(cin, cout))
            cin = cout
            if i + 1 < len(w):
                self.down.append(nn.Conv2d(cout, cout, 3, stride=2, padding=1))
        self.up = nn.ModuleList()
        for i in range(len(w) - 1, 0, -1):
            self.up.append(nn.Conv2d(w[i], w[i - 1], 3, padding=1))
            self.up.append(_block(2 * w[i - 1], w[i - 1]))
        self.out = nn.Conv2d(w[0], 3, 3, padding=1)
        # Zero at the start of training: the corrector begins as "the image is right".
        nn.init.zeros_(self.out.weight)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image, masks], dim=1)
        skips = []
        for i, layer in enumerate(self.down):
            x = layer(x)
            if i % 2 == 0 and i + 1 < len(self.down):
                skips.append(x)
        for i in range(0, len(self.up), 2):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.up[i](x)
            x = self.up[i + 1](torch.cat([x, skips.pop()], dim=1))
        return self.out(x) * masks[:, :1]


def to_unit(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def save_corrector(net: Corrector, folder: Path, info: dict[str, object]) -> None:
    """`folder/corrector.safetensors` and `folder/CORRECTOR.json` (the widths and `info`)."""
    from layoutedit.atomic import write_safetensors_atomic

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    write_safetensors_atomic(folder / CORRECTOR_WEIGHTS, state)
    meta = {"widths": list(net.widths), **info}
    (folder / CORRECTOR_INFO).write_text(json.dumps(meta, indent=1) + "\n")


def load_weights(net: Corrector, path: Path) -> Corrector:
    """`net` with the weights of the safetensors file `path`.

    Raises:
        ValueError: the file is missing, not safetensors, or does not fit `net`'s widths.
    """
    from safetensors.torch import load_file

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        net.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not corrector weights ({str(exc).splitlines()[0]})") from None
    return net


def load_corrector(folder: Path) -> Corrector:
    """The corrector saved in `folder` (safetensors only), in eval mode on the CPU.

    Raises:
        ValueError: the folder lacks a file, or its weights do not fit its widths.
    """
    info_path, weights = folder / CORRECTOR_INFO, folder / CORRECTOR_WEIGHTS
    if not info_path.is_file() or not weights.is_file():
        raise ValueError(f"{folder}: needs {CORRECTOR_INFO} and {CORRECTOR_WEIGHTS}")
    try:
        net = Corrector(json.loads(info_path.read_text())["widths"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{folder}: not a corrector ({exc})") from None
    try:
        load_weights(net, weights)
    except ValueError as exc:
        raise ValueError(f"{folder}: not a corrector ({exc})") from None
    return net.eval().requires_grad_(False)
