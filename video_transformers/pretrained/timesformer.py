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

The architecture of a checkpoint is inferred from tensor shapes, except the head count, which no shape
holds: it is taken as ``width // 64`` (every released TimeSformer is ViT-B/16: 12 heads of 64) unless
``num_heads=`` is given.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from video_transformers.models.base import IMAGENET_MEAN, IMAGENET_STD
from video_transformers.models.registry import create_model
from video_transformers.models.timesformer import TIMESFORMER_MEAN, TIMESFORMER_STD, TimeSformer
from video_transformers.pretrained.common import (
    PretrainedError,
    image_state_dict,
    load_checked,
    load_state_dict_file,
    register_format,
)

log = logging.getLogger(__name__)

HEAD_DIM = 64  # ViT-B/L/H head width; the convention used to infer num_heads from a checkpoint's width
_STEP = re.compile(r"^(blocks\.\d+)\.(\w+)_(norm1|attn|fc)\.(.+)$")  # an added attention step's parameter


# -- embeddings shared by every source -----------------------------------------------------------------
def resample_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(1, 1+h*w, D)`` -> ``(1, 1+grid[0]*grid[1], D)``, bicubic on the patch part (timm's resampling)."""
    from timm.layers import resample_abs_pos_embed

    if pos_embed.shape[1] == 1 + grid[0] * grid[1]:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=list(grid), num_prefix_tokens=1)


def resample_time_embed(time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(1, T, D)`` -> ``(1, num_frames, D)`` by linear interpolation over time (official code: nearest)."""
    if time_embed.shape[1] == num_frames:
        return time_embed
    y = F.interpolate(time_embed.transpose(1, 2), size=num_frames, mode="linear", align_corners=False)
    return y.transpose(1, 2)


def _fit_embeddings(sd: dict[str, torch.Tensor], model: TimeSformer) -> None:
    """Resample ``pos_embed`` / ``time_embed`` in place to the model's token grid; 2D patch kernels -> 3D."""
    _, h, w = model.patch_embed.grid_size
    if "pos_embed" in sd:
        sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], (h, w))
    if "time_embed" in sd and model.time_embed is not None:
        sd["time_embed"] = resample_time_embed(sd["time_embed"], model.time_embed.shape[1])
    kernel = sd.get("patch_embed.proj.weight")
    if kernel is not None and kernel.ndim == 4:
        sd["patch_embed.proj.weight"] = kernel.unsqueeze(2)  # (D, C, p, p) -> Conv3d (D, C, 1, p, p)


