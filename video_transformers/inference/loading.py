"""Load a trained model together with the data settings it was trained with.

A ``vt fit`` checkpoint (Lightning ``.ckpt``) is read by ``from_pretrained``'s ``lightning_ckpt`` format
(architecture from its hyper-parameters, strict weights, class names); beside it the checkpoint holds the data
module's hyper-parameters (``sampling``, ``num_frames``, ``sampling_rate``, ``fps``, ``crop_size``,
``eval_short_side``, ``mean``, ``std``): inference samples, decodes and normalises videos with the data module's
own sampler and transform (:meth:`ClipSpec.sampler`, :meth:`ClipSpec.eval_transform`), exactly as ``vt test``
did. Any other source that :func:`video_transformers.pretrained.from_pretrained` reads (official or Hugging Face
checkpoints) gets the model's own ``num_frames`` / ``img_size`` / ``mean`` / ``std`` and time-window sampling as
given by the caller (``--sampling_rate`` / ``--fps``).
"""

from __future__ import annotations

import logging
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from video_transformers.data.sampling import ClipSampler, parse_sampling
from video_transformers.data.transforms import EvalTransform
from video_transformers.pretrained import PretrainedError, from_pretrained, load_state_dict_file, resolve_source
from video_transformers.pretrained.hf_folder import clip_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """How one model input is cut from a video: ``num_frames`` frames, one every ``sampling_rate`` frames
    at ``fps``, short side resized to ``short_side``, ``crop_size`` square crops, ``(x/255 - mean) / std``."""

    num_frames: int
    sampling_rate: int
    fps: float
    crop_size: int
    short_side: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    sampling: str = "time"  # data.sampling: which frames make a clip (time window, 8x32 strides, u8 segments)

    @property
    def clip_duration(self) -> float:
        """Seconds one clip spans (the data module's ``num_frames * sampling_rate / fps``)."""
        return self.num_frames * self.sampling_rate / self.fps

    @property
    def frame_step(self) -> float:
        """Seconds between two sampled frames."""
        return self.sampling_rate / self.fps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sampler(self) -> ClipSampler:
        """The data module's sampler for these settings (``vt test`` cuts its clips with the same one)."""
        sampling = parse_sampling(self.sampling, num_frames=self.num_frames, sampling_rate=self.sampling_rate)
        return ClipSampler(sampling, self.clip_duration)

    def eval_transform(self) -> EvalTransform:
        return EvalTransform(crop_size=self.crop_size, short_side=self.short_side, mean=self.mean, std=self.std)


_CLIP_FIELDS = frozenset(f.name for f in fields(ClipSpec))
_REQUIRED_CLIP_FIELDS = frozenset(f.name for f in fields(ClipSpec) if f.default is MISSING)  # not sampling


@dataclass
class LoadedModel:
    """A model in eval mode on ``device``, its class names and its :class:`ClipSpec`."""

    model: nn.Module
    class_names: list[str]
    spec: ClipSpec
    source: str
    device: torch.device

    @torch.no_grad()
    def logits(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` normalised video -> ``(B, num_classes)`` float32 logits on the CPU."""
        return self.model(video.to(self.device)).float().cpu()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device}: CUDA is not available on this machine")
    return dev


def is_lightning_checkpoint(obj: Any) -> bool:
    hp = obj.get("hyper_parameters") if isinstance(obj, dict) else None
    return isinstance(hp, dict) and isinstance(obj.get("state_dict"), dict)


def _spec_from_lightning(ckpt: dict[str, Any], model: nn.Module) -> ClipSpec:
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    if not dm:
        log.warning("checkpoint has no data-module hparams; using the model's sizes and normalisation")
    crop = int(dm.get("crop_size", model.img_size))
    return ClipSpec(
        num_frames=int(dm.get("num_frames", model.num_frames)),
        sampling_rate=int(dm.get("sampling_rate", 1)),
        fps=float(dm.get("fps", 30.0)),
        crop_size=crop,
        short_side=int(dm.get("eval_short_side", crop)),
        # data.mean/std None means "the model's" (VideoDataModule.normalisation); from_pretrained restores those
        mean=tuple(float(v) for v in (dm.get("mean") or model.mean)),
        std=tuple(float(v) for v in (dm.get("std") or model.std)),
        sampling=str(dm.get("sampling", "time")),
    )


def load_model(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    sampling_rate: int | None = None,
    fps: float | None = None,
    short_side: int | None = None,
    trust: bool = False,
) -> LoadedModel:
    """Load ``source`` (a ``vt fit`` checkpoint, or anything ``from_pretrained`` reads: paths, Hugging Face
    Hub ids, catalog names) for inference.

    ``sampling_rate`` / ``fps`` / ``short_side`` override the checkpoint's data settings (foreign
    checkpoints carry none: they default to every 4th frame at 30 fps and a short side of
    ``img_size * 256 / 224``, the usual Kinetics evaluation).
    """
    path = resolve_source(source)  # a local path, or a hub id / catalog name fetched through huggingface_hub
    device = resolve_device(device) if isinstance(device, str) else device
    ckpt = load_state_dict_file(path, trust=trust) if path.is_file() and path.suffix == ".ckpt" else None
    if ckpt is not None and is_lightning_checkpoint(ckpt):
        # the model through the lightning_ckpt format (strict weights, init_from backbones); the clip settings
        # from the data module's hparams stored beside it
        model = from_pretrained(path, format="lightning_ckpt", trust=trust)
        spec = _spec_from_lightning(ckpt, model)
    elif (clip := clip_settings(path)) is not None and _REQUIRED_CLIP_FIELDS <= set(clip):
        model = from_pretrained(path)  # an exported folder: it records how its clips were cut
        spec = ClipSpec(**{k: clip[k] for k in _CLIP_FIELDS & set(clip)})
    else:
        model = from_pretrained(path)
        crop = int(model.img_size)
        spec = ClipSpec(
            num_frames=int(model.num_frames),
            sampling_rate=4,
            fps=30.0,
            crop_size=crop,
            short_side=round(crop * 256 / 224),
            mean=tuple(model.mean),
            std=tuple(model.std),
        )
    overrides = {k: v for k, v in dict(sampling_rate=sampling_rate, fps=fps, short_side=short_side).items() if v}
    spec = replace(spec, **overrides)
    names = list(getattr(model, "class_names", None) or [f"class_{i}" for i in range(model.num_classes)])
    if len(names) != model.num_classes:
        raise PretrainedError(f"{path}: {len(names)} class names for {model.num_classes} classes")
    model = model.to(device).eval()
    name = getattr(model, "model_name", "") or type(model).__name__
    log.info("loaded %s (%s) on %s; clip spec %s", source, name, device, spec)
    return LoadedModel(model=model, class_names=names, spec=spec, source=str(source), device=device)
