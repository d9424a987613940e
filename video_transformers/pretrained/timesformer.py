"""Pretrained weights for TimeSformer (Bertasius et al. 2021): image-ViT initialisation, official ``.pyth``
checkpoints and Hugging Face ``TimesformerForVideoClassification`` folders.

* :func:`timm_filter_fn` adapts a timm ViT (the paper initialises from ImageNet-1K/21K ViT-B, section 4):
  ``pos_embed`` resampled to the new grid, ``time_embed`` zero, every added attention step
  (``temporal_*``, ``width_*``, ``local_*``) starts as a copy of the spatial ``norm1``/``attn`` with a zero
  ``*_fc``; with divided (and space-only) attention a static clip then gives the image model's CLS
  features at step 0 (joint, axial and L+G attend over other token sets, so they only start close to it).
* :func:`convert_official` reads the official release (facebookresearch/TimeSformer): ``model_state``,
  keys prefixed ``model.``, a Conv2d patch kernel. Its tokens are ordered ``(h w t)`` and ours ``(t h w)``,
  but no weight depends on the order (``pos_embed`` is per ``(h w)``, ``time_embed`` per ``t``), so
  conversion only renames and reshapes the patch kernel.
* :func:`convert_hf` reads a ``transformers`` checkpoint folder (``config.json`` + weights).

A Hugging Face folder states its architecture in ``config.json``; every field there is used (and checked
against the tensor shapes), transformers' defaults stand in for absent ones that no shape holds, and shapes
give the rest. An official ``.pyth`` states nothing: the architecture is inferred from tensor shapes, except
the head count, which no shape holds: it is taken as ``width // 64`` (every released TimeSformer is ViT-B/16:
12 heads of 64) unless ``num_heads=`` is given. A space-only ``.pyth`` has no ``time_embed`` and runs at any
frame count; its ``num_frames`` is only nominal (``DATA.NUM_FRAMES`` of its saved config, else the official
default 8).

Checkpoints loaded at another ``num_frames`` / ``img_size`` get their embeddings resampled by nearest
interpolation, what the official forward does at run time (vit.py:255-287), so the loaded model gives the
official model's outputs at that size. Image initialisation resamples ``pos_embed`` bicubically (timm's way).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from video_transformers.models.base import IMAGENET_MEAN, IMAGENET_STD
from video_transformers.models.timesformer import (
    TIMESFORMER_MEAN,
    TIMESFORMER_STD,
    TimeSformer,
    resample_pos_embed_nearest,
    resample_time_embed_nearest,
)
from video_transformers.pretrained.common import (
    PretrainedError,
    config_model_type,
    hf_weights,
    image_state_dict,
    load_checked,
    load_pretrained,
    load_state_dict_file,
    pickle_mentions,
    read_json,
    register_format,
)
from video_transformers.pretrained.hf_config import VIT_FIELDS, vit_kwargs
from video_transformers.pretrained.hf_keys import LAYER, rename, vit_renames
from video_transformers.pretrained.image_init import register_image_init

log = logging.getLogger(__name__)

HEAD_DIM = 64  # ViT-B/L/H head width; the convention used to infer num_heads from a checkpoint's width
_STEP = re.compile(r"^(blocks\.\d+)\.(\w+)_(norm1|attn|fc)\.(.+)$")  # an added attention step's parameter


# -- embeddings -----------------------------------------------------------------------------------------
def resample_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(1, 1+h*w, D)`` -> ``(1, 1+grid[0]*grid[1], D)``, bicubic on the patch part (timm's resampling,
    for image initialisation)."""
    from timm.layers import resample_abs_pos_embed

    if pos_embed.shape[1] == 1 + grid[0] * grid[1]:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=list(grid), num_prefix_tokens=1)


def _conv3d_kernel(sd: dict[str, torch.Tensor]) -> None:
    kernel = sd.get("patch_embed.proj.weight")
    if kernel is not None and kernel.ndim == 4:
        sd["patch_embed.proj.weight"] = kernel.unsqueeze(2)  # (D, C, p, p) -> Conv3d (D, C, 1, p, p)


