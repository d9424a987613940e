"""ViViT weights: initialisation from an image ViT (Arnab et al. 2021, section 3.4) and the Hugging Face
``VivitForVideoClassification`` checkpoint format (e.g. ``google/vivit-b-16x2-kinetics400``) -> Model 1.

Image initialisation is one pure ``filter_fn(state_dict, model, ...) -> state_dict`` per model, taking a timm
ViT state dict (default ``vit_base_patch16_224.augreg_in21k``; any timm ViT of the standard layout):

* position embeddings are resampled to the video's spatial grid (``timm.layers.resample_abs_pos_embed``)
  and, where the model has a spatio-temporal embedding (Models 1, 3, 4), repeated over the ``t`` temporal
  indices (section 3.4, "Positional embeddings");
* 2D patch kernels are inflated to tubelet kernels by central-frame (eq. 8, default) or average (eq. 7)
  initialisation (section 3.4, "Embedding weights, E");
* Model 2: the spatial encoder is the image ViT, except its CLS token: scenic's ``init_from_train_state``
  copies the image's ``cls`` only into a parameter of the same name, which Model 2 does not have, so
  ``cls_SpatialTransformer`` stays fresh (scenic/projects/vivit/model_utils.py:381-386; the CLS *position*
  embedding is copied, model_utils.py:415-421). ``cls_init="image"`` copies it instead. The temporal
  encoder keeps its random initialisation by default (``temporal_init="random"``, as scenic: the image has
  no ``TemporalTransformer``); ``"image"`` copies the first ``L_t`` image blocks instead;
* Model 3: each block's spatial MHSA, MLP and norms are the image block's; as in scenic, the temporal MHSA
  is a copy of the spatial MHSA and the temporal LayerNorm stays fresh (``temporal_init="spatial"``,
  model_utils.py:509-539: ``init_temporal_layer_norm`` only logs, it copies nothing).
  ``temporal_init="identity"`` also zeroes the temporal output projection, so that eq. 5 is a residual
  connection at initialisation (the paper's section 3.4) while every temporal weight still gets gradients
  (a branch whose weights are all zero gets none and never learns);
* Model 4: every block is the image block (the first half of the heads become temporal heads, the second
  half spatial heads).

Models 3 and 4 have no CLS token, so the image's CLS token and its position embedding are dropped.
The classifier is always new (zero by default, scenic's; see the models' ``head_init``): after loading, the
missing keys are exactly ``head.*`` plus the parts that the image does not provide, and nothing is
unexpected (:func:`load_image_weights` asserts both).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Literal

import torch
from einops import repeat
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from torch import nn

from video_transformers.layers import inflate_patch_weight
from video_transformers.models.vivit import (
    VIVIT_MEAN,
    VIVIT_STD,
    ViViTFactorisedDotProduct,
    ViViTFactorisedEncoder,
    ViViTFactorisedSelfAttention,
    ViViTSpatioTemporal,
    _ViViT,
)
from video_transformers.pretrained.common import (
    PretrainedError,
    config_model_type,
    hf_weights,
    image_state_dict,
    load_checked,
    load_pretrained,
    read_json,
    register_format,
)
from video_transformers.pretrained.hf_config import VIT_FIELDS, vit_kwargs
from video_transformers.pretrained.hf_keys import LAYER, rename, vit_renames
from video_transformers.pretrained.image_init import register_image_init

log = logging.getLogger(__name__)

DEFAULT_IMAGE_MODEL = "vit_base_patch16_224.augreg_in21k"
Inflation = Literal["central_frame", "average"]
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


# -- image ViT -> video: the shared pieces ------------------------------------------------------------
def _check_image_keys(state_dict: dict[str, torch.Tensor]) -> None:
    for key in ("pos_embed", "patch_embed.proj.weight"):
        if key not in state_dict:
            raise PretrainedError(
                f"image state dict has no {key!r}; expected a timm ViT (keys {sorted(state_dict)[:8]}...)"
            )


def _spatial_pos_embed(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The image's patch position embeddings resampled to the model's ``h x w`` grid ``(1, n, D)``, and its
    CLS position embedding ``(1, 1, D)`` (``None`` if the image has none)."""
    pos = state_dict["pos_embed"]
    n_img = pos.shape[1]
    prefix = 0 if math.isqrt(n_img) ** 2 == n_img else n_img - math.isqrt(n_img) ** 2
    if prefix > 1:
        raise PretrainedError(f"pos_embed {tuple(pos.shape)}: {prefix} prefix tokens; only a CLS token is supported")
    _, h, w = model.patch_embed.grid_size
    pos = resample_abs_pos_embed(pos, new_size=[h, w], num_prefix_tokens=prefix)
    return pos[:, prefix:], (pos[:, :1] if prefix else None)


