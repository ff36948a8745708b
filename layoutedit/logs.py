"""Keep third-party log noise out of the terminal unless `--verbose`.

diffusers, transformers, accelerate and huggingface_hub print warnings about optional
packages (e.g. "`CLIPImageProcessor` requires torchvision"), deprecations and their own
progress bars while loading. None of it is actionable for a layoutedit user, so by default
only errors from those libraries get through; `--verbose` restores their normal output.
"""

from __future__ import annotations

import logging
import os
import warnings

_LIBRARIES = ("diffusers", "transformers", "accelerate", "huggingface_hub", "safetensors")


def configure_library_logging(verbose: bool = False) -> None:
    """Silence (or, with `verbose`, restore) third-party warnings and progress bars.

    Safe to call more than once; the last call wins. Sets environment variables read at
    import time too, so libraries imported later follow the same choice.
    """
    level = logging.INFO if verbose else logging.ERROR
    # Read by transformers/huggingface_hub at import; harmless if already imported.
    os.environ["TRANSFORMERS_VERBOSITY"] = "info" if verbose else "error"
    os.environ["DIFFUSERS_VERBOSITY"] = "info" if verbose else "error"
    if verbose:
        os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    else:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    for name in _LIBRARIES:
        logging.getLogger(name).setLevel(level)
    _set_transformers(verbose)
    _set_diffusers(verbose)
    _set_hub(verbose)
    for module in ("diffusers", "transformers", "accelerate", "huggingface_hub", "torch"):
        if verbose:
            warnings.filterwarnings("default", module=rf"{module}(\.|$)")
        else:
            warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")


def _set_transformers(verbose: bool) -> None:
    try:
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover - a hard dependency, but logs must never fail
        return
    if verbose:
        tlog.set_verbosity_info()
        tlog.enable_progress_bar()
    else:
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()


def _set_diffusers(verbose: bool) -> None:
    try:
        from diffusers.utils import logging as dlog
    except ImportError:  # pragma: no cover
        return
    if verbose:
        dlog.set_verbosity_info()
        dlog.enable_progress_bar()
    else:
        dlog.set_verbosity_error()
        dlog.disable_progress_bar()


def _set_hub(verbose: bool) -> None:
    try:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    except ImportError:  # pragma: no cover
        return
    if verbose:
        enable_progress_bars()
    else:
        disable_progress_bars()