def _fit_checkpoint_embeddings(sd: dict[str, torch.Tensor], model: TimeSformer, source: str) -> None:
    """Resample a video checkpoint's ``pos_embed`` / ``time_embed`` in place to ``model``'s grid by nearest
    interpolation, as the official forward would at that input size (vit.py:255-287)."""
    _, h, w = model.patch_embed.grid_size
    for key, value in (("pos_embed", (h, w)), ("time_embed", model.num_frames)):
        if key not in sd or getattr(model, key) is None or sd[key].shape == getattr(model, key).shape:
            continue
        before = tuple(sd[key].shape)
        resample = resample_pos_embed_nearest if key == "pos_embed" else resample_time_embed_nearest
        sd[key] = resample(sd[key], value)
        log.info("%s: %s %s resampled to %s (nearest, as vit.py:255-287)", source, key, before, tuple(sd[key].shape))
    _conv3d_kernel(sd)


# -- image initialisation ------------------------------------------------------------------------------
def timm_filter_fn(state_dict: dict[str, torch.Tensor], model: TimeSformer) -> dict[str, torch.Tensor]:
    """A timm ViT state dict -> one for ``model`` (any attention scheme); pure, returns a new dict.

    ``pos_embed`` is resampled to the model's grid, ``time_embed`` is zero, each added step
    ``<name>_norm1``/``<name>_attn`` copies the block's ``norm1``/``attn`` and ``<name>_fc`` is zero (the
    official TimeSformer initialisation), the patch kernel becomes a one-frame Conv3d kernel and the image
    head is dropped. Keys that have no place in the model are kept, so :func:`load_checked` names them.
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
    if "pos_embed" in sd:
        sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], model.patch_embed.grid_size[1:])
    _conv3d_kernel(sd)
    own = model.state_dict()
    if "time_embed" in own:
        sd["time_embed"] = torch.zeros_like(own["time_embed"])
    for key, value in own.items():
        m = _STEP.match(key)
        if m is None:
            continue
        block, _, part, rest = m.groups()
        if part == "fc":
            sd[key] = torch.zeros_like(value)  # zero-init: the new step starts as the identity
        else:
            src = f"{block}.{part}.{rest}"
            if src not in sd:
                raise PretrainedError(f"image weights lack {src!r}, needed to initialise {key!r}")
            sd[key] = sd[src].clone()
    return sd


@register_image_init(TimeSformer)
def load_image_weights(model: TimeSformer, name_or_path: str) -> TimeSformer:
    """Initialise ``model`` from an image ViT (timm name or local file) with :func:`timm_filter_fn`; the
    video head is the only parameter left to train from scratch."""
    sd = timm_filter_fn(image_state_dict(name_or_path), model)
    missing = ["head.weight", "head.bias"] if isinstance(model.head, nn.Linear) else []
    load_checked(model, sd, missing=missing)
    return model


# -- architecture from shapes ---------------------------------------------------------------------------
NOMINAL_FRAMES = 8  # official VisionTransformer's default num_frames (vit.py:183), for space-only checkpoints


def shape_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The :class:`TimeSformer` arguments that the tensors of ``sd`` (our key names) determine: all but the
    head count, and ``num_frames`` only when there is a ``time_embed``."""

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise PretrainedError(f"not a TimeSformer state dict: key {key!r} is missing")
        return sd[key]

    width = need("cls_token").shape[-1]
    depth = 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("blocks.")), default=-1)
    if depth == 0:
        raise PretrainedError("not a TimeSformer state dict: no 'blocks.<i>.*' keys")
    kernel = need("patch_embed.proj.weight")
    patch = kernel.shape[-1]
    num_patches = need("pos_embed").shape[1] - 1
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise PretrainedError(f"pos_embed: {num_patches} patch positions is not a square grid")
    if "blocks.0.temporal_attn.qkv.weight" in sd:
        attention_type = "divided_space_time"
    elif "time_embed" in sd:
        attention_type = "joint_space_time"
    else:
        attention_type = "space_only"
    head = sd.get("head.weight")
    cfg = dict(
        num_classes=0 if head is None else head.shape[0],
        img_size=side * patch,
        patch_size=patch,
        in_chans=kernel.shape[1],
        embed_dim=width,
        depth=depth,
        mlp_ratio=need("blocks.0.mlp.fc1.weight").shape[0] / width,
        qkv_bias="blocks.0.attn.qkv.bias" in sd,
        attention_type=attention_type,
    )
    if "time_embed" in sd:
        cfg["num_frames"] = sd["time_embed"].shape[1]
    return cfg


