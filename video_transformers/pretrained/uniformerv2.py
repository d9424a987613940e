"""UniFormerV2 weights (Li et al., ICCV 2023): CLIP-ViT initialisation from timm, and the official
checkpoints (OpenGVLab/UniFormerV2 releases: plain state dicts with keys prefixed ``backbone.``).

* :func:`clip_filter_fn` / :func:`init_from_clip`: timm's CLIP image tower (``vit_*_clip_*.openai``) ->
  the UniFormerV2 backbone. The 2D patch kernel is inflated to the 3D tokenizer at the central frame (the
  official ``inflate_weight(..., center=True)``); every UniFormerV2 part (LT-MHRA, global UniBlocks, query,
  ``balance``, head) keeps its zero-initialised / fresh state, so step 0 gives the documented initial output
  ``head(fc_norm(0.5 * mean_t CLS_t))`` with the image ViT's per-frame CLS tokens (module docstring of
  :mod:`video_transformers.models.uniformerv2`). CLIP's ``ln_post`` and projection are not used.
* :func:`official_filter_fn` / :func:`load_official`: rename the official keys (``in_proj_weight`` ->
  ``qkv.weight``, ``out_proj`` -> ``proj``, ``ln_1/2/3``, ``c_fc/c_proj``, ``dpe.j`` -> ``global_blocks.j.dpe``,
  ``proj.0/2`` -> ``fc_norm``/``head``) and infer the architecture from the shapes.

Normalisation: CLIP-initialised models expect CLIP's mean/std; the released UniFormerV2 checkpoints were
trained on pixels normalised with 0.45 / 0.225 (official slowfast defaults; mmaction2's 114.75 / 57.375).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import torch

from video_transformers.layers import inflate_patch_weight
from video_transformers.models.uniformerv2 import (
    CLIP_MEAN,
    CLIP_STD,
    UNIFORMERV2_MEAN,
    UNIFORMERV2_STD,
    UniFormerV2,
)
from video_transformers.pretrained.common import (
    PretrainedError,
    image_state_dict,
    load_checked,
    load_pretrained,
    load_state_dict_file,
    register_format,
)
from video_transformers.pretrained.image_init import register_image_init

log = logging.getLogger(__name__)

# (embed_dim, patch_size, img_size) -> timm CLIP image tower the paper builds on
CLIP_IMAGE_MODELS = {
    (768, 16, 224): "vit_base_patch16_clip_224.openai",
    (1024, 14, 224): "vit_large_patch14_clip_224.openai",
    (1024, 14, 336): "vit_large_patch14_clip_336.openai",
}

_BLOCK_PARAM = re.compile(r"blocks\.(\d+)\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)")
# image-model parts UniFormerV2 does not use: CLIP's ln_post (timm `norm`), its projection / any classifier
_IMAGE_UNUSED = re.compile(r"(norm|fc_norm|head)\.(weight|bias)")


# -- CLIP image tower (timm layout) -> UniFormerV2 ---------------------------------------------------------
def clip_filter_fn(state_dict: dict[str, torch.Tensor], model: UniFormerV2) -> dict[str, torch.Tensor]:
    """Adapt a timm CLIP ViT state dict to ``model``: inflate the patch kernel (central frame), resample the
    position embedding if the grid differs, drop ``ln_post``/projection; any other key is an error."""
    from timm.layers import resample_abs_pos_embed

    out: dict[str, torch.Tensor] = {}
    depth = len(model.blocks)
    for k, v in state_dict.items():
        if _IMAGE_UNUSED.fullmatch(k):
            continue
        m = _BLOCK_PARAM.fullmatch(k)
        if m:
            if int(m.group(1)) >= depth:
                raise PretrainedError(f"{k}: the image model is deeper than the video model ({depth} blocks)")
            out[k] = v
        elif k == "patch_embed.proj.weight":
            k_t = model.patch_embed.temporal_kernel
            out[k] = inflate_patch_weight(v, k_t, "central_frame") if v.ndim == 4 else v
        elif k == "pos_embed":
            grid = model.patch_embed.grid_size[1:]
            if v.shape[1] != 1 + grid[0] * grid[1]:
                v = resample_abs_pos_embed(v, new_size=list(grid), num_prefix_tokens=1)
            out[k] = v
        elif k in ("cls_token", "norm_pre.weight", "norm_pre.bias"):
            out[k] = v
        else:
            raise PretrainedError(
                f"{k}: not a CLIP ViT (timm layout) parameter; expected cls_token, pos_embed, patch_embed.proj, "
                "norm_pre, blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, head"
            )
    return out


def new_parameters(model: UniFormerV2) -> list[str]:
    """Key patterns of the parts an image model does not provide (left at their UniFormerV2 init)."""
    pats = ["temporal_cls_token", "global_blocks.*", "fc_norm.*"]
    if model.balance is not None:
        pats.append("balance")
    if model.local_mhra != "none":
        pats.append("blocks.*.lmhra*")
    if model.num_classes > 0:
        pats.append("head.*")
    return pats


def default_clip_source(model: UniFormerV2) -> str:
    key = (model.embed_dim, model.patch_embed.patch_size, model.img_size)
    if key not in CLIP_IMAGE_MODELS:
        raise PretrainedError(
            f"no CLIP image model for width {key[0]}, patch {key[1]}, {key[2]} px; known: {sorted(CLIP_IMAGE_MODELS)}"
            " - pass the image weights' timm name or file"
        )
    return CLIP_IMAGE_MODELS[key]


@register_image_init(UniFormerV2)
def init_from_clip(model: UniFormerV2, source: str | None = None) -> UniFormerV2:
    """Load CLIP image weights (timm name or local file; default: the tower matching the model's size) into
    ``model``'s backbone, asserting that exactly the UniFormerV2-only parameters stay unfilled."""
    source = source or default_clip_source(model)
    state_dict = clip_filter_fn(image_state_dict(source), model)
    load_checked(model, state_dict, missing=new_parameters(model))
    model.mean, model.std = CLIP_MEAN, CLIP_STD
    log.info("initialised %s from CLIP image weights %s", type(model).__name__, source)
    return model


# -- official UniFormerV2 checkpoints -> ours ------------------------------------------------------------
_OFFICIAL_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"conv1\.weight"), "patch_embed.proj.weight"),
    (re.compile(r"ln_pre\.(weight|bias)"), r"norm_pre.\1"),
    (re.compile(r"transformer\.temporal_cls_token"), "temporal_cls_token"),
    (re.compile(r"transformer\.balance"), "balance"),
    (re.compile(r"transformer\.proj\.0\.(weight|bias)"), r"fc_norm.\1"),
    (re.compile(r"transformer\.proj\.2\.(weight|bias)"), r"head.\1"),
    (re.compile(r"transformer\.resblocks\.(\d+)\.(lmhra[12]\.pos_embed\.[0-3]\..+)"), r"blocks.\1.\2"),
    (re.compile(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)"), r"blocks.\1.attn.qkv.\2"),
    (re.compile(r"transformer\.resblocks\.(\d+)\.attn\.out_proj\.(weight|bias)"), r"blocks.\1.attn.proj.\2"),
    (re.compile(r"transformer\.resblocks\.(\d+)\.ln_([12])\.(weight|bias)"), r"blocks.\1.norm\2.\3"),
    (re.compile(r"transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)"), r"blocks.\1.mlp.fc1.\2"),
    (re.compile(r"transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)"), r"blocks.\1.mlp.fc2.\2"),
    (re.compile(r"transformer\.dpe\.(\d+)\.(weight|bias)"), r"global_blocks.\1.dpe.\2"),
    (re.compile(r"transformer\.dec\.(\d+)\.attn\.in_proj_(weight|bias)"), r"global_blocks.\1.attn.qkv.\2"),
    (re.compile(r"transformer\.dec\.(\d+)\.attn\.out_proj\.(weight|bias)"), r"global_blocks.\1.attn.proj.\2"),
    (re.compile(r"transformer\.dec\.(\d+)\.ln_1\.(weight|bias)"), r"global_blocks.\1.norm1.\2"),
    (re.compile(r"transformer\.dec\.(\d+)\.ln_2\.(weight|bias)"), r"global_blocks.\1.norm2.\2"),
    (re.compile(r"transformer\.dec\.(\d+)\.ln_3\.(weight|bias)"), r"global_blocks.\1.norm_ctx.\2"),
    (re.compile(r"transformer\.dec\.(\d+)\.mlp\.c_fc\.(weight|bias)"), r"global_blocks.\1.mlp.fc1.\2"),
    (re.compile(r"transformer\.dec\.(\d+)\.mlp\.c_proj\.(weight|bias)"), r"global_blocks.\1.mlp.fc2.\2"),
]


