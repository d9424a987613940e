"""This suite's own Lightning checkpoints (``.ckpt`` from :class:`~video_transformers.lit.VideoClassifier`) as
a :func:`~video_transformers.pretrained.from_pretrained` format, and the backbone construction behind
``VideoClassifier(init_from=...)``.

A checkpoint holds ``hyper_parameters`` (plain types: the classifier's constructor arguments) and
``state_dict`` (``model.*`` = the backbone). The backbone is rebuilt

* from the ``backbone`` entry the classifier writes (:data:`SPEC_KEY`: the :mod:`.spec` of the backbone,
  constructor class and keyword arguments, plus mean/std) when present: this covers backbones whose
  architecture came from another checkpoint (``init_from``), which no registry name describes;
* otherwise from the hyper-parameters: ``create_model(backbone, num_classes, num_frames, img_size,
  **backbone_kwargs)``.

Weights load strictly (every ``model.*`` key, no other); the file is read with ``weights_only=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from video_transformers.models import create_model
from video_transformers.models.base import VideoTransformer
from video_transformers.pretrained.common import (
    PretrainedError,
    from_pretrained,
    load_pretrained,
    load_state_dict_file,
    pickle_mentions,
    register_format,
)
from video_transformers.pretrained.spec import model_spec, resolve_class

log = logging.getLogger(__name__)

SPEC_KEY = "backbone"  # top-level checkpoint entry: {"class", "kwargs", "mean", "std"}


def build_recorded(build: Callable[[], nn.Module]) -> tuple[nn.Module, dict[str, Any] | None]:
    """``build()`` and the spec that rebuilds its architecture (:func:`.spec.model_spec`: the model's class and
    ``model_args``); ``None`` when those arguments are not plain values."""
    model = build()
    return model, model_spec(model)


# -- VideoClassifier(init_from=...) ----------------------------------------------------------------------
def backbone_from_source(
    source: str,
    *,
    num_classes: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
    **overrides: Any,
) -> tuple[VideoTransformer, dict[str, Any] | None]:
    """A backbone read from any :func:`from_pretrained` source, in training mode, and its spec.

    The architecture is the checkpoint's; ``overrides`` (``backbone_kwargs``) replace parts of it. The data's
    ``num_frames`` / ``img_size`` go to the format's loader, which resamples the embeddings, reads its sizes
    with them (scenic's checkpoints do not store them) or fails; a failure names the checkpoint's own sizes. A
    different ``num_classes`` replaces the head with a freshly initialised one (the dropped keys are logged);
    ``None`` keeps the checkpoint's classes.
    """
    sizes = {k: v for k, v in dict(num_frames=num_frames, img_size=img_size).items() if v is not None}
    try:
        model = from_pretrained(source, **overrides, **sizes)
    except PretrainedError as e:
        if sizes:
            _raise_size_mismatch(source, sizes, overrides, e)
        raise
    if num_classes is not None and num_classes != model.num_classes:
        dropped = {k: tuple(v.shape) for k, v in model.head.state_dict().items()}
        log.warning(
            "%s: %d checkpoint classes, %d wanted: head re-initialised, dropped keys %s",
            source,
            model.num_classes,
            num_classes,
            {f"head.{k}": s for k, s in dropped.items()},
        )
        model.reset_classifier(num_classes)
        model.class_names = None
    return model.train(), model_spec(model)


def _raise_size_mismatch(source: str, sizes: dict[str, int], overrides: dict[str, Any], error: Exception) -> None:
    """If the checkpoint loads at its own sizes (given none, or one of the data's: scenic's need one) and
    those differ from the data's, say so naming both (else return)."""
    singles = [{k: v} for k, v in sizes.items()] if len(sizes) > 1 else []
    for given in [{}, *singles]:
        try:
            native = from_pretrained(source, **overrides, **given)
        except PretrainedError:
            continue
        changed = {k: v for k, v in sizes.items() if getattr(native, k) != v}
        if changed:
            trained = {k: getattr(native, k) for k in changed}
            raise PretrainedError(
                f"{source}: the checkpoint is built for {trained} and cannot be adapted to {changed} ({error}). "
                f"Set the data to the checkpoint's sizes (data.num_frames / data.crop_size)."
            ) from error


# -- reading our checkpoints -----------------------------------------------------------------------------
def load_lightning(path: str | Path, *, trust: bool = False, **overrides: Any) -> VideoTransformer:
    """The backbone of a :class:`VideoClassifier` checkpoint, with its class names and normalisation.

    ``overrides`` replace architecture arguments; a different ``num_classes`` leaves the head new.
    """
    path = Path(path)
    ckpt = load_state_dict_file(path, trust=trust)
    if not isinstance(ckpt, dict) or not {"hyper_parameters", "state_dict"} <= set(ckpt):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise PretrainedError(
            f"{path}: expected a Lightning checkpoint with hyper_parameters and state_dict; got {found}"
        )
    hp, spec = ckpt["hyper_parameters"], ckpt.get(SPEC_KEY)
    state_dict = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if not state_dict:
        raise PretrainedError(f"{path}: state_dict has no 'model.*' keys (not a VideoClassifier checkpoint)")
    if spec is not None and "class" in spec:
        model = resolve_class(spec["class"], str(path))(**{**spec["kwargs"], **overrides})
    elif hp.get("init_from"):
        raise PretrainedError(
            f"{path}: fine-tuned from {hp['init_from']!r} but records no '{SPEC_KEY}' entry (its architecture); "
            "rebuild it with VideoClassifier(init_from=...) and load the state dict"
        )
    elif "backbone" not in hp:
        raise PretrainedError(f"{path}: hyper_parameters lack 'backbone' (the registered model name)")
    else:
        sizes = {k: hp[k] for k in ("num_classes", "num_frames", "img_size") if hp.get(k) is not None}
        model = create_model(hp["backbone"], **{**sizes, **(hp.get("backbone_kwargs") or {}), **overrides})
    head_kept = load_pretrained(model, state_dict, str(path))
    if spec is not None and spec.get("mean") is not None:
        model.mean, model.std = tuple(spec["mean"]), tuple(spec["std"])
    names = hp.get("class_names")
    if names and head_kept and len(names) == model.num_classes:
        model.class_names = list(names)
    return model


def _is_lightning(path: Path) -> bool:
    """A ``.ckpt`` torch zip archive whose pickle names Lightning's keys (read, not run)."""
    return pickle_mentions(path, {".ckpt"}, (b"hyper_parameters", b"state_dict", b"pytorch-lightning_version"))


register_format("lightning_ckpt", _is_lightning, load_lightning)

__all__ = ["SPEC_KEY", "backbone_from_source", "build_recorded", "load_lightning"]
