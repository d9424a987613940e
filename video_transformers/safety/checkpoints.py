"""Reading checkpoint files without running code from them.

``torch.load`` unpickles: a ``.ckpt`` / ``.pth`` from elsewhere can carry a ``__reduce__`` that runs a
shell command when loaded. :func:`safe_torch_load` always tries ``weights_only=True`` (tensors, plain
containers, numbers, strings) first. A file that needs more is refused unless the caller passes
``trust=True``; a corrupt or truncated file is reported as such and never retried with full unpickling.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import IO, Any

import torch

log = logging.getLogger(__name__)

TRUST_HINT = "only if you trust its source, pass trust=True (CLI: --trust_checkpoint true)"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read safely; the message names the file."""


class UntrustedCheckpointError(CheckpointError):
    """The file holds pickled objects beyond tensors and plain containers, and ``trust`` was not given."""


def _numpy_globals() -> list:
    """Numeric numpy arrays and scalars (RNG states, official checkpoints' epoch counters): rebuilding them
    runs no stored code, and the elements of object arrays still go through the weights-only unpickler."""
    try:
        import numpy as np
    except ImportError:
        return []
    core = getattr(np, "_core", None) or np.core
    dtypes = [
        type(np.dtype(t))
        for t in (
            np.bool_,
            np.int8,
            np.int16,
            np.int32,
            np.int64,
            np.uint8,
            np.uint16,
            np.uint32,
            np.uint64,
            np.float16,
            np.float32,
            np.float64,
        )
    ]
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def _reason(e: Exception) -> str:
    """The line of torch's weights-only error that names what was refused."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    named = [ln for ln in lines if "Unsupported" in ln or "global" in ln.lower()]
    return (named or lines or [type(e).__name__])[0][:300]


def safe_torch_load(
    source: str | Path | IO[bytes], *, trust: bool = False, map_location: Any = "cpu", hint: str = TRUST_HINT
) -> Any:
    """``torch.load(source, weights_only=True)``; full unpickling only with ``trust=True``."""
    name = getattr(source, "name", source)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust:
            raise UntrustedCheckpointError(
                f"{name}: refused to unpickle: it holds objects beyond tensors and plain containers, and loading"
                f" them could run code ({_reason(e)}). {hint[0].upper()}{hint[1:]}."
            ) from e
        log.warning("%s: loading with full unpickling (trust=True): this runs code stored in the file", name)
        if hasattr(source, "seek"):
            source.seek(0)
        return torch.load(source, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError) as e:
        # torch's zip reader raises RuntimeError on truncation; old-format readers raise the others
        msg = f"{name}: cannot read the checkpoint (corrupt or truncated?): {type(e).__name__}: {e}"
        raise CheckpointError(msg) from e
