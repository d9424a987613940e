"""One entry point for initialising a video model from image weights: :func:`init_from_image` picks the
family's own initialisation by the model's type.

* TimeSformer: :func:`video_transformers.pretrained.timesformer.load_image_weights` (timm ViT, section 4 of
  Bertasius et al. 2021); no options.
* ViViT Models 1-4: :func:`video_transformers.pretrained.vivit.load_image_weights` (section 3.4 of Arnab et
  al. 2021); options ``inflation`` and, for Models 2/3, ``temporal_init``.
* UniFormerV2: :func:`video_transformers.pretrained.uniformerv2.init_from_clip` (CLIP image tower); no
  options; sets CLIP's mean/std.

The image source is a timm model name, a local weights file, or a file named after the timm model under
:func:`~video_transformers.pretrained.common.weights_dir` (see ``image_state_dict``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from video_transformers.models.timesformer import TimeSformer
from video_transformers.models.uniformerv2 import UniFormerV2
from video_transformers.pretrained import timesformer, uniformerv2, vivit
from video_transformers.pretrained.common import PretrainedError


def init_from_image(model: nn.Module, source: str, **options: Any) -> nn.Module:
    """Load image weights ``source`` into ``model`` with its family's filter and exact key accounting.

    Returns ``model``. Options the family does not take raise ``TypeError`` naming them.
    """
    if isinstance(model, TimeSformer):
        _no_options("TimeSformer", options)
        return timesformer.load_image_weights(model, source)
    if type(model) in vivit.FILTERS:
        return vivit.load_image_weights(model, source, **options)
    if isinstance(model, UniFormerV2):
        _no_options("UniFormerV2", options)
        return uniformerv2.init_from_clip(model, source)
    raise PretrainedError(
        f"no image initialisation for {type(model).__name__}; known: TimeSformer, "
        f"{', '.join(c.__name__ for c in vivit.FILTERS)}, UniFormerV2"
    )


def _no_options(family: str, options: dict[str, Any]) -> None:
    if options:
        raise TypeError(f"{family} image initialisation takes no options; got {sorted(options)}")


__all__ = ["init_from_image"]