def _strip_backbone(state_dict: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
    for key in ("model_state", "state_dict", "model", "module"):  # training-checkpoint wrappers
        if isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
    if not any(k.startswith("backbone.") for k in state_dict):
        raise PretrainedError(
            f"{where}: not an official UniFormerV2 checkpoint (expected keys prefixed 'backbone.', "
            f"e.g. backbone.conv1.weight; got {sorted(state_dict)[:4]}...)"
        )
    other = sorted(k for k in state_dict if not k.startswith("backbone."))
    if other:
        raise PretrainedError(f"{where}: keys outside 'backbone.': {other}")
    return {k[len("backbone.") :]: v for k, v in state_dict.items()}


def official_filter_fn(state_dict: dict[str, Any], model: UniFormerV2 | None = None) -> dict[str, torch.Tensor]:
    """Official UniFormerV2 state dict (``backbone.*``) -> our names and shapes. Pure; unknown keys raise."""
    sd = _strip_backbone(state_dict, "state dict")
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k == "class_embedding":
            out["cls_token"] = v.reshape(1, 1, -1)  # (D,) -> (1, 1, D)
        elif k == "positional_embedding":
            out["pos_embed"] = v.unsqueeze(0)  # (1 + N, D) -> (1, 1 + N, D)
        else:
            for pattern, repl in _OFFICIAL_RULES:
                if pattern.fullmatch(k):
                    out[pattern.sub(repl, k)] = v
                    break
            else:
                raise PretrainedError(f"backbone.{k}: not a parameter of the official UniFormerV2 layout")
    return out


def infer_official_config(state_dict: dict[str, Any]) -> dict[str, Any]:
    """UniFormerV2 constructor arguments read off an official checkpoint's shapes.

    Not in the shapes (override when they differ): ``num_heads`` (taken as ``width // 64``, true for every
    CLIP ViT) and ``num_frames`` (8; :func:`load_official` reads ``_<frames>x<size>`` from the file name).
    Global UniBlocks sit on the last ``len(dec)`` layers, as in every released configuration (4 for Kinetics,
    8 / 16 for SSv2 B/16 / L/14). A checkpoint without ``transformer.balance`` is the ``FROZEN`` variant
    (official ``uniformerv2_model.py:239-241``).
    """
    sd = _strip_backbone(state_dict, "state dict")

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise PretrainedError(f"backbone.{key}: missing from the checkpoint; cannot infer the architecture")
        return sd[key]

    width = need("class_embedding").shape[0]
    conv = need("conv1.weight")  # (D, C, k_t, p, p)
    patch, k_t = conv.shape[-1], conv.shape[2]
    grid = math.isqrt(need("positional_embedding").shape[0] - 1)
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))})
    num_global = len({int(m.group(1)) for k in sd if (m := re.match(r"transformer\.dec\.(\d+)\.", k))})
    num_dpe = len({int(m.group(1)) for k in sd if (m := re.match(r"transformer\.dpe\.(\d+)\.", k))})
    if num_global == 0 or num_dpe != num_global:
        raise PretrainedError(f"checkpoint has {num_global} global blocks (dec.j) and {num_dpe} DPE convs (dpe.j)")
    has1 = any(k.startswith("transformer.resblocks.0.lmhra1.") for k in sd)
    has2 = any(k.startswith("transformer.resblocks.0.lmhra2.") for k in sd)
    local = "double" if has2 else "single" if has1 else "none"
    cfg: dict[str, Any] = dict(
        num_classes=need("transformer.proj.2.weight").shape[0],
        img_size=grid * patch,
        patch_size=patch,
        in_chans=conv.shape[1],
        embed_dim=width,
        depth=depth,
        num_heads=max(1, width // 64),
        mlp_ratio=need("transformer.resblocks.0.mlp.c_fc.weight").shape[0] / width,
        temporal_downsample=k_t > 1,
        local_mhra=local,
        global_layers=list(range(depth - num_global, depth)),
        global_mlp_ratio=need("transformer.dec.0.mlp.c_fc.weight").shape[0] / width,
        frozen="transformer.balance" not in sd,
    )
    if k_t not in (1, 3):
        raise PretrainedError(f"backbone.conv1.weight: temporal kernel {k_t}; expected 1 or 3 (down-sampling)")
    if local != "none":
        inner = need("transformer.resblocks.0.lmhra1.pos_embed.1.weight").shape[0]
        cfg["local_reduction"] = _local_reduction(width, inner)
        cfg["local_kernel"] = need("transformer.resblocks.0.lmhra1.pos_embed.2.weight").shape[2]
    return cfg


def _local_reduction(width: int, inner: int) -> float:
    """A ``dw_reduction`` ``r`` with ``int(width // r) == inner`` (official ``Local_MHRA``, line 45): the
    official 1.5 when it fits, else a ratio in the middle of the interval, safe from float floor division."""
    for r in (1.5, width / inner, width / (inner + 0.5)):
        if int(width // r) == inner:
            return r
    raise PretrainedError(f"transformer.resblocks.0.lmhra1.pos_embed.1.weight: LT-MHRA width {inner} of {width}")


def load_official(source: str | Path | dict[str, Any], *, trust: bool = False, **overrides: Any) -> UniFormerV2:
    """An official UniFormerV2 checkpoint (file or state dict) as our model, every key accounted for.

    ``overrides`` replace inferred arguments; a different ``num_classes`` drops the checkpoint's classifier
    (the official ``DELETE_SPECIAL_HEAD``) and leaves ours freshly initialised.
    """
    if isinstance(source, dict):
        raw, where = source, "state dict"
    else:
        raw, where = load_state_dict_file(source, trust=trust), str(source)
    if not isinstance(raw, dict):
        raise PretrainedError(f"{where}: expected a state dict, got {type(raw).__name__}")
    _strip_backbone(raw, where)  # a wrong layout is reported with the file's name
    cfg = infer_official_config(raw)
    if not isinstance(source, dict):
        m = re.search(r"_(\d+)x(\d+)", Path(source).name)  # e.g. k400_uniformerv2_b16_8x224.pyth
        if m:
            cfg["num_frames"] = int(m.group(1))
    cfg.update(overrides)
    model = UniFormerV2(**cfg)
    load_pretrained(model, official_filter_fn(raw, model), where)  # the official DELETE_SPECIAL_HEAD
    model.mean, model.std = UNIFORMERV2_MEAN, UNIFORMERV2_STD
    return model


def _detect_official(path: Path) -> bool:
    return path.is_file() and path.suffix in {".pyth", ".pth", ".pt"} and "uniformerv2" in path.name.lower()


register_format("uniformerv2_official", _detect_official, load_official)

__all__ = [
    "CLIP_IMAGE_MODELS",
    "clip_filter_fn",
    "default_clip_source",
    "infer_official_config",
    "init_from_clip",
    "load_official",
    "new_parameters",
    "official_filter_fn",
]
