"""One entry point for initialising a video model from image weights: :func:`init_from_image`, dispatched on
the model's class (``functools.singledispatch``). Each family's module registers its own initialisation with
``@register_image_init(<model class>)``:

* TimeSformer: :func:`video_transformers.pretrained.timesformer.load_image_weights` (timm ViT, section 4 of
  Bertasius et al. 2021); no options.
* ViViT Models 1-4: :func:`video_transformers.pretrained.vivit.load_image_weights` (section 3.4 of Arnab et
  al. 2021); options ``inflation`` and, for Models 2/3, ``temporal_init`` (Model 2 also ``cls_init``).
* UniFormerV2: :func:`video_transformers.pretrained.uniformerv2.init_from_clip` (CLIP image tower); no
  options; sets CLIP's mean/std.

The image source is a timm model name, a local weights file, or a file named after the timm model under
:func:`~video_transformers.pretrained.common.weights_dir` (see ``image_state_dict``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import singledispatch
from typing import Any

from torch import nn

from video_transformers.pretrained.common import PretrainedError


@singledispatch
def _image_init(model: nn.Module, source: str, **options: Any) -> nn.Module:
    known = sorted(c.__name__ for c in _image_init.registry if c is not object)
    raise PretrainedError(f"no image initialisation for {type(model).__name__}; known: {', '.join(known)}")


def register_image_init(cls: type[nn.Module]) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``fn(model, source, **options) -> model`` initialises models of ``cls`` (and subclasses)."""
    return _image_init.register(cls)


def init_from_image(model: nn.Module, source: str, **options: Any) -> nn.Module:
    """Load image weights ``source`` into ``model`` with its family's filter and exact key accounting.

    Returns ``model``. Options the family does not take raise ``TypeError`` naming them.
    """
    fn = _image_init.dispatch(type(model))
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            takes = f"takes options {accepted}" if accepted else "takes no options"
            raise TypeError(f"{type(model).__name__} image initialisation {takes}; got {unknown}")
    return fn(model, source, **options)


__all__ = ["init_from_image", "register_image_init"]
