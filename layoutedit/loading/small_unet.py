"""The small U-shaped net that the model folder's pixel-space networks share (the corrector,
`loading.corrector`; the completer, `loading.completer`), and saving and loading one as
safetensors weights beside a JSON file of its widths and recipe."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
    )


class SmallUNet(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H, W); H and W divisible by
    `multiple` = 2^(len(widths) - 1). `widths`: channels at each scale, full resolution
    first; each further scale halves the side."""

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        w = self.widths
        self.down = nn.ModuleList()
        cin = in_channels
        for i, cout in enumerate(w):
            self.down.append(_block(cin, cout))
            cin = cout
            if i + 1 < len(w):
                self.down.append(nn.Conv2d(cout, cout, 3, stride=2, padding=1))
        self.up = nn.ModuleList()
        for i in range(len(w) - 1, 0, -1):
            self.up.append(nn.Conv2d(w[i], w[i - 1], 3, padding=1))
            self.up.append(_block(2 * w[i - 1], w[i - 1]))
        self.out = nn.Conv2d(w[0], out_channels, 3, padding=1)

    @property
    def multiple(self) -> int:
        """What the input's height and width must be a multiple of."""
        return int(2 ** (len(self.widths) - 1))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The net on (B, in_channels, H, W)."""
        skips = []
        for i, layer in enumerate(self.down):
            x = layer(x)
            if i % 2 == 0 and i + 1 < len(self.down):
                skips.append(x)
        for i in range(0, len(self.up), 2):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.up[i](x)
            x = self.up[i + 1](torch.cat([x, skips.pop()], dim=1))
        return self.out(x)


Net = TypeVar("Net", bound=SmallUNet)


def save_net(
    net: SmallUNet, folder: Path, weights: str, info_name: str, info: dict[str, object]
) -> None:
    """`folder/weights` (safetensors) and `folder/info_name` (JSON: the widths and `info`),
    each written whole."""
    from layoutedit.atomic import write_safetensors_atomic

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    write_safetensors_atomic(folder / weights, state)
    meta = {"widths": list(net.widths), **info}
    (folder / info_name).write_text(json.dumps(meta, indent=1) + "\n")


def load_weights(net: Net, path: Path, what: str) -> Net:
    """`net` with the weights of the safetensors file `path`.

    Raises:
        ValueError: the file is missing, not safetensors, or does not fit `net`'s widths
            (`what` names the net in the message).
    """
    from safetensors.torch import load_file

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        net.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not {what} weights ({str(exc).splitlines()[0]})") from None
    return net


def load_net(
    folder: Path, weights: str, info_name: str, build: Callable[[Sequence[int]], Net], what: str
) -> Net:
    """The net saved in `folder` by `save_net` (safetensors only), built by `build(widths)`,
    in eval mode on the CPU.

    Raises:
        ValueError: the folder lacks a file, or its weights do not fit its widths.
    """
    info_path, weights_path = folder / info_name, folder / weights
    if not info_path.is_file() or not weights_path.is_file():
        raise ValueError(f"{folder}: needs {info_name} and {weights}")
    try:
        net = build(json.loads(info_path.read_text())["widths"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{folder}: not {what} ({exc})") from None
    try:
        load_weights(net, weights_path, what)
    except ValueError as exc:
        raise ValueError(f"{folder}: not {what} ({exc})") from None
    return net.eval().requires_grad_(False)