def infer_config(sd: dict[str, torch.Tensor], *, num_heads: int | None = None) -> dict[str, Any]:
    """:class:`TimeSformer` arguments from a state dict in our key names: :func:`shape_config`, ``num_heads``
    (default ``width // 64``) and, without a ``time_embed``, the nominal :data:`NOMINAL_FRAMES`."""
    cfg = shape_config(sd)
    width = cfg["embed_dim"]
    if num_heads is None:
        if width % HEAD_DIM:
            raise PretrainedError(
                f"cls_token: width {width} is not a multiple of {HEAD_DIM}; the head count is not stored in "
                "the checkpoint, pass num_heads="
            )
        num_heads = width // HEAD_DIM
    return {"num_frames": NOMINAL_FRAMES, **cfg, "num_heads": num_heads}


def build_from_state_dict(
    sd: dict[str, torch.Tensor], source: str, *, defaults: dict[str, Any] | None = None, **overrides: Any
) -> TimeSformer:
    """A :class:`TimeSformer` with the inferred architecture (``defaults``, e.g. a config file's fields, and
    ``overrides`` on top) and ``sd`` loaded with exact key accounting. A changed ``num_classes`` leaves a
    fresh head; a changed ``num_frames`` / ``img_size`` resamples the embeddings by nearest interpolation."""
    defaults = defaults or {}
    num_heads = overrides.get("num_heads", defaults.get("num_heads"))
    cfg = {**infer_config(sd, num_heads=num_heads), **defaults, **overrides}
    model = TimeSformer(**cfg)
    if "time_embed" in sd and model.time_embed is None:
        raise PretrainedError(f"{source}: checkpoint has time_embed but attention_type={cfg['attention_type']!r}")
    sd = dict(sd)
    _fit_checkpoint_embeddings(sd, model, source)
    load_pretrained(model, sd, source)
    model.model_name = f"timesformer({cfg['attention_type']})"
    return model


