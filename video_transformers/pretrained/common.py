"""Shared machinery for pretrained weights: safe file loading, timm image weights (offline aware),
strict key accounting, and the format registry behind :func:`from_pretrained`.

Every family module (``timesformer``, ``vivit``, ``uniformerv2``) adapts weights with pure
``filter_fn(state_dict, model) -> state_dict`` functions and registers the checkpoint formats it reads
with :func:`register_format`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


class PretrainedError(ValueError):
    """A checkpoint or pretrained source cannot be used; the message names the file or key."""


def weights_dir() -> Path:
    """Where local copies of pretrained weights are looked up: ``$VT_WEIGHTS_DIR`` or ``~/.cache/video_transformers/weights``."""
    return Path(os.environ.get("VT_WEIGHTS_DIR") or Path.home() / ".cache" / "video_transformers" / "weights")


def load_state_dict_file(path: str | Path, *, trust: bool = False) -> dict[str, Any]:
    """Read a checkpoint file without running code from it.

    ``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``.
    Files that need full unpickling (old releases holding non-tensor objects) are refused unless
    ``trust=True``, and the error says so.
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError / RuntimeError / ValueError variants
        if not trust:
            raise PretrainedError(
                f"{path}: refused to unpickle (it holds objects beyond tensors and plain containers: {e}). "
                "Only if you trust its source, pass trust=True (CLI: --trust_checkpoint true)."
            ) from e
        log.warning("%s: loading with full unpickling (trust=True)", path)
        return torch.load(path, map_location="cpu", weights_only=False)


def image_state_dict(name_or_path: str) -> dict[str, torch.Tensor]:
    """State dict of an image model: a local file, a file named after it under :func:`weights_dir`, or a
    timm model name (downloaded by timm when the network is there)."""
    path = Path(name_or_path).expanduser()
    if path.suffix in {".safetensors", ".pth", ".pt", ".bin", ".pyth", ".ckpt"} or path.is_file():
        return _unwrap(load_state_dict_file(path))
    for suffix in (".safetensors", ".pth", ".bin"):
        local = weights_dir() / f"{name_or_path}{suffix}"
        if local.is_file():
            return _unwrap(load_state_dict_file(local))
    import timm

    try:
        model = timm.create_model(name_or_path, pretrained=True, num_classes=0)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise PretrainedError(f"unknown timm model {name_or_path!r}") from e
        raise _offline_error(name_or_path, e) from e
    except Exception as e:  # network errors come in many types (OSError, HTTP errors, hub errors)
        raise _offline_error(name_or_path, e) from e
    return model.state_dict()


def _offline_error(name: str, cause: Exception) -> PretrainedError:
    target = weights_dir() / f"{name}.safetensors"
    return PretrainedError(
        f"could not fetch pretrained weights {name!r} ({type(cause).__name__}: {cause}). Without network access, "
        f"save them elsewhere with `timm.create_model({name!r}, pretrained=True)` and "
        f"`safetensors.torch.save_file(model.state_dict(), ...)`, then put the file at {target} "
        "(or set VT_WEIGHTS_DIR), or pass the file's path instead of the name."
    )


def _unwrap(obj: Any) -> dict[str, torch.Tensor]:
    """The tensor dict inside common checkpoint wrappers (``state_dict``, ``model``, ``model_state``)."""
    for key in ("state_dict", "model", "model_state", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return obj[key]
    if not isinstance(obj, dict):
        raise PretrainedError(f"expected a state dict, got {type(obj).__name__}")
    return obj


def load_checked(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    missing: Iterable[str] = (),
    unexpected: Iterable[str] = (),
) -> None:
    """``load_state_dict(strict=False)``, then require that the missing and unexpected keys are exactly
    the expected ones (shell-style patterns allowed); shape mismatches name the key."""
    own = model.state_dict()
    bad_shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad_shapes:
        raise PretrainedError("shape mismatch:\n  " + "\n  ".join(bad_shapes))
    result = model.load_state_dict(state_dict, strict=False)
    miss_pats, unexp_pats = list(missing), list(unexpected)
    problems = []
    bad_missing = [k for k in result.missing_keys if not any(fnmatch.fnmatchcase(k, p) for p in miss_pats)]
    bad_unexpected = [k for k in result.unexpected_keys if not any(fnmatch.fnmatchcase(k, p) for p in unexp_pats)]
    if bad_missing:
        problems.append(f"missing keys (not filled by the checkpoint): {bad_missing}")
    if bad_unexpected:
        problems.append(f"unexpected keys (in the checkpoint, not in the model): {bad_unexpected}")
    unmatched = [p for p in miss_pats if not any(fnmatch.fnmatchcase(k, p) for k in result.missing_keys)]
    if unmatched:
        problems.append(f"expected missing keys that were present: {unmatched}")
    if problems:
        raise PretrainedError(f"{type(model).__name__}: " + "; ".join(problems))


# -- formats behind from_pretrained -------------------------------------------------------------------
@dataclass(frozen=True)
class Format:
    name: str
    detect: Callable[[Path], bool]
    load: Callable[..., nn.Module]  # load(path, **overrides) -> model


_FORMATS: dict[str, Format] = {}


def register_format(name: str, detect: Callable[[Path], bool], load: Callable[..., nn.Module]) -> None:
    """Register a checkpoint format: ``detect(path) -> bool`` (cheap), ``load(path, **overrides) -> model``."""
    _FORMATS[name] = Format(name, detect, load)


def list_formats() -> list[str]:
    return sorted(_FORMATS)


def from_pretrained(source: str | Path, *, format: str | None = None, **overrides: Any) -> nn.Module:
    """A ready model (eval mode, class names attached when known) from a checkpoint folder or file.

    ``format`` forces one of :func:`list_formats`; otherwise the first format whose ``detect`` accepts the
    source is used. ``overrides`` replace inferred architecture arguments (e.g. ``num_classes``).
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise PretrainedError(
            f"{source}: no such file or folder. Hub ids are not fetched at run time here: download the "
            "checkpoint folder (config.json + weights) and pass its path."
        )
    if format is not None:
        if format not in _FORMATS:
            raise PretrainedError(f"unknown format {format!r}; known: {list_formats()}")
        fmt = _FORMATS[format]
    else:
        matches = [f for f in _FORMATS.values() if f.detect(path)]
        if not matches:
            raise PretrainedError(f"{path}: not a checkpoint format this suite reads (known: {list_formats()})")
        fmt = matches[0]
    model = fmt.load(path, **overrides)
    return model.eval()