# -- image initialisation ------------------------------------------------------------------------------
def timm_filter_fn(state_dict: dict[str, torch.Tensor], model: TimeSformer) -> dict[str, torch.Tensor]:
    """A timm ViT state dict -> one for ``model`` (any attention scheme); pure, returns a new dict.

    ``pos_embed`` is resampled to the model's grid, ``time_embed`` is zero, each added step
    ``<name>_norm1``/``<name>_attn`` copies the block's ``norm1``/``attn`` and ``<name>_fc`` is zero (the
    official TimeSformer initialisation), the patch kernel becomes a one-frame Conv3d kernel and the image
    head is dropped. Keys that have no place in the model are kept, so :func:`load_checked` names them.
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
    _fit_embeddings(sd, model)
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


def load_image_weights(model: TimeSformer, name_or_path: str) -> TimeSformer:
    """Initialise ``model`` from an image ViT (timm name or local file) with :func:`timm_filter_fn`; the
    video head is the only parameter left to train from scratch."""
    sd = timm_filter_fn(image_state_dict(name_or_path), model)
    missing = ["head.weight", "head.bias"] if isinstance(model.head, nn.Linear) else []
    load_checked(model, sd, missing=missing)
    return model


# -- architecture from shapes ---------------------------------------------------------------------------
def infer_config(sd: dict[str, torch.Tensor], *, num_heads: int | None = None) -> dict[str, Any]:
    """:class:`TimeSformer` arguments from a state dict in our key names (see the module docstring)."""

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
    side = round(num_patches**0.5)
    if side * side != num_patches:
        raise PretrainedError(f"pos_embed: {num_patches} patch positions is not a square grid")
    if num_heads is None:
        if width % HEAD_DIM:
            raise PretrainedError(
                f"cls_token: width {width} is not a multiple of {HEAD_DIM}; the head count is not stored in "
                "the checkpoint, pass num_heads="
            )
        num_heads = width // HEAD_DIM
    if "blocks.0.temporal_attn.qkv.weight" in sd:
        attention_type = "divided_space_time"
    elif "time_embed" in sd:
        attention_type = "joint_space_time"
    else:
        attention_type = "space_only"
    head = sd.get("head.weight")
    return dict(
        num_classes=0 if head is None else head.shape[0],
        img_size=side * patch,
        num_frames=sd["time_embed"].shape[1] if "time_embed" in sd else 8,
        patch_size=patch,
        in_chans=kernel.shape[1],
        embed_dim=width,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=need("blocks.0.mlp.fc1.weight").shape[0] / width,
        qkv_bias="blocks.0.attn.qkv.bias" in sd,
        attention_type=attention_type,
    )


def build_from_state_dict(
    sd: dict[str, torch.Tensor], source: str, *, defaults: dict[str, Any] | None = None, **overrides: Any
) -> TimeSformer:
    """A :class:`TimeSformer` with the inferred architecture (``defaults`` and ``overrides`` on top) and
    ``sd`` loaded with exact key accounting. A changed ``num_classes`` leaves a fresh head; a changed
    ``num_frames`` / ``img_size`` resamples the embeddings."""
    cfg = {**infer_config(sd, num_heads=overrides.get("num_heads")), **(defaults or {}), **overrides}
    model = TimeSformer(**cfg)
    sd = dict(sd)
    missing: list[str] = []
    if "head.weight" in sd and sd["head.weight"].shape[0] != cfg["num_classes"]:
        log.info(
            "%s: head for %d classes dropped (model has %d)", source, sd["head.weight"].shape[0], cfg["num_classes"]
        )
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        missing = ["head.*"] if cfg["num_classes"] > 0 else []
    if "time_embed" in sd and model.time_embed is None:
        raise PretrainedError(f"{source}: checkpoint has time_embed but attention_type={cfg['attention_type']!r}")
    _fit_embeddings(sd, model)
    try:
        load_checked(model, sd, missing=missing)
    except PretrainedError as e:
        raise PretrainedError(f"{source}: {e}") from e
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
    if "time_embed" not in sd:  # space-only: the frame count is only in the saved config (DATA.NUM_FRAMES)
        frames = _official_cfg(checkpoint).get("DATA", {}).get("NUM_FRAMES")
        if frames is None and "num_frames" not in overrides:
            log.warning("%s: no time_embed and no DATA.NUM_FRAMES in its cfg; assuming 8 frames", path)
        defaults["num_frames"] = frames or 8
    model = build_from_state_dict(sd, str(path), defaults=defaults, **overrides)
    model.mean, model.std = TIMESFORMER_MEAN, TIMESFORMER_STD
    return model


def _is_official(path: Path) -> bool:
    """A ``.pyth`` torch zip archive whose pickled key names are the official TimeSformer's (read, not run)."""
    if not (path.is_file() and path.suffix == ".pyth" and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if not pickles:
            return False
        text = archive.read(pickles[0])
    return all(k in text for k in (b"model_state", b"model.pos_embed", b"model.blocks.0.attn.qkv.weight"))


# -- Hugging Face transformers --------------------------------------------------------------------------
_HF_RENAMES = [  # (regex on the HF key, our key), first match wins
    (r"^timesformer\.embeddings\.cls_token$", "cls_token"),
    (r"^timesformer\.embeddings\.position_embeddings$", "pos_embed"),
    (r"^timesformer\.embeddings\.time_embeddings$", "time_embed"),
    (r"^timesformer\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.attention\.attention\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.", r"blocks.\1.temporal_attn.qkv."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.", r"blocks.\1.temporal_attn.proj."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_layernorm\.", r"blocks.\1.temporal_norm1."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_dense\.", r"blocks.\1.temporal_fc."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^timesformer\.layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]
_HF_ACT = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}


def convert_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``TimesformerForVideoClassification`` (or ``TimesformerModel``) keys -> ours; unknown keys raise."""
    out = {}
    for key, value in state_dict.items():
        k = key if key.startswith(("timesformer.", "classifier.")) else f"timesformer.{key}"
        for pattern, repl in _HF_RENAMES:
            new, n = re.subn(pattern, repl, k)
            if n:
                out[new] = value
                break
        else:
            raise PretrainedError(f"Hugging Face TimeSformer key {key!r} has no counterpart in our model")
    return out


def hf_config_to_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """``TimesformerConfig`` fields -> :class:`TimeSformer` arguments (eps, activation, dropouts included)."""
    act = config.get("hidden_act", "gelu")
    if act not in _HF_ACT:
        raise PretrainedError(f"config.json: hidden_act {act!r} is not supported; expected one of {sorted(_HF_ACT)}")
    width = config["hidden_size"]
    return dict(
        num_classes=len(config.get("id2label") or {}) or config.get("num_labels", 0),
        img_size=config["image_size"],
        num_frames=config["num_frames"],
        patch_size=config["patch_size"],
        in_chans=config.get("num_channels", 3),
        embed_dim=width,
        depth=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        mlp_ratio=config["intermediate_size"] / width,
        qkv_bias=config.get("qkv_bias", True),
        attention_type=config.get("attention_type", "divided_space_time"),
        drop_rate=config.get("hidden_dropout_prob", 0.0),
        attn_drop_rate=config.get("attention_probs_dropout_prob", 0.0),
        drop_path_rate=float(config.get("drop_path_rate", 0.0)),
        norm_eps=config.get("layer_norm_eps", 1e-12),  # transformers' default when the field is absent
        act=_HF_ACT[act],
    )


def _hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return load_state_dict_file(folder / name)
    raise PretrainedError(f"{folder}: no model.safetensors or pytorch_model.bin (sharded checkpoints not supported)")


def load_hf(path: str | Path, **overrides: Any) -> TimeSformer:
    """A TimeSformer from a ``transformers`` folder; class names from ``id2label``, mean/std from
    ``preprocessor_config.json`` (ImageNet's when absent). Input stays ``(B, C, T, H, W)``: HF's
    ``(B, T, C, H, W)`` clips need ``x.transpose(1, 2)``."""
    folder = Path(path)
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "timesformer":
        raise PretrainedError(
            f"{folder / 'config.json'}: model_type {config.get('model_type')!r}, expected 'timesformer'"
        )
    kwargs = hf_config_to_kwargs(config)
    model = build_from_state_dict(convert_hf(_hf_weights(folder)), str(folder), defaults=kwargs, **overrides)
    id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(model.num_classes)]
    if any(n != f"LABEL_{i}" for i, n in enumerate(names)):  # transformers' placeholder names carry nothing
        model.class_names = names
    pre = folder / "preprocessor_config.json"
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if pre.is_file():
        pre_cfg = json.loads(pre.read_text())
        mean, std = tuple(pre_cfg.get("image_mean", mean)), tuple(pre_cfg.get("image_std", std))
    model.mean, model.std = mean, std
    return model


def _is_hf(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "timesformer"
    except (OSError, json.JSONDecodeError):
        return False


def create_pretrained(name: str, image_weights: str, **overrides: Any) -> TimeSformer:
    """``create_model(name, **overrides)`` initialised from image ViT weights (timm name or file)."""
    return load_image_weights(create_model(name, **overrides), image_weights)


register_format("timesformer_official", _is_official, load_official)
register_format("hf_timesformer", _is_hf, load_hf)
