"""Keep third-party log noise out of the terminal unless `--verbose`.

diffusers, transformers, accelerate and huggingface_hub print warnings about optional
packages (e.g. "`CLIPImageProcessor` requires torchvision"), deprecations and their own
progress bars while loading. None of it is actionable for a layoutedit user, so by default
only errors from those libraries get through; `--verbose` restores their normal output.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

_LIBRARIES = ("diffusers", "transformers", "accelerate", "huggingface_hub", "safetensors")


def configure_library_logging(verbose: bool = False) -> None:
    """Silence (or, with `verbose`, restore) third-party warnings and progress bars.

    Safe to call more than once; the last call wins. Imports nothing: libraries already
    imported are set through their APIs, libraries imported later read the environment
    variables set here (their verbosity, huggingface_hub's and tqdm's progress bars, which
    carry transformers' "Loading weights" bar), so a command that stops at a bad option
    never pays for importing them.
    """
    level = logging.INFO if verbose else logging.ERROR
    # Read by transformers/huggingface_hub at import; harmless if already imported.
    os.environ["TRANSFORMERS_VERBOSITY"] = "info" if verbose else "error"
    os.environ["DIFFUSERS_VERBOSITY"] = "info" if verbose else "error"
    for variable in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        if verbose:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = "1"
    for name in _LIBRARIES:
        logging.getLogger(name).setLevel(level)
    if "transformers" in sys.modules:
        _set_transformers(verbose)
    if "diffusers" in sys.modules:
        _set_diffusers(verbose)
    if "huggingface_hub" in sys.modules:
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
