"""Validators for what checkpoints and pretrained folders say about themselves: class names,
normalisation mean/std, architecture hyper-parameters. A file from elsewhere can hold any value under
any key; these turn wrong types and shapes into one error naming the file and key, before the values are
used to size a model or normalise inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from video_transformers.safety.limits import LIMITS, SizeError, check_model_kwargs


class MetadataError(ValueError):
    """A checkpoint's metadata has a wrong type, shape or value; the message names the file and key."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_class_names(names: Any, *, num_classes: int | None = None, where: str = "class_names") -> list[str] | None:
    """``None`` or a list of distinct non-empty strings (``num_classes`` of them when given)."""
    if names is None:
        return None
    if not isinstance(names, (list, tuple)):
        raise MetadataError(f"{where}: expected a list of class names, got {type(names).__name__}")
    if len(names) > LIMITS.max_classes:
        raise MetadataError(f"{where}: {len(names):,} class names; the limit is {LIMITS.max_classes:,}")
    bad = [(i, n) for i, n in enumerate(names) if not isinstance(n, str) or not n or len(n) > 1000]
    if bad:
        i, n = bad[0]
        got = f"{type(n).__name__} {n!r:.60}"
        raise MetadataError(f"{where}[{i}]: expected a non-empty string (<= 1000 chars), got {got}")
    if num_classes is not None and len(names) != num_classes:
        raise MetadataError(f"{where}: {len(names)} names for {num_classes} classes")
    seen: set[str] = set()
    dup = sorted({n for n in names if n in seen or seen.add(n)})
    if dup:
        raise MetadataError(f"{where}: duplicated class names {dup[:5]}")
    return list(names)


def validate_mean_std(mean: Any, std: Any, *, channels: int = 3, where: str = "normalisation") -> tuple[tuple, tuple]:
    """Per-channel ``mean`` and ``std``: ``channels`` finite numbers each, every std > 0."""
    out = []
    for key, value in (("mean", mean), ("std", std)):
        if hasattr(value, "tolist"):  # a tensor or array holding the numbers
            value = value.tolist()
        if not isinstance(value, (list, tuple)) or len(value) != channels or not all(map(_is_number, value)):
            raise MetadataError(f"{where}: {key} must be {channels} finite numbers, got {value!r:.80}")
        out.append(tuple(float(v) for v in value))
    if any(s <= 0 for s in out[1]):
        raise MetadataError(f"{where}: std must be > 0 per channel, got {out[1]}")
    return out[0], out[1]


# -- Lightning checkpoints of VideoClassifier ------------------------------------------------------------
_HPARAM_TYPES: dict[str, tuple[type, ...]] = {
    "backbone": (str,),
    "backbone_kwargs": (dict, type(None)),
    "num_classes": (int,),
    "num_frames": (int, type(None)),
    "img_size": (int, type(None)),
    "class_names": (list, tuple, type(None)),
    "label_smoothing": (int, float),
    "warmup_epochs": (int, float),
    "min_lr_ratio": (int, float),
    "aggregate": (str,),
}


