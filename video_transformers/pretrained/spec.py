"""A backbone's architecture without a registry name: its class and the keyword arguments it was built with
(the model's ``model_args``, nanoGPT's name), as this suite's ``.ckpt`` files (their ``backbone`` entry) and
exported folders (``config.json`` ``model_class`` / ``model_kwargs``) record it::

    {"class": "video_transformers.models.vivit:ViViTSpatioTemporal", "kwargs": {"num_classes": 5, ...}}
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from video_transformers.models.base import VideoTransformer
from video_transformers.pretrained.common import PretrainedError

_PLAIN = (bool, int, float, str, type(None))


def is_plain(value: Any) -> bool:
    """JSON values only (what ``weights_only`` checkpoints and ``config.json`` hold)."""
    if isinstance(value, list | tuple):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """The spec that rebuilds ``model``'s architecture; ``None`` for a model that is not a
    :class:`VideoTransformer` or was built with arguments that are not plain values."""
    kwargs = getattr(model, "model_args", None)
    if not isinstance(model, VideoTransformer) or kwargs is None or not is_plain(kwargs):
        return None
    cls = type(model)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "kwargs": dict(kwargs)}


def resolve_class(path: str, where: str) -> type[VideoTransformer]:
    """The class a spec names: ``module:Name``, a :class:`VideoTransformer` under ``video_transformers.models``."""
    module, _, name = path.partition(":")
    if not module.startswith("video_transformers.models."):
        raise PretrainedError(f"{where}: backbone class {path!r} is not a video_transformers model")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, VideoTransformer)):
        raise PretrainedError(f"{where}: backbone class {path!r} not found (expected a VideoTransformer subclass)")
    return cls


__all__ = ["is_plain", "model_spec", "resolve_class"]
