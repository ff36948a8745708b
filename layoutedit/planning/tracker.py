"""Live-tensor memory by category, measured by watching every operator (no allocator needed).

`MemoryTracker` is a `TorchDispatchMode`: every tensor an operator returns is attributed to a
category by its storage (views share their base's storage, so nothing counts twice) and
subtracted again when the storage is freed (a `weakref.finalize` on the storage). It works on
PyTorch's `meta` device, where tensors have shapes and dtypes but no data, so the memory of a
Stable Diffusion step can be planned on a machine without a GPU.

Categories (the planner's table columns):
- `weights`: parameters and buffers (registered with `track_module`), frozen copies;
- `gradients`: `.grad` of trained parameters (retagged by a post-accumulate-grad hook);
- `optimizer`: optimiser state (retagged after `optimizer.step`);
- `attention`: cross-attention probabilities the guidance records (retagged by the planner);
- `activations`: everything else, i.e. tensors saved for backward and temporaries.

What it does not see: allocator rounding and caching, workspace of fused kernels, CUDA
context (about 0.3-0.5 GB on a real GPU). The planner adds none of them; `gpu_check`
compares with `torch.cuda.max_memory_allocated`, which sees them all.

`AutocastEmulation` applies autocast's dtype policy on `meta` (where `torch.autocast` does not
act): matrix products and convolutions in the low-precision dtype, normalisations in fp32,
so that fp16 frozen weights with fp32 trained parameters plan the way they run on a GPU.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry

CATEGORIES = ("weights", "gradients", "optimizer", "activations", "attention")

_F = torch.nn.functional
# What autocast runs in low precision / in fp32, at the level of the functions a UNet, a CLIP
# text encoder and a VAE call (the dtype checks of convolutions run before the dispatcher,
# so the emulation must act here, not in `__torch_dispatch__`).
_LOW_PRECISION = {
    _F.conv2d,
    _F.linear,
    _F.scaled_dot_product_attention,
    torch.bmm,
    torch.baddbmm,
    torch.matmul,
    torch.Tensor.matmul,
    torch.mm,
    torch.addmm,
}
_FP32 = {_F.group_norm, _F.layer_norm}


class AutocastEmulation(TorchFunctionMode):
    """Autocast's dtype policy for tensors on any device (`meta` included), as a function
    mode: matrix products and convolutions in `dtype`, normalisations in fp32.

    The casts allocate new tensors (as autocast's do), which the tracker sees.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _LOW_PRECISION:
            args, kwargs = _cast(args, self.dtype), _cast(kwargs, self.dtype)
        elif func in _FP32:
            args, kwargs = _cast(args, torch.float32), _cast(kwargs, torch.float32)
        return func(*args, **kwargs)


def _cast(tree: Any, dtype: torch.dtype) -> Any:
    def cast(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype:
            return x.to(dtype)
        return x

    return tree_map(cast, tree)


class _Record:
    __slots__ = ("category", "nbytes")

    def __init__(self, category: str, nbytes: int) -> None:
        self.category = category
        self.nbytes = nbytes


class MemoryTracker(TorchDispatchMode):
    """Bytes of live tensor storage per category, and the peak of their sum.

    Args:
        device_type: only storages on this device type count (`meta` when planning, `cpu`
            when measuring a real run the same way).
        autocast_dtype: the autocast dtype the phases run under (None: none); `measure`
            enters `AutocastEmulation` with it.

    Usage:
        tracker = MemoryTracker()
        tracker.track_module(unet, "weights")
        with tracker:
            ...                       # run a phase
        tracker.peak, tracker.peak_total
    """

    def __init__(self, device_type: str = "meta", autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.device_type = device_type
        self.autocast_dtype = autocast_dtype
        self.category = "activations"
        self.live: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.peak: dict[str, int] = dict(self.live)
        self.peak_total = 0
        self.flops = 0
        """FLOPs of every operator seen, by `torch.utils.flop_counter`'s formulas (matrix
        products, convolutions, attention; elementwise ops count nothing)."""
        self._records: dict[int, _Record] = {}

    # -- attribution ---------------------------------------------------------------
    def track(self, tensor: torch.Tensor, category: str, *, retag: bool = True) -> None:
        """Attribute `tensor`'s storage to `category`; one counted already moves there
        when `retag` (an in-place op's output is its input: it keeps its category)."""
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != self.device_type:
            return
        storage = tensor.untyped_storage()
        key = id(storage)
        record = self._records.get(key)
        if record is None:
            record = _Record(category, int(storage.nbytes()))
            self._records[key] = record
            self.live[category] += record.nbytes
            weakref.finalize(storage, self._free, key, record)
            self._update_peak()
        elif retag and record.category != category:
            self.live[record.category] -= record.nbytes
            record.category = category
            self.live[category] += record.nbytes

    def track_module(self, module: torch.nn.Module, category: str = "weights") -> None:
        """Attribute every parameter and buffer of `module`."""
        for tensor in [*module.parameters(), *module.buffers()]:
            self.track(tensor, category)

    def track_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Attribute every tensor of the optimiser's state to `optimizer`."""
        for state in optimizer.state.values():
            for value in state.values():
                self.track(value, "optimizer")

    def watch_gradients(self, params: list[torch.Tensor]) -> list[Any]:
        """Retag each parameter's `.grad` as `gradients` as soon as it is accumulated.

        Returns:
            The hook handles (remove them when the phase ends).
        """

        def hook(param: torch.Tensor) -> None:
            if param.grad is not None:
                self.track(param.grad, "gradients")

        return [p.register_post_accumulate_grad_hook(hook) for p in params if p.requires_grad]

    @contextlib.contextmanager
    def as_category(self, category: str) -> Iterator[None]:
        """Tensors created inside the block go to `category` (e.g. `optimizer` for a step)."""
        before, self.category = self.category, category
        try:
            yield
        finally:
            self.category = before

    def reset_peak(self) -> None:
        """Start a new phase: the peak becomes what is live now."""
        self.peak = dict(self.live)
        self.peak_total = sum(self.live.values())

    @property
    def live_total(self) -> int:
        """Bytes live now, all categories."""
        return sum(self.live.values())

    # -- internals -----------------------------------------------------------------
    def _free(self, key: int, record: _Record) -> None:
        if self._records.get(key) is record:
            del self._records[key]
        self.live[record.category] -= record.nbytes

    def _update_peak(self) -> None:
        total = sum(self.live.values())
        if total > self.peak_total:
            self.peak_total = total
            self.peak = dict(self.live)

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: Any = (),
        kwargs: Any = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # FlopCounterMode's own formulas, counted here: FlopCounterMode itself tracks modules
        # with hooks that break `torch.autograd.grad` on a leaf (the guidance's gradient).
        formula = flop_registry.get(func.overloadpacket)
        if formula is not None:
            self.flops += int(formula(*args, **kwargs, out_val=out))
        for tensor in _tensors(out):
            self.track(tensor, self.category, retag=False)
        return out


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []
