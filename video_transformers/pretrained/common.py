"""Shared machinery for pretrained weights: safe file loading, timm image weights (offline aware),
strict key accounting, and the format registry behind :func:`from_pretrained`.

Every family module (``timesformer``, ``vivit``, ``uniformerv2``) adapts weights with pure
``filter_fn(state_dict, model) -> state_dict`` functions and registers the checkpoint formats it reads
with :func:`register_format`.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import logging
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from video_transformers.pretrained.errors import PretrainedError
from video_transformers.pretrained.hub import resolve_source, weights_dir
from video_transformers.safety.checkpoints import CheckpointError, safe_torch_load
from video_transformers.safety.metadata import (
    validate_hf_config,
    validate_model_metadata,
    validate_preprocessor_config,
)

log = logging.getLogger(__name__)


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


def load_pretrained(
    model: nn.Module, state_dict: dict[str, torch.Tensor], where: str, *, missing: Iterable[str] = ()
) -> bool:
    """:func:`load_checked` a checkpoint into ``model`` (errors prefixed with ``where``) after dropping a
    classifier for another class count than ``model.num_classes`` (the checkpoint's ``head.weight`` rows; none
    = 0 classes), whose ``head.*`` then stays fresh. Returns whether the checkpoint's classifier was kept (its
    class names then apply)."""
    saved = state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0
    missing = list(missing)
    if saved != model.num_classes:
        log.info("%s: head for %d classes dropped (model has %d)", where, saved, model.num_classes)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
        missing += ["head.*"] if model.num_classes > 0 else []
    try:
        load_checked(model, state_dict, missing=missing)
    except PretrainedError as e:
        raise PretrainedError(f"{where}: {e}") from e
    return saved == model.num_classes


# -- files of the formats -------------------------------------------------------------------------------
def read_json(file: Path) -> dict[str, Any]:
    """A JSON object from ``file``; anything else raises naming the file."""
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PretrainedError(f"{file}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise PretrainedError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data


def config_model_type(folder: Path) -> str | None:
    """``model_type`` of ``folder/config.json`` (a ``transformers``-style model folder), ``None`` if there is
    no readable one: the cheap test behind every folder format's ``detect``."""
    try:
        return read_json(folder / "config.json").get("model_type") if folder.is_dir() else None
    except PretrainedError:
        return None


def hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict of a ``transformers`` folder: ``model.safetensors`` or ``pytorch_model.bin``, or the
    shards its ``*.index.json`` lists (``save_pretrained`` of large models)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return load_state_dict_file(folder / name)
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / name).is_file():
            weight_map = read_json(folder / name).get("weight_map")
            if not isinstance(weight_map, dict):
                raise PretrainedError(f"{folder / name}: no 'weight_map' object")
            shards = sorted(set(weight_map.values()))
            return {k: v for shard in shards for k, v in load_state_dict_file(folder / shard).items()}
    raise PretrainedError(
        f"{folder}: no model.safetensors or pytorch_model.bin (or a sharded index) next to config.json"
    )


def pickle_mentions(path: Path, suffixes: Iterable[str], names: Iterable[bytes]) -> bool:
    """Whether ``path`` is a torch zip archive with one of ``suffixes`` whose pickle contains every one of
    ``names`` (key names, read as bytes, never unpickled): the cheap test behind ``detect`` of pickled formats."""
    if not (path.is_file() and path.suffix in set(suffixes) and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if not pickles:
            return False
        text = archive.read(pickles[0])
    return all(name in text for name in names)


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