# -- official release (.pyth) ---------------------------------------------------------------------------
def convert_official(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official TimeSformer checkpoint (``{"model_state": {"model.<key>": ...}, ...}``) -> our key names.

    Parameter names are the official ones already; only the ``model.`` prefix goes (the patch kernel is
    made 3D when loading).
    """
    if "model_state" not in checkpoint:
        raise PretrainedError(
            f"expected an official checkpoint with a 'model_state' key; got keys {sorted(checkpoint)[:8]}"
        )
    sd = checkpoint["model_state"]
    prefixed = all(k.startswith("model.") for k in sd)
    return {(k[len("model.") :] if prefixed else k): v for k, v in sd.items()}


def _official_cfg(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The training config that slowfast-style checkpoints store as a YAML string under ``cfg`` ({} if none)."""
    text = checkpoint.get("cfg")
    if not isinstance(text, str):
        return {}
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError:
        log.warning("checkpoint cfg is not valid YAML; ignoring it")
        return {}
    return cfg if isinstance(cfg, dict) else {}


def load_official(path: str | Path, *, trust: bool = False, **overrides: Any) -> TimeSformer:
    """A TimeSformer from an official ``.pyth`` file; normalisation mean/std 0.45/0.225 as it was trained."""
    checkpoint = load_state_dict_file(path, trust=trust)
    sd = convert_official(checkpoint)
    defaults = {}
    if "time_embed" not in sd and "num_frames" not in overrides:
        # Space-only: no weight depends on the frame count and the model runs at any; the nominal clip
        # length (for data pipelines) is the saved config's DATA.NUM_FRAMES, else the official default.
        frames = _official_cfg(checkpoint).get("DATA", {}).get("NUM_FRAMES")
        defaults["num_frames"] = frames or NOMINAL_FRAMES
        log.info(
            "%s: space-only, runs at any frame count; nominal num_frames=%d (%s)",
            path,
            defaults["num_frames"],
            "its cfg's DATA.NUM_FRAMES" if frames else "official default; pass num_frames= to change",
        )
    model = build_from_state_dict(sd, str(path), defaults=defaults, **overrides)
    model.mean, model.std = TIMESFORMER_MEAN, TIMESFORMER_STD
    return model


def _is_official(path: Path) -> bool:
    """A ``.pyth`` torch zip archive whose pickled key names are the official TimeSformer's (read, not run)."""
    return pickle_mentions(path, {".pyth"}, (b"model_state", b"model.pos_embed", b"model.blocks.0.attn.qkv.weight"))


# -- Hugging Face transformers --------------------------------------------------------------------------
_HF_RENAMES = [  # TimeSformer's own rows (temporal attention, its fused qkv), then the shared ViT rows
    (r"^embeddings\.time_embeddings$", "time_embed"),
    (LAYER + r"attention\.attention\.qkv\.", r"blocks.\1.attn.qkv."),
    (LAYER + r"temporal_attention\.attention\.qkv\.", r"blocks.\1.temporal_attn.qkv."),
    (LAYER + r"temporal_attention\.output\.dense\.", r"blocks.\1.temporal_attn.proj."),
    (LAYER + r"temporal_layernorm\.", r"blocks.\1.temporal_norm1."),
    (LAYER + r"temporal_dense\.", r"blocks.\1.temporal_fc."),
    *vit_renames(blocks=r"blocks.\1.", norm="norm."),
]
# TimesformerConfig fields -> TimeSformer arguments (transformers models/timesformer/configuration_timesformer.py)
_HF_FIELDS = {
    **VIT_FIELDS,
    "patch_size": "patch_size",
    "attention_type": "attention_type",
    "hidden_dropout_prob": "drop_rate",
    "attention_probs_dropout_prob": "attn_drop_rate",
    "drop_path_rate": "drop_path_rate",
}
# TimesformerConfig's defaults for the fields no tensor shape holds: what transformers uses when config.json
# lacks them (configuration_timesformer.py, class TimesformerConfig).
_HF_DEFAULTS = {
    "num_attention_heads": 12,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-6,
    "drop_path_rate": 0.0,
}


def convert_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``TimesformerForVideoClassification`` (or ``TimesformerModel``) keys -> ours; unknown keys raise."""
    out = {}
    for key, value in state_dict.items():
        new = rename(key.removeprefix("timesformer."), _HF_RENAMES)
        if new is None:
            raise PretrainedError(f"Hugging Face TimeSformer key {key!r} has no counterpart in our model")
        out[new] = value
    return out


def hf_config_to_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """``TimesformerConfig`` fields -> :class:`TimeSformer` arguments: every architecture field the config
    has (heads, eps, activation, qkv bias, frames, size, dropouts), transformers' defaults for absent fields
    that no tensor shape holds (:data:`_HF_DEFAULTS`); absent shape fields are left to the weights."""
    return vit_kwargs({**_HF_DEFAULTS, **config}, _HF_FIELDS)


def check_against_shapes(kwargs: dict[str, Any], sd: dict[str, torch.Tensor], source: str) -> None:
    """Raise if a stated architecture argument contradicts the tensors (naming the config field)."""
    shapes = shape_config(sd)
    names = {arg: field for field, arg in _HF_FIELDS.items()} | {"mlp_ratio": "intermediate_size / hidden_size"}
    for arg, value in kwargs.items():
        if arg in shapes and arg != "num_classes":
            same = math.isclose(value, shapes[arg]) if arg == "mlp_ratio" else value == shapes[arg]
            if not same:
                raise PretrainedError(
                    f"{source}: {names.get(arg, arg)} gives {arg}={value!r} but the weights have {shapes[arg]!r}"
                )


def load_hf(path: str | Path, **overrides: Any) -> TimeSformer:
    """A TimeSformer from a ``transformers`` folder; class names from ``id2label``, mean/std from
    ``preprocessor_config.json`` (ImageNet's when absent). Input stays ``(B, C, T, H, W)``: HF's
    ``(B, T, C, H, W)`` clips need ``x.transpose(1, 2)``."""
    folder = Path(path)
    config = read_json(folder / "config.json")
    if config.get("model_type") != "timesformer":
        raise PretrainedError(
            f"{folder / 'config.json'}: model_type {config.get('model_type')!r}, expected 'timesformer'"
        )
    kwargs = hf_config_to_kwargs(config)
    kwargs.pop("num_classes", None)  # the classifier's shape decides (a TimesformerModel folder has none)
    sd = convert_hf(hf_weights(folder))
    check_against_shapes(kwargs, sd, str(folder / "config.json"))
    model = build_from_state_dict(sd, str(folder), defaults=kwargs, **overrides)
    id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(model.num_classes)]
    if any(n != f"LABEL_{i}" for i, n in enumerate(names)):  # transformers' placeholder names carry nothing
        model.class_names = names
    pre = folder / "preprocessor_config.json"
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if pre.is_file():
        pre_cfg = read_json(pre)
        mean, std = tuple(pre_cfg.get("image_mean", mean)), tuple(pre_cfg.get("image_std", std))
    model.mean, model.std = mean, std
    return model


def _is_hf(path: Path) -> bool:
    return config_model_type(path) == "timesformer"


register_format("timesformer_official", _is_official, load_official)
register_format("hf_timesformer", _is_hf, load_hf)
