"""Shared machinery for pretrained weights: safe file loading, timm image weights (offline aware),
strict key accounting, and the format registry behind :func:`from_pretrained`.

Every family module (``timesformer``, ``vivit``, ``uniformerv2``) adapts weights with pure
``filter_fn(state_dict, model) -> state_dict`` functions and registers the checkpoint formats it reads
with :func:`register_format`.
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from video_transformers.safety.checkpoints import CheckpointError, safe_torch_load
from video_transformers.safety.metadata import (
    validate_hf_config,
    validate_model_metadata,
    validate_preprocessor_config,
)

log = logging.getLogger(__name__)


class PretrainedError(ValueError):
    """A checkpoint or pretrained source cannot be used; the message names the file or key."""


def weights_dir() -> Path:
    """Where local copies of pretrained weights are looked up: ``$VT_WEIGHTS_DIR`` or
    ``~/.cache/video_transformers/weights``."""
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
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise PretrainedError(f"{path}: cannot read safetensors file (corrupt or truncated?): {e}") from e
    try:
        obj = safe_torch_load(path, trust=trust)
    except CheckpointError as e:  # the message names the file and, when refused, the trust option
        raise PretrainedError(str(e)) from e
    if not isinstance(obj, dict):
        raise PretrainedError(f"{path}: expected a dict (a state dict or a checkpoint), got {type(obj).__name__}")
    return obj


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


def detect_format(path: str | Path) -> str | None:
    """The first registered format whose ``detect`` accepts the local ``path``, or ``None``."""
    path = Path(path)
    return next((f.name for f in _FORMATS.values() if f.detect(path)), None)


def from_pretrained(
    source: str | Path, *, format: str | None = None, trust: bool = False, **overrides: Any
) -> nn.Module:
    """A ready model (eval mode, class names attached when known) from a checkpoint folder or file, a
    Hugging Face Hub id or a known checkpoint's name.

    ``source``: a local path; ``org/name`` or ``hf-hub:org/name[@revision][/file]`` (resolved through
    ``huggingface_hub``'s cache, works offline once cached); or a name from ``vt info --pretrained``
    (:mod:`.hub` says how each is resolved and checked). ``format`` forces one of :func:`list_formats`;
    otherwise the first format whose ``detect`` accepts the source is used. ``overrides`` replace inferred
    architecture arguments (e.g. ``num_classes``). ``trust=True`` allows full unpickling for the formats that
    read pickles (official releases holding non-tensor objects); never pass it for files from an unknown
    source. Metadata (``config.json``, class names, mean/std) is validated, and errors name the file and key.
    """
    from video_transformers.pretrained.hub import resolve_source

    path = resolve_source(source)
    if not path.exists():
        raise PretrainedError(
            f"{source}: no such file or folder, nor a Hugging Face Hub id (org/name, hf-hub:org/name[@revision]"
            "[/file]) or a known checkpoint name (vt info --pretrained)"
        )
    if format is not None:
        if format not in _FORMATS:
            raise PretrainedError(f"unknown format {format!r}; known: {list_formats()}")
        fmt = _FORMATS[format]
    else:
        name = detect_format(path)
        if name is None:
            raise PretrainedError(f"{path}: not a checkpoint format this suite reads (known: {list_formats()})")
        fmt = _FORMATS[name]
    if path.is_dir():
        _validate_folder_metadata(path)
    if trust:
        if "trust" not in inspect.signature(fmt.load).parameters:
            log.info("%s: format %s reads no pickles; trust=True has no effect", path, fmt.name)
        else:
            overrides["trust"] = True
    model = fmt.load(path, **overrides)
    validate_model_metadata(model, where=str(path))
    return model.eval()


def _validate_folder_metadata(folder: Path) -> None:
    """``config.json`` and preprocessor configs of a pretrained folder, before a loader sizes a model from them."""
    import json

    for name, validate in (
        ("config.json", validate_hf_config),
        ("preprocessor_config.json", validate_preprocessor_config),
        ("video_preprocessor_config.json", validate_preprocessor_config),
    ):
        file = folder / name
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise PretrainedError(f"{file}: not valid JSON ({e})") from e
            validate(data, where=str(file))