def validate_hparams(hparams: Any, *, where: str = "checkpoint") -> dict[str, Any]:
    """A :class:`VideoClassifier` checkpoint's ``hyper_parameters``: types per key, class names matching
    ``num_classes``, and the architecture within :mod:`~video_transformers.safety.limits` (checked here,
    before the CLI merges them into its configuration and builds the model)."""
    if not isinstance(hparams, Mapping):
        raise MetadataError(f"{where}: hyper_parameters must be a mapping, got {type(hparams).__name__}")
    for key, types in _HPARAM_TYPES.items():
        if key not in hparams:
            continue
        value = hparams[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            got = f"{type(value).__name__} {value!r:.60}"
            raise MetadataError(f"{where}: hyper_parameters[{key!r}] must be {names}, got {got}")
        if isinstance(value, float) and not math.isfinite(value):
            raise MetadataError(f"{where}: hyper_parameters[{key!r}] is {value}")
    kwargs = hparams.get("backbone_kwargs") or {}
    if any(not isinstance(k, str) for k in kwargs):
        raise MetadataError(f"{where}: hyper_parameters['backbone_kwargs'] keys must be strings")
    num_classes = hparams.get("num_classes")
    names_where = f"{where}: hyper_parameters['class_names']"
    validate_class_names(hparams.get("class_names"), num_classes=num_classes, where=names_where)
    sizes = {k: hparams[k] for k in ("num_classes", "num_frames") if hparams.get(k) is not None}
    if hparams.get("img_size") is not None:
        sizes["img_size"] = hparams["img_size"]
    try:
        check_model_kwargs(str(hparams.get("backbone", "?")), {**sizes, **kwargs})
    except SizeError as e:
        raise MetadataError(f"{where}: hyper_parameters: {e}") from e
    return dict(hparams)


# -- Hugging Face config.json / preprocessor_config.json ---------------------------------------------------
_HF_INT_KEYS = {
    "hidden_size": "embed_dim",
    "num_hidden_layers": "depth",
    "num_attention_heads": "num_heads",
    "image_size": "img_size",
    "num_frames": "num_frames",
    "num_channels": "in_chans",
}


def validate_hf_config(config: Any, *, where: str = "config.json") -> dict[str, Any]:
    """The fields of a ``transformers`` ``config.json`` that size a model or name its classes."""
    if not isinstance(config, Mapping):
        raise MetadataError(f"{where}: expected a JSON object, got {type(config).__name__}")
    kwargs: dict[str, Any] = {}
    for key, arg in _HF_INT_KEYS.items():
        if key in config:
            if not _is_int(config[key]):
                raise MetadataError(f"{where}: {key} must be an integer, got {config[key]!r:.60}")
            kwargs[arg] = config[key]
    if "intermediate_size" in config:
        if not _is_int(config["intermediate_size"]) or config["intermediate_size"] < 1:
            got = f"{config['intermediate_size']!r:.60}"
            raise MetadataError(f"{where}: intermediate_size must be a positive integer, got {got}")
        if kwargs.get("embed_dim"):
            kwargs["mlp_ratio"] = config["intermediate_size"] / kwargs["embed_dim"]
    patch = config.get("patch_size")
    tubelet = config.get("tubelet_size")
    for key, value in (("patch_size", patch), ("tubelet_size", tubelet)):
        if value is None:
            continue
        seq = value if isinstance(value, (list, tuple)) else [value]
        if not seq or not all(_is_int(v) for v in seq):
            raise MetadataError(f"{where}: {key} must be an integer or a list of integers, got {value!r:.60}")
    if patch is not None:
        kwargs["patch_size"] = max(patch) if isinstance(patch, (list, tuple)) else patch
    if isinstance(tubelet, (list, tuple)):  # ViViT: [t, h, w]
        kwargs["tubelet_size"], kwargs["patch_size"] = tubelet[0], max(tubelet[1:] or [kwargs.get("patch_size", 1)])
    id2label = config.get("id2label")
    if id2label is not None:
        if not isinstance(id2label, Mapping):
            raise MetadataError(f"{where}: id2label must be an object, got {type(id2label).__name__}")
        for k, v in id2label.items():
            if not (isinstance(k, str) and k.lstrip("-").isdigit()) or not isinstance(v, str):
                raise MetadataError(f"{where}: id2label entry {k!r}: {v!r:.60} is not '<int>': '<name>'")
        ids = sorted(int(k) for k in id2label)
        if ids != list(range(len(ids))):
            raise MetadataError(f"{where}: id2label keys must be 0..{len(ids) - 1}, got {ids[:5]}...")
        kwargs["num_classes"] = len(ids)
    try:
        check_model_kwargs(f"{config.get('model_type', '?')} from {where}", kwargs)
    except SizeError as e:
        raise MetadataError(str(e)) from e
    return dict(config)


def validate_preprocessor_config(config: Any, *, where: str = "preprocessor_config.json") -> dict[str, Any]:
    """``image_mean`` / ``image_std`` (3 numbers, std > 0) and a positive ``rescale_factor`` when present."""
    if not isinstance(config, Mapping):
        raise MetadataError(f"{where}: expected a JSON object, got {type(config).__name__}")
    if "image_mean" in config or "image_std" in config:
        validate_mean_std(config.get("image_mean", [0.5] * 3), config.get("image_std", [0.5] * 3), where=where)
    factor = config.get("rescale_factor")
    if factor is not None and (not _is_number(factor) or factor <= 0):
        raise MetadataError(f"{where}: rescale_factor must be a positive number, got {factor!r:.60}")
    return dict(config)


def validate_model_metadata(model: Any, *, where: str) -> None:
    """What a loader attached to a model: ``class_names`` (one per output) and ``mean`` / ``std``."""
    num_classes = getattr(model, "num_classes", None)
    validate_class_names(
        getattr(model, "class_names", None),
        num_classes=num_classes if _is_int(num_classes) and num_classes > 0 else None,
        where=f"{where}: class_names",
    )
    if getattr(model, "mean", None) is not None or getattr(model, "std", None) is not None:
        validate_mean_std(getattr(model, "mean", None), getattr(model, "std", None), where=f"{where}: mean/std")
