"""This suite's own Hugging Face model folder (``vt export --format hf``) as a ``from_pretrained`` format::

    folder/
      config.json        model_type "video_transformers"; the model class and every constructor argument
                         (defaults written out), normalisation, class names (id2label), clip settings
      model.safetensors  the state dict, loaded strictly (every key, no other)
      README.md          the model card (huggingface_hub.ModelCard, see model_card.py)
      test_report.json   copied from beside the checkpoint when there is one

``huggingface_hub`` uploads the folder as it is (``hf upload <namespace>/<name> <folder>``), and
``from_pretrained`` reads it back, locally or as ``hf-hub:<namespace>/<name>``, to identical logits. The
architecture is rebuilt from the recorded constructor call, so any size loads, registered or not (nanoGPT's
``model_args``, written as JSON).
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from video_transformers.models.base import VideoTransformer
from video_transformers.pretrained.common import (
    PretrainedError,
    config_model_type,
    load_pretrained,
    load_state_dict_file,
    read_json,
    register_format,
)
from video_transformers.pretrained.spec import is_plain, resolve_class
from video_transformers.safety.limits import SizeError, check_model_kwargs
from video_transformers.version import __version__

log = logging.getLogger(__name__)

MODEL_TYPE = "video_transformers"
FORMAT_VERSION = 1
CONFIG, WEIGHTS, CARD, REPORT = "config.json", "model.safetensors", "README.md", "test_report.json"


def constructor_kwargs(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every keyword argument of ``cls.__init__``: ``kwargs`` over the signature's defaults, so the folder
    rebuilds the same model even if a default changes later."""
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise PretrainedError(f"{cls.__name__} has no argument(s) {unknown}")
    out = {}
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in kwargs:
            out[name] = kwargs[name]
        elif p.default is not p.empty:
            out[name] = p.default
        else:
            raise PretrainedError(f"{cls.__name__}: required argument {name!r} was not recorded")
    bad = {k: v for k, v in out.items() if not is_plain(v)}
    if bad:
        raise PretrainedError(f"{cls.__name__}: arguments {sorted(bad)} are not JSON values; cannot write config.json")
    return out


def build_config(
    model: nn.Module, spec: dict[str, Any] | None, *, clip: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``config.json`` for ``model``, built by ``spec = {"class": "module:Name", "kwargs": {...}}`` (as
    :func:`~video_transformers.pretrained.spec.model_spec` gives it)."""

    if spec is None:
        raise PretrainedError(
            f"{type(model).__name__}: its constructor call was not recorded (positional or non-JSON arguments), "
            "so config.json cannot describe it"
        )
    cls = resolve_class(spec["class"], "export")
    if not isinstance(model, cls):
        raise PretrainedError(f"spec names {spec['class']} but the model is a {type(model).__name__}")
    kwargs = constructor_kwargs(cls, spec["kwargs"])
    names = getattr(model, "class_names", None)
    config = {
        "model_type": MODEL_TYPE,
        "format_version": FORMAT_VERSION,
        "architectures": [cls.__name__],
        "model_class": spec["class"],
        "model_kwargs": kwargs,
        "model_name": getattr(model, "model_name", "") or cls.__name__,
        "num_classes": int(model.num_classes),
        "num_frames": int(model.num_frames),
        "image_size": int(model.img_size),
        "num_channels": int(kwargs.get("in_chans", 3)),
        "image_mean": [float(v) for v in model.mean],
        "image_std": [float(v) for v in model.std],
        "video_transformers_version": __version__,
        "torch_dtype": "float32",
    }
    if names:
        config["id2label"] = {str(i): n for i, n in enumerate(names)}
        config["label2id"] = {n: i for i, n in enumerate(names)}
    if clip:
        config["clip"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in clip.items()}
    return config


def save_folder(
    model: nn.Module,
    folder: str | Path,
    *,
    spec: dict[str, Any] | None,
    clip: dict[str, Any] | None = None,
    card: Any = None,
    report: Path | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and, when given, ``README.md`` (a ``ModelCard``) and a copy
    of ``report``. Refuses a folder that already holds files (nothing is overwritten)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise PretrainedError(f"{folder}: exists and is not an empty folder; choose a new --out (nothing overwritten)")
    config = build_config(model, spec, clip=clip)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    if card is not None:
        card.save(str(folder / CARD))
    if report is not None:
        (folder / REPORT).write_bytes(Path(report).read_bytes())
    log.info("wrote %s (%s, %d tensors)", folder, config["model_class"], len(state))
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    file = folder / CONFIG
    config = read_json(file)
    for key, types in (("model_class", str), ("model_kwargs", dict), ("image_mean", list), ("image_std", list)):
        if not isinstance(config.get(key), types):
            raise PretrainedError(f"{file}: {key!r} missing or not a {types.__name__}")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise PretrainedError(
            f"{file}: format_version {config['format_version']} is newer than this suite reads ({FORMAT_VERSION}); "
            "upgrade video-transformers"
        )
    return config


def load_folder(path: str | Path, **overrides: Any) -> VideoTransformer:
    """The model of an exported folder; ``overrides`` replace recorded arguments (a different
    ``num_classes`` leaves the head new; other shape changes fail naming the key)."""
    folder = Path(path)
    config = read_config(folder)
    cls = resolve_class(config["model_class"], str(folder / CONFIG))
    kwargs = {**config["model_kwargs"], **overrides}
    try:
        check_model_kwargs(config.get("model_name") or cls.__name__, kwargs)
    except SizeError as e:
        raise PretrainedError(f"{folder / CONFIG}: {e}") from e
    try:
        model = cls(**kwargs)
    except TypeError as e:
        raise PretrainedError(f"{folder / CONFIG}: model_kwargs do not fit {cls.__name__} ({e})") from e
    head_kept = load_pretrained(model, load_state_dict_file(folder / WEIGHTS), str(folder / WEIGHTS))
    model.mean = tuple(float(v) for v in config["image_mean"])
    model.std = tuple(float(v) for v in config["image_std"])
    id2label = config.get("id2label") or {}
    if id2label and head_kept:
        model.class_names = [id2label[str(i)] for i in range(len(id2label))]
    model.model_name = config.get("model_name") or ""
    return model


def is_folder(path: Path) -> bool:
    return config_model_type(path) == MODEL_TYPE


def clip_settings(path: str | Path) -> dict[str, Any] | None:
    """The clip settings an exported folder records (``ClipSpec`` fields), or ``None``."""
    path = Path(path)
    if not is_folder(path):
        return None
    clip = read_config(path).get("clip")
    if not isinstance(clip, dict):
        return None
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in clip.items()}


register_format("hf_video_transformers", is_folder, load_folder)

__all__ = ["MODEL_TYPE", "build_config", "clip_settings", "constructor_kwargs", "load_folder", "save_folder"]
