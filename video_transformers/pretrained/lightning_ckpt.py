"""This suite's own Lightning checkpoints (``.ckpt`` from :class:`~video_transformers.lit.VideoClassifier`) as
a :func:`~video_transformers.pretrained.from_pretrained` format, and the backbone construction behind
``VideoClassifier(init_from=...)``.

A checkpoint holds ``hyper_parameters`` (plain types: the classifier's constructor arguments) and
``state_dict`` (``model.*`` = the backbone). The backbone is rebuilt

* from the ``backbone`` entry the classifier writes (:data:`SPEC_KEY`: constructor class, its keyword
  arguments, mean/std) when present: this covers backbones whose architecture came from another
  checkpoint (``init_from``), which no registry name describes;
* otherwise from the hyper-parameters: ``create_model(backbone, num_classes, num_frames, img_size,
  **backbone_kwargs)``.

Weights load strictly (every ``model.*`` key, no other); the file is read with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from video_transformers.models import create_model
from video_transformers.models.base import VideoTransformer
from video_transformers.pretrained.common import (
    PretrainedError,
    from_pretrained,
    load_checked,
    load_state_dict_file,
    register_format,
)

log = logging.getLogger(__name__)

SPEC_KEY = "backbone"  # top-level checkpoint entry: {"class", "kwargs", "mean", "std"}
_PLAIN = (bool, int, float, str, type(None))


# -- recording how a backbone was constructed ------------------------------------------------------------
def _is_plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


@contextlib.contextmanager
def _recording_constructions() -> Iterator[dict[int, tuple[type, dict[str, Any] | None]]]:
    """Record ``id(instance) -> (class, keyword arguments)`` of every :class:`VideoTransformer` built inside
    (the outermost constructor call; ``None`` for positional arguments).

    The family loaders build models from the shapes and configs they read (``TimeSformer(**cfg)``); recording
    the call is how the architecture of any format is known without re-deriving each family's inference.
    """
    calls: dict[int, tuple[type, dict[str, Any] | None]] = {}
    active: set[int] = set()

    def wrap(init: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(init)
        def recorded(self: nn.Module, *args: Any, **kwargs: Any) -> None:
            if id(self) in active:  # a super().__init__ call of the same construction
                return init(self, *args, **kwargs)
            active.add(id(self))
            calls[id(self)] = (type(self), None if args else dict(kwargs))
            try:
                return init(self, *args, **kwargs)
            finally:
                active.discard(id(self))

        return recorded

    originals = {c: c.__dict__["__init__"] for c in _subclasses(VideoTransformer) if "__init__" in c.__dict__}
    for cls, init in originals.items():
        cls.__init__ = wrap(init)
    try:
        yield calls
    finally:
        for cls, init in originals.items():
            cls.__init__ = init


def build_recorded(build: Callable[[], nn.Module]) -> tuple[nn.Module, dict[str, Any] | None]:
    """``build()`` and the spec (class path and plain keyword arguments) that rebuilds its architecture;
    ``None`` when the constructor took positional or non-plain arguments."""
    with _recording_constructions() as calls:
        model = build()
    cls, kwargs = calls.get(id(model), (type(model), None))
    if kwargs is None or not _is_plain(kwargs):
        return model, None
    return model, {"class": f"{cls.__module__}:{cls.__qualname__}", "kwargs": kwargs}


def _resolve_class(path: str, where: str) -> type[VideoTransformer]:
    module, _, name = path.partition(":")
    if not module.startswith("video_transformers.models."):
        raise PretrainedError(f"{where}: backbone class {path!r} is not a video_transformers model")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, VideoTransformer)):
        raise PretrainedError(f"{where}: backbone class {path!r} not found (expected a VideoTransformer subclass)")
    return cls


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

    The architecture is the checkpoint's; ``overrides`` (``backbone_kwargs``) replace parts of it. A
    ``num_frames`` / ``img_size`` that differs from the checkpoint's is passed to the format's loader, which
    resamples its embeddings or fails with the shapes. A different ``num_classes`` replaces the head with a
    freshly initialised one (the dropped keys are logged); ``None`` keeps the checkpoint's classes.
    """
    model, spec = build_recorded(lambda: from_pretrained(source, **overrides))
    sizes = {k: v for k, v in dict(num_frames=num_frames, img_size=img_size).items() if v is not None}
    changed = {k: v for k, v in sizes.items() if getattr(model, k) != v}
    if changed:
        trained = {k: getattr(model, k) for k in changed}
        log.info("%s: checkpoint built for %s, rebuilding for %s", source, trained, changed)
        try:
            model, spec = build_recorded(lambda: from_pretrained(source, **overrides, **changed))
        except PretrainedError as e:
            raise PretrainedError(
                f"{source}: the checkpoint is built for {trained} and cannot be adapted to {changed} ({e}). "
                f"Set the data to the checkpoint's sizes (data.num_frames / data.crop_size)."
            ) from e
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
        if spec is not None:
            spec["kwargs"]["num_classes"] = num_classes
    return model.train(), spec


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
        cls = _resolve_class(spec["class"], str(path))
        model = cls(**{**spec["kwargs"], **overrides})
        saved_classes = spec["kwargs"].get("num_classes")
    elif hp.get("init_from"):
        raise PretrainedError(
            f"{path}: fine-tuned from {hp['init_from']!r} but records no '{SPEC_KEY}' entry (its architecture); "
            "rebuild it with VideoClassifier(init_from=...) and load the state dict"
        )
    else:
        if "backbone" not in hp:
            raise PretrainedError(f"{path}: hyper_parameters lack 'backbone' (the registered model name)")
        sizes = {k: hp[k] for k in ("num_frames", "img_size") if hp.get(k) is not None}
        saved_classes = hp.get("num_classes")
        kwargs = {"num_classes": saved_classes, **sizes, **(hp.get("backbone_kwargs") or {}), **overrides}
        model = create_model(hp["backbone"], **{k: v for k, v in kwargs.items() if v is not None})
    missing: list[str] = []
    if model.num_classes != saved_classes:
        log.info("%s: head for %s classes dropped (model has %d)", path, saved_classes, model.num_classes)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
        missing = ["head.*"] if model.num_classes > 0 else []
    try:
        load_checked(model, state_dict, missing=missing)
    except PretrainedError as e:
        raise PretrainedError(f"{path}: {e}") from e
    if spec is not None and spec.get("mean") is not None:
        model.mean, model.std = tuple(spec["mean"]), tuple(spec["std"])
    names = hp.get("class_names")
    if names and not missing and len(names) == model.num_classes:
        model.class_names = list(names)
    return model


def _is_lightning(path: Path) -> bool:
    """A ``.ckpt`` torch zip archive whose pickle names Lightning's keys (read, not run)."""
    if not (path.is_file() and path.suffix == ".ckpt" and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if not pickles:
            return False
        text = archive.read(pickles[0])
    return all(k in text for k in (b"hyper_parameters", b"state_dict", b"pytorch-lightning_version"))


register_format("lightning_ckpt", _is_lightning, load_lightning)

__all__ = ["SPEC_KEY", "backbone_from_source", "build_recorded", "load_lightning"]