def _patch_weight(state_dict: dict[str, torch.Tensor], model: nn.Module, inflation: Inflation) -> torch.Tensor:
    """The image's 2D patch kernel, resampled to the model's patch size and inflated over the tubelet."""
    w = state_dict["patch_embed.proj.weight"]
    pe = model.patch_embed
    if w.shape[-2:] != (pe.patch_size, pe.patch_size):
        w = resample_patch_embed(w, new_size=[pe.patch_size, pe.patch_size])
    return inflate_patch_weight(w, pe.tubelet_size, inflation)


def _stem(
    state_dict: dict[str, torch.Tensor], model: nn.Module, inflation: Inflation
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """What every model takes alike: the inflated patch kernel (and bias); the image's patch position
    embeddings resampled to the model's grid ``(1, n, D)``; its CLS position embedding (``None`` without)."""
    _check_image_keys(state_dict)
    out = {"patch_embed.proj.weight": _patch_weight(state_dict, model, inflation)}
    if "patch_embed.proj.bias" in state_dict:
        out["patch_embed.proj.bias"] = state_dict["patch_embed.proj.bias"]
    return out, *_spatial_pos_embed(state_dict, model)


def _over_time(spatial: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``(1, n, D)`` -> ``(1, t*n, D)``: the spatial embedding repeated at every temporal index (scenic's
    ``tile``, model_utils.py:249-268)."""
    return repeat(spatial, "1 n d -> 1 (t n) d", t=model.patch_embed.grid_size[0])


def _option(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices} (the first is scenic's)")


def _blocks(state_dict: dict[str, torch.Tensor], prefix: str, *, depth: int | None = None) -> dict[str, torch.Tensor]:
    """``blocks.i.*`` (i < depth) and the final ``norm.*`` of the image ViT, renamed under ``prefix``."""
    out = {}
    for k, v in state_dict.items():
        m = _BLOCK.match(k)
        if m and (depth is None or int(m.group(1)) < depth):
            out[f"{prefix}.blocks.{m.group(1)}.{m.group(2)}"] = v
        elif k.startswith("norm."):
            out[f"{prefix}.{k}"] = v
    return out


def _leftovers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Image keys no video model takes, passed through so that load_checked names them as unexpected
    (e.g. layer scale, registers, a pooled ``fc_norm``); the image classifier and CLS token are dropped."""
    known = ("cls_token", "pos_embed", "patch_embed.proj.", "norm.", "head.", "blocks.")
    return {k: v for k, v in state_dict.items() if not k.startswith(known)}


# -- one filter per model -----------------------------------------------------------------------------
def spatio_temporal_filter_fn(
    state_dict: dict[str, torch.Tensor], model: ViViTSpatioTemporal, *, inflation: Inflation = "central_frame"
) -> dict[str, torch.Tensor]:
    """Model 1: image blocks as the encoder; the ``(1, 1 + t*n, D)`` position embedding starts as the
    image's CLS embedding followed by its spatial embedding repeated over the ``t`` temporal indices
    (scenic's ``tile``, model_utils.py:249-268). Without CLS (``global_pool="avg"``) the image's CLS token
    and its embedding are dropped (model_utils.py:422-424)."""
    out, spatial, cls_pos = _stem(state_dict, model, inflation)
    out["pos_embed"] = _over_time(spatial, model)
    if model.num_prefix_tokens:
        if cls_pos is None or "cls_token" not in state_dict:
            raise PretrainedError("Model 1 needs an image ViT with a CLS token (cls_token and its pos_embed entry)")
        out["cls_token"] = state_dict["cls_token"]
        out["pos_embed"] = torch.cat([cls_pos, out["pos_embed"]], dim=1)
    out.update(_blocks(state_dict, "encoder"))
    return {**out, **_leftovers(state_dict)}


def factorised_encoder_filter_fn(
    state_dict: dict[str, torch.Tensor],
    model: ViViTFactorisedEncoder,
    *,
    inflation: Inflation = "central_frame",
    temporal_init: Literal["random", "image"] = "random",
    cls_init: Literal["fresh", "image"] = "fresh",
) -> dict[str, torch.Tensor]:
    """Model 2: the spatial encoder (blocks, final norm, ``(1, 1 + n, D)`` position embedding) is the image
    ViT; its CLS token stays fresh as in scenic (``"fresh"``) or is the image's (``"image"``). The temporal
    encoder keeps its random initialisation (``"random"``) or takes the first ``L_t`` image blocks and the
    final norm (``"image"``); its CLS token and position embedding are always new."""
    _option("temporal_init", temporal_init, ("random", "image"))
    _option("cls_init", cls_init, ("fresh", "image"))
    if model.num_prefix_tokens != 1:
        raise PretrainedError("image initialisation needs Model 2 with CLS tokens (global_pool='token')")
    out, spatial, cls_pos = _stem(state_dict, model, inflation)
    if cls_pos is None or "cls_token" not in state_dict:
        raise PretrainedError("Model 2 needs an image ViT with a CLS token (cls_token and its pos_embed entry)")
    if cls_init == "image":
        out["cls_token"] = state_dict["cls_token"]
    out["pos_embed"] = torch.cat([cls_pos, spatial], dim=1)
    out.update(_blocks(state_dict, "spatial"))
    if temporal_init == "image":
        out.update(_blocks(state_dict, "temporal", depth=len(model.temporal.blocks)))
    return {**out, **_leftovers(state_dict)}


def factorised_self_attention_filter_fn(
    state_dict: dict[str, torch.Tensor],
    model: ViViTFactorisedSelfAttention,
    *,
    inflation: Inflation = "central_frame",
    temporal_init: Literal["spatial", "identity"] = "spatial",
) -> dict[str, torch.Tensor]:
    """Model 3: each block's spatial MHSA, MLP and norms from the image block; the temporal MHSA a copy of
    the spatial one (scenic, model_utils.py:516-528) and its LayerNorm fresh (model_utils.py:529-534).
    ``"identity"`` zeroes the copy's output projection only, so eq. 5 starts as a residual connection and
    the temporal ``qkv`` still learns (its gradient flows once ``proj`` moves). The ``(1, t*n, D)``
    embedding is the image's spatial one repeated over time."""
    _option("temporal_init", temporal_init, ("spatial", "identity"))
    out, spatial, _ = _stem(state_dict, model, inflation)
    out["pos_embed"] = _over_time(spatial, model)
    blocks = _blocks(state_dict, "encoder")
    for k, v in list(blocks.items()):
        if ".attn." in k:
            zero = temporal_init == "identity" and ".attn.proj." in k  # identity: only the last projection
            blocks[k.replace(".attn.", ".temporal_attn.")] = torch.zeros_like(v) if zero else v.clone()
    out.update(blocks)
    return {**out, **_leftovers(state_dict)}


def factorised_dot_product_filter_fn(
    state_dict: dict[str, torch.Tensor], model: ViViTFactorisedDotProduct, *, inflation: Inflation = "central_frame"
) -> dict[str, torch.Tensor]:
    """Model 4: every block is the image block (its first half of heads attend over space, the second
    half over time); the ``(1, t*n, D)`` embedding is the image's spatial one repeated over time."""
    out, spatial, _ = _stem(state_dict, model, inflation)
    out["pos_embed"] = _over_time(spatial, model)
    out.update(_blocks(state_dict, "encoder"))
    return {**out, **_leftovers(state_dict)}


FILTERS = {
    ViViTSpatioTemporal: spatio_temporal_filter_fn,
    ViViTFactorisedEncoder: factorised_encoder_filter_fn,
    ViViTFactorisedSelfAttention: factorised_self_attention_filter_fn,
    ViViTFactorisedDotProduct: factorised_dot_product_filter_fn,
}


def filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module, **options: Any) -> dict[str, torch.Tensor]:
    """The image-ViT filter of ``model``'s class (options: ``inflation``; ``temporal_init`` for Models 2/3;
    ``cls_init`` for Model 2)."""
    if type(model) not in FILTERS:
        raise PretrainedError(
            f"no ViViT image initialisation for {type(model).__name__}; known: {[c.__name__ for c in FILTERS]}"
        )
    return FILTERS[type(model)](state_dict, model, **options)


def expected_missing(model: nn.Module, **options: Any) -> list[str]:
    """Keys the image initialisation leaves fresh: the classifier; for Model 2 the temporal parts (and the
    spatial CLS token unless ``cls_init="image"``); for Model 3 the temporal LayerNorms."""
    missing = ["head.*"] if isinstance(model.head, nn.Linear) else []
    if isinstance(model, ViViTFactorisedEncoder):
        if options.get("cls_init", "fresh") == "fresh":
            missing.append("cls_token")
        missing += ["temporal_cls_token", "temporal_pos_embed"]
        if options.get("temporal_init", "random") == "random":
            missing.append("temporal.*")
    if isinstance(model, ViViTFactorisedSelfAttention):
        missing.append("encoder.blocks.*.temporal_norm1.*")
    return missing


@register_image_init(_ViViT)
def load_image_weights(
    model: nn.Module, source: str | dict[str, torch.Tensor] = DEFAULT_IMAGE_MODEL, **options: Any
) -> nn.Module:
    """Initialise a ViViT model from an image ViT (a timm name, a local file, or a state dict), asserting
    that exactly :func:`expected_missing` keys are missing and none unexpected. Returns ``model``."""
    state_dict = image_state_dict(source) if isinstance(source, str) else source
    load_checked(model, filter_fn(state_dict, model, **options), missing=expected_missing(model, **options))
    return model


# -- Hugging Face VivitForVideoClassification -> Model 1 ----------------------------------------------
# transformers >= 5 names -> < 5 names (the layout of the checkpoints on the hub, which hf_keys reads): the
# reverse of transformers' own conversion mapping for ViT-style models; no row matches a < 5 name.
_HF_NEW_TO_OLD = [
    (r"^layers\.", "encoder.layer."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
]
_HF_TO_OURS = vit_renames(blocks=r"encoder.blocks.\1.", norm="encoder.norm.")
_HF_QKV = re.compile(LAYER + r"attention\.attention\.(query|key|value)\.(weight|bias)$")
# VivitConfig's defaults (transformers models/vivit/configuration_vivit.py), except the class count: 400
_HF_DEFAULTS = dict(
    tubelet_size=[2, 16, 16],
    image_size=224,
    num_frames=32,
    num_channels=3,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu_fast",  # the tanh-approximate GELU
    qkv_bias=True,
    layer_norm_eps=1e-6,
    num_labels=400,
)


def hf_model_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """:class:`ViViTSpatioTemporal` arguments from a Hugging Face ``VivitConfig`` (its config.json)."""
    config = {**_HF_DEFAULTS, **config}
    t, ph, pw = config["tubelet_size"]
    if ph != pw:
        raise PretrainedError(f"config.json: tubelet_size {config['tubelet_size']}: only square patches are supported")
    return {**vit_kwargs(config, VIT_FIELDS), "patch_size": ph, "tubelet_size": t}


def convert_hf_vivit(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face ViViT keys (``VivitForVideoClassification`` or ``VivitModel``, transformers 4 or 5 names)
    -> :class:`ViViTSpatioTemporal` keys; separate ``q/k/v`` projections are fused into ``qkv``."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        k = key.removeprefix("vivit.")
        for pattern, was in _HF_NEW_TO_OLD:
            k = re.sub(pattern, was, k)
        if k.startswith("pooler."):
            log.info("%s: VivitModel's pooler is not used by the classifier; dropped", key)
            continue
        if m := _HF_QKV.match(k):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)[0]] = value  # query -> q, ...
            continue
        out[rename(k, _HF_TO_OURS) or k] = value  # a key no row renames stays: load_checked reports it
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise PretrainedError(f"layer {layer}: attention {kind} has only {sorted(parts)} of q, k, v projections")
        out[f"encoder.blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def hf_normalisation(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std on ``[0, 1]`` pixels equivalent to the folder's ViViT preprocessor config.

    HF's ViViT processor maps a 0..255 pixel ``p`` to ``p * rescale_factor - offset`` (``offset`` is 1 when
    ``offset: true``), then ``(x - image_mean) / image_std`` when ``do_normalize``. On ``q = p / 255`` that is
    ``(q - mean) / std`` with ``mean = (offset + image_mean) / (255 r)`` and ``std = image_std / (255 r)``.
    Without a preprocessor config: ViViT's ``[-1, 1]`` range (mean = std = 0.5).
    """
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            break
    else:
        return VIVIT_MEAN, VIVIT_STD
    cfg = read_json(path)
    scale = 255.0 * cfg.get("rescale_factor", 1 / 127.5) if cfg.get("do_rescale", True) else 1.0
    offset = 1.0 if cfg.get("offset", True) and cfg.get("do_rescale", True) else 0.0
    mean, std = [0.0] * 3, [1.0] * 3
    if cfg.get("do_normalize", True):
        mean, std = list(cfg.get("image_mean", [0.5] * 3)), list(cfg.get("image_std", [0.5] * 3))
    return tuple((offset + m) / scale for m in mean), tuple(s / scale for s in std)


def is_hf_vivit(path: Path) -> bool:
    return config_model_type(path) == "vivit"


def load_hf_vivit(path: str | Path, **overrides: Any) -> ViViTSpatioTemporal:
    """A Hugging Face ViViT folder (config.json + weights) as :class:`ViViTSpatioTemporal`, with the
    class names from ``id2label`` and the normalisation of its preprocessor config. Every key must match;
    overriding ``num_classes`` leaves the classifier new (``head.*`` then the only missing keys)."""
    folder = Path(path)
    config = read_json(folder / "config.json")
    kwargs = {**hf_model_kwargs(config), **overrides}
    model = ViViTSpatioTemporal(**kwargs)
    head_kept = load_pretrained(model, convert_hf_vivit(hf_weights(folder)), str(folder))
    model.mean, model.std = hf_normalisation(folder)
    id2label = config.get("id2label") or {}
    if id2label and head_kept:
        model.class_names = [id2label[k] for k in sorted(id2label, key=int)]
    model.model_name = "vivit_base_spatio_temporal_16x2" if kwargs["embed_dim"] == 768 else "vivit_spatio_temporal"
    return model


register_format("hf_vivit", is_hf_vivit, load_hf_vivit)


__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "FILTERS",
    "convert_hf_vivit",
    "expected_missing",
    "factorised_dot_product_filter_fn",
    "factorised_encoder_filter_fn",
    "factorised_self_attention_filter_fn",
    "filter_fn",
    "hf_model_kwargs",
    "hf_normalisation",
    "is_hf_vivit",
    "load_hf_vivit",
    "load_image_weights",
    "spatio_temporal_filter_fn",
]
