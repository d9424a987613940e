"""scenic's ViViT checkpoints (google-research/scenic, ``scenic/projects/vivit``) as PyTorch models: the
``scenic_vivit`` format of :func:`~video_transformers.pretrained.from_pretrained`.

A scenic checkpoint is a msgpack file in flax's serialisation (``flax.serialization.msgpack_serialize``:
nested maps, arrays as msgpack extension type 1 holding ``(shape, dtype name, C-order bytes)``, scalars as
type 3, arrays over 1 GiB split into ``__msgpack_chunked_array__`` maps). :func:`read_flax_msgpack` reads it
with ``msgpack`` alone, without JAX. Three layouts hold the parameter tree:

* the ViViT trainer's state ``{"optimizer": {"target": params, ...}, "global_step", ...}`` (the released
  checkpoints, and what Hugging Face's ``convert_vivit_flax_to_pytorch.py`` reads);
* scenic's optax ``TrainState`` ``{"params": params, "opt_state", ...}`` (scenic/train_lib/train_utils.py:51-67);
* a bare parameter tree ``{"Transformer" | "SpatialTransformer", "embedding", "output_projection", ...}``.

The file stores no configuration. What the parameter tree shows is inferred: the model (Model 2 and Model 3
have their own trees), widths, depths, heads, patch and tubelet sizes, the classifier (``token`` when the tree
has CLS parameters, else ``gap``) and the class count. What it cannot show is passed verbatim from the scenic
config: ``attention_type`` (``model.attention_config.type``; needed to tell Model 1 from Model 4, whose trees
are identical), ``attention_order`` (Model 3's ``model.attention_config.attention_order``), and
``num_frames`` / ``img_size`` (``dataset_configs.num_frames`` / ``crop_size``) where the position embedding
alone cannot separate time from space (Models 1, 3, 4; without either, scenic's default crop size 224 is
assumed if it fits, and logged)::

    from_pretrained("vivit_large_16x2_fe/checkpoint", attention_type="factorized_encoder")
    from_pretrained("vivit_base_16x2_unfactorized/checkpoint", attention_type="spacetime", num_frames=32)

Normalisation: scenic's video pipeline feeds pixels in [-1, 1] (``zero_centering`` defaults to True,
scenic/projects/vivit/data/video_tfrecord_dataset.py:253, 279-280, 402), i.e. mean = std = 0.5 on [0, 1].
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import torch

from video_transformers.models import list_models
from video_transformers.models.registry import get_entry
from video_transformers.models.vivit import (
    ViViTFactorisedDotProduct,
    ViViTFactorisedEncoder,
    ViViTFactorisedSelfAttention,
    ViViTSpatioTemporal,
)
from video_transformers.pretrained.common import PretrainedError, load_pretrained, register_format

log = logging.getLogger(__name__)

# scenic's attention_config.type -> our model (scenic/projects/vivit/model.py:668-723)
ATTENTION_TYPES = {
    "spacetime": ViViTSpatioTemporal,
    "factorized_encoder": ViViTFactorisedEncoder,
    "factorized_self_attention_block": ViViTFactorisedSelfAttention,
    "factorized_dot_product_attention": ViViTFactorisedDotProduct,
}
# scenic's attention_order (model.py:302-307) -> our Model 3 ``order``
ATTENTION_ORDERS = {"time_space": "temporal_first", "space_time": "spatial_first"}
SCENIC_CROP_SIZE = (
    224  # dataset_configs.get("crop_size", 224), scenic/projects/vivit/data/video_tfrecord_dataset.py:400
)
# What every scenic ViViT is, whatever its checkpoint holds: flax layers' choices, not stored in the tree
FLAX = dict(
    qkv_bias=True,  # flax MultiHeadDotProductAttention's use_bias default
    act="gelu_tanh",  # flax nn.gelu, approximate=True (model.py:255, 335)
    norm_eps=1e-6,  # flax LayerNorm's default epsilon
)
_PARAM_KEYS = {
    "Transformer",
    "SpatialTransformer",
    "TemporalTransformer",
    "embedding",
    "output_projection",
    "pre_logits",
    "cls",
    "cls_SpatialTransformer",
    "cls_TemporalTransformer",
}
_TORCH_DTYPES = {"bfloat16": torch.bfloat16}  # numpy has no bfloat16; flax writes its name


# -- flax msgpack, without JAX ------------------------------------------------------------------------------
def _array(data: bytes) -> np.ndarray | torch.Tensor:
    """flax's ndarray extension (flax/serialization.py ``_ndarray_from_bytes``)."""
    shape, dtype, buffer = msgpack.unpackb(data, raw=True)
    name = dtype.decode()
    if name in _TORCH_DTYPES:
        return torch.frombuffer(bytearray(buffer), dtype=_TORCH_DTYPES[name]).reshape(shape)
    return np.frombuffer(buffer, dtype=np.dtype(name)).reshape(shape)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 1:  # ndarray
        return _array(data)
    if code == 2:  # native complex
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    if code == 3:  # numpy scalar, stored as a 0-d array
        return _array(data)[()]
    raise ValueError(f"unknown msgpack extension type {code}")


def _unchunk(tree: Any) -> Any:
    """Arrays that flax split into ``{"__msgpack_chunked_array__", "shape", "chunks"}`` maps, joined back."""
    if not isinstance(tree, dict):
        return tree
    if "__msgpack_chunked_array__" in tree:
        shape = [tree["shape"][str(i)] for i in range(len(tree["shape"]))]
        chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        return np.concatenate([np.asarray(c).reshape(-1) for c in chunks]).reshape(shape)
    return {k: _unchunk(v) for k, v in tree.items()}


def read_flax_msgpack(path: str | Path) -> dict[str, Any]:
    """The state dict of a flax msgpack checkpoint (what ``flax.serialization.msgpack_restore`` returns):
    nested dicts of numpy arrays (``torch.bfloat16`` tensors for bfloat16 leaves) and Python scalars."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"{path}: checkpoint file not found")
    try:
        tree = msgpack.unpackb(path.read_bytes(), ext_hook=_ext_hook, raw=False, strict_map_key=False)
        tree = _unchunk(tree)
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as e:
        raise PretrainedError(f"{path}: not a readable flax msgpack checkpoint (corrupt or truncated?): {e}") from e
    if not isinstance(tree, dict):
        raise PretrainedError(f"{path}: a flax checkpoint holds a map at the top level, got {type(tree).__name__}")
    return tree


def params_tree(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """The parameter tree inside any of the three layouts scenic writes; anything else is refused."""
    optimizer = state.get("optimizer")
    if isinstance(optimizer, dict) and isinstance(optimizer.get("target"), dict):
        return optimizer["target"]  # ViViT trainer (train_lib_deprecated TrainState, flax.optim)
    if isinstance(state.get("params"), dict):
        return state["params"]  # optax TrainState
    if "embedding" in state and set(state) <= _PARAM_KEYS:
        return state  # bare parameters
    raise PretrainedError(
        f"{path}: not a scenic ViViT checkpoint: expected the trainer's {{'optimizer': {{'target': params}}}}, a "
        f"TrainState's {{'params': ...}} or a parameter tree with 'embedding'; top-level keys {sorted(state)[:10]}"
    )


# -- architecture from the tree ------------------------------------------------------------------------------
def _tree_kind(params: dict[str, Any], path: Path) -> str:
    """``factorized_encoder``, ``factorized_self_attention_block`` or ``spacetime_or_dot_product``."""
    if "SpatialTransformer" in params:
        return "factorized_encoder"
    block = (params.get("Transformer") or {}).get("encoderblock_0") or {}
    if "MultiHeadDotProductAttention_space" in block:
        return "factorized_self_attention_block"
    if "MultiHeadDotProductAttention_0" in block:
        return "spacetime_or_dot_product"
    raise PretrainedError(f"{path}: no ViViT encoder in the parameters (top-level keys {sorted(params)})")


def _attention_type(params: dict[str, Any], path: Path, attention_type: str | None) -> str:
    kind = _tree_kind(params, path)
    if attention_type is not None and attention_type not in ATTENTION_TYPES:
        raise PretrainedError(
            f"{path}: unknown attention_type {attention_type!r}; expected one of {list(ATTENTION_TYPES)}"
        )
    if kind == "spacetime_or_dot_product":
        if attention_type is None:
            raise PretrainedError(
                f"{path}: ViViT Model 1 ('spacetime') and Model 4 ('factorized_dot_product_attention') have identical "
                "parameter trees; pass attention_type= as in the scenic config's model.attention_config.type"
            )
        if attention_type not in ("spacetime", "factorized_dot_product_attention"):
            raise PretrainedError(
                f"{path}: attention_type={attention_type!r}, but the parameters are those of Model 1 or 4"
            )
        return attention_type
    if attention_type is not None and attention_type != kind:
        raise PretrainedError(f"{path}: attention_type={attention_type!r}, but the parameters are those of {kind!r}")
    return kind


def _shape(tree: dict[str, Any], *keys: str) -> tuple[int, ...]:
    for k in keys:
        tree = tree[k]
    return tuple(tree.shape)


def _encoder_sizes(encoder: dict[str, Any], attn: str, mlp: str) -> tuple[int, int, int]:
    """Depth, heads and MLP width of one scenic ``Encoder`` subtree."""
    depth = sum(k.startswith("encoderblock_") for k in encoder)
    _, heads, _ = _shape(encoder, "encoderblock_0", attn, "query", "kernel")  # (D, heads, head_dim)
    _, hidden = _shape(encoder, "encoderblock_0", mlp, "Dense_0", "kernel")  # (D, mlp_dim)
    return depth, heads, hidden


def _split_tokens(
    tokens: int, tubelet: int, patch: int, num_frames: int | None, img_size: int | None, path: Path
) -> tuple[int, int]:
    """``num_frames`` and ``img_size`` for a ``(t h w)`` position embedding of ``tokens`` entries. With neither
    given, scenic's default crop size 224 (video_tfrecord_dataset.py:400) is assumed where it divides them."""
    if num_frames is None and img_size is None:
        if tokens % (SCENIC_CROP_SIZE // patch) ** 2:
            raise PretrainedError(
                f"{path}: the position embedding has {tokens} space-time entries; pass num_frames= or img_size= (the "
                "scenic config's dataset_configs.num_frames / crop_size) to split them into time and space"
            )
        img_size = SCENIC_CROP_SIZE
        log.info("%s: neither num_frames nor img_size given; assuming scenic's default crop size %d", path, img_size)
    if num_frames is not None:
        t = num_frames // tubelet
        side = math.isqrt(tokens // t) if t and tokens % t == 0 else 0
        size = side * patch
    else:
        side = img_size // patch
        t = tokens // (side * side) if side else 0
        num_frames = t * tubelet
        size = img_size
    if (img_size is not None and img_size != size) or t * side * side != tokens:
        raise PretrainedError(
            f"{path}: the position embedding has {tokens} space-time entries; num_frames={num_frames} and "
            f"img_size={img_size} with tubelet {tubelet} and patch {patch} give a different count (the checkpoint's "
            "own sizes are needed: resampling a scenic position embedding is not implemented)"
        )
    return num_frames, size


def _factorised_encoder_sizes(
    params: dict[str, Any], path: Path, token: bool, patch: int, tubelet: int, given: dict[str, int]
) -> dict[str, Any]:
    """Model 2's sizes: both encoders' depths, heads and MLP width, frames and size from the two position
    embeddings (which state them, so the ``given`` ``num_frames`` / ``img_size`` must agree)."""
    spatial, temporal = params["SpatialTransformer"], params["TemporalTransformer"]
    s_depth, s_heads, s_mlp = _encoder_sizes(spatial, "MultiHeadDotProductAttention_0", "MlpBlock_0")
    t_depth, t_heads, t_mlp = _encoder_sizes(temporal, "MultiHeadDotProductAttention_0", "MlpBlock_0")
    if (s_heads, s_mlp) != (t_heads, t_mlp):
        raise PretrainedError(
            f"{path}: spatial and temporal encoders differ in heads/MLP ({s_heads}/{s_mlp} vs {t_heads}/{t_mlp})"
        )
    n = _shape(spatial, "posembed_input", "pos_embedding")[1] - token
    t = _shape(temporal, "posembed_input", "pos_embedding")[1] - token
    side = math.isqrt(n)
    if side * side != n:
        raise PretrainedError(f"{path}: the spatial position embedding has {n} entries, not a square grid")
    own = dict(num_frames=t * tubelet, img_size=side * patch)
    if any(own[k] != v for k, v in given.items()):
        raise PretrainedError(f"{path}: the checkpoint is {own}, not {given} (resampling is not implemented)")
    return dict(own, spatial_depth=s_depth, temporal_depth=t_depth, num_heads=s_heads, mlp_dim=s_mlp)


def _encoder_sizes_and_tokens(
    params: dict[str, Any], path: Path, attention_type: str, token: bool, patch: int, tubelet: int, given: dict
) -> dict[str, Any]:
    """Models 1, 3 and 4: one encoder's depth, heads and MLP width, frames and size from the ``(t h w)``
    position embedding and the ``given`` ``num_frames`` / ``img_size`` (see :func:`_split_tokens`)."""
    attn, mlp = ("MultiHeadDotProductAttention_0", "MlpBlock_0")
    if attention_type == "factorized_self_attention_block":
        attn, mlp = ("MultiHeadDotProductAttention_space", "MlpBlock")
    depth, heads, hidden = _encoder_sizes(params["Transformer"], attn, mlp)
    tokens = _shape(params["Transformer"], "posembed_input", "pos_embedding")[1] - token
    frames, size = _split_tokens(tokens, tubelet, patch, given.get("num_frames"), given.get("img_size"), path)
    return dict(num_frames=frames, img_size=size, depth=depth, num_heads=heads, mlp_dim=hidden)


def infer_architecture(
    params: dict[str, Any],
    path: Path,
    *,
    attention_type: str | None = None,
    attention_order: str | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> tuple[type, dict[str, Any]]:
    """The model class and constructor arguments that the scenic parameter tree ``params`` describes."""
    attention_type = _attention_type(params, path, attention_type)
    if "pre_logits" in params:
        raise PretrainedError(f"{path}: a pre_logits layer (scenic's representation_size) is not supported")
    kernel = _shape(params, "embedding", "kernel")  # (t, h, w, c_in, D) or (h, w, c_in, D)
    if len(kernel) == 4:  # temporal_sampling: 2D patches of every sampled frame (model.py:158-171)
        kernel = (1, *kernel)
    tubelet, ph, pw, in_chans, width = kernel
    if ph != pw:
        raise PretrainedError(f"{path}: embedding kernel {kernel}: only square patches are supported")
    num_classes = _shape(params, "output_projection", "kernel")[1]
    token = any(k in params for k in ("cls", "cls_SpatialTransformer"))
    kwargs: dict[str, Any] = dict(
        num_classes=num_classes, patch_size=ph, tubelet_size=tubelet, in_chans=in_chans, embed_dim=width, **FLAX
    )
    given = {k: v for k, v in (("num_frames", num_frames), ("img_size", img_size)) if v is not None}
    if attention_type == "factorized_encoder":
        kwargs.update(_factorised_encoder_sizes(params, path, token, ph, tubelet, given))
        kwargs["global_pool"] = "token" if token else "avg"
    else:
        kwargs.update(_encoder_sizes_and_tokens(params, path, attention_type, token, ph, tubelet, given))
        if attention_type == "spacetime":
            kwargs["global_pool"] = "token" if token else "avg"
        elif token:
            raise PretrainedError(f"{path}: {attention_type} has no CLS token in scenic (model.py:506-513)")
    kwargs["mlp_ratio"] = kwargs.pop("mlp_dim") / width
    if attention_type == "factorized_self_attention_block":
        if attention_order not in ATTENTION_ORDERS:
            raise PretrainedError(
                f"{path}: Model 3 needs attention_order= as in the scenic config's "
                f"model.attention_config.attention_order, one of {list(ATTENTION_ORDERS)} (got {attention_order!r})"
            )
        kwargs["order"] = ATTENTION_ORDERS[attention_order]
    elif attention_order is not None:
        raise PretrainedError(f"{path}: attention_order applies to factorized_self_attention_block only")
    return ATTENTION_TYPES[attention_type], kwargs


# -- parameters -> state dict --------------------------------------------------------------------------------
class _Leaves:
    """The parameter tree's leaves by ``/``-joined path; :meth:`take` consumes one, :meth:`left` names the rest."""

    def __init__(self, tree: dict[str, Any]) -> None:
        self.leaves: dict[str, torch.Tensor] = {}
        self._flatten(tree, "")

    def _flatten(self, tree: Any, prefix: str) -> None:
        if isinstance(tree, dict):
            for k, v in tree.items():
                self._flatten(v, f"{prefix}{k}/")
        else:
            value = tree if isinstance(tree, torch.Tensor) else torch.from_numpy(np.array(tree))
            self.leaves[prefix[:-1]] = value.float()

    def take(self, key: str) -> torch.Tensor:
        if key not in self.leaves:
            raise PretrainedError(f"parameter {key!r} missing from the scenic checkpoint")
        return self.leaves.pop(key)

    def left(self) -> list[str]:
        return sorted(self.leaves)


def _layer_norm(p: _Leaves, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": p.take(f"{src}/scale"), f"{dst}.bias": p.take(f"{src}/bias")}


def _dense(p: _Leaves, src: str, dst: str) -> dict[str, torch.Tensor]:
    """flax ``Dense`` kernel ``(in, out)`` -> ``nn.Linear`` weight ``(out, in)``."""
    return {f"{dst}.weight": p.take(f"{src}/kernel").t(), f"{dst}.bias": p.take(f"{src}/bias")}


def _attention(p: _Leaves, src: str, dst: str) -> dict[str, torch.Tensor]:
    """flax ``MultiHeadDotProductAttention``: ``query``/``key``/``value`` kernels ``(D, heads, head_dim)`` and
    biases ``(heads, head_dim)``, ``out`` kernel ``(heads, head_dim, D)`` -> fused ``qkv`` rows ordered
    ``(three heads head_dim)``, as :class:`~video_transformers.layers.Attention` splits them."""
    weights = [p.take(f"{src}/{n}/kernel").flatten(1).t() for n in ("query", "key", "value")]
    biases = [p.take(f"{src}/{n}/bias").flatten() for n in ("query", "key", "value")]
    return {
        f"{dst}.qkv.weight": torch.cat(weights),
        f"{dst}.qkv.bias": torch.cat(biases),
        f"{dst}.proj.weight": p.take(f"{src}/out/kernel").flatten(0, 1).t(),
        f"{dst}.proj.bias": p.take(f"{src}/out/bias"),
    }


def _mlp(p: _Leaves, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {**_dense(p, f"{src}/Dense_0", f"{dst}.fc1"), **_dense(p, f"{src}/Dense_1", f"{dst}.fc2")}


def _encoder(p: _Leaves, src: str, dst: str, depth: int, factorised: bool) -> dict[str, torch.Tensor]:
    """One scenic ``Encoder`` (model.py:343-450): blocks and ``encoder_norm``; ``posembed_input`` is left."""
    out = _layer_norm(p, f"{src}/encoder_norm", f"{dst}.norm")
    for i in range(depth):
        s, d = f"{src}/encoderblock_{i}", f"{dst}.blocks.{i}"
        if factorised:  # EncoderFactorizedSelfAttentionBlock (model.py:309-339)
            out |= _layer_norm(p, f"{s}/LayerNorm_space", f"{d}.norm1")
            out |= _attention(p, f"{s}/MultiHeadDotProductAttention_space", f"{d}.attn")
            out |= _layer_norm(p, f"{s}/LayerNorm_time", f"{d}.temporal_norm1")
            out |= _attention(p, f"{s}/MultiHeadDotProductAttention_time", f"{d}.temporal_attn")
            out |= _layer_norm(p, f"{s}/LayerNorm_mlp", f"{d}.norm2")
            out |= _mlp(p, f"{s}/MlpBlock", f"{d}.mlp")
        else:  # EncoderBlock (model.py:231-261)
            out |= _layer_norm(p, f"{s}/LayerNorm_0", f"{d}.norm1")
            out |= _attention(p, f"{s}/MultiHeadDotProductAttention_0", f"{d}.attn")
            out |= _layer_norm(p, f"{s}/LayerNorm_1", f"{d}.norm2")
            out |= _mlp(p, f"{s}/MlpBlock_0", f"{d}.mlp")
    return out


def convert_scenic_vivit(
    params: dict[str, Any], cls: type, kwargs: dict[str, Any], path: Path
) -> dict[str, torch.Tensor]:
    """scenic ViViT parameters -> the state dict of ``cls(**kwargs)``. Every leaf must be used."""
    p = _Leaves(params)
    kernel = p.take("embedding/kernel")  # (t, h, w, c_in, D) or (h, w, c_in, D)
    kernel = kernel.unsqueeze(0) if kernel.ndim == 4 else kernel
    out = {
        "patch_embed.proj.weight": kernel.permute(4, 3, 0, 1, 2).contiguous(),  # (D, c_in, t, h, w)
        "patch_embed.proj.bias": p.take("embedding/bias"),
        **_dense(p, "output_projection", "head"),
    }
    if cls is ViViTFactorisedEncoder:
        out |= _encoder(p, "SpatialTransformer", "spatial", kwargs["spatial_depth"], factorised=False)
        out |= _encoder(p, "TemporalTransformer", "temporal", kwargs["temporal_depth"], factorised=False)
        out["pos_embed"] = p.take("SpatialTransformer/posembed_input/pos_embedding")
        out["temporal_pos_embed"] = p.take("TemporalTransformer/posembed_input/pos_embedding")
        if kwargs["global_pool"] == "token":
            out["cls_token"] = p.take("cls_SpatialTransformer")
            out["temporal_cls_token"] = p.take("cls_TemporalTransformer")
    else:
        factorised = cls is ViViTFactorisedSelfAttention
        out |= _encoder(p, "Transformer", "encoder", kwargs["depth"], factorised=factorised)
        out["pos_embed"] = p.take("Transformer/posembed_input/pos_embedding")
        if kwargs.get("global_pool") == "token":
            out["cls_token"] = p.take("cls")
    if p.left():
        raise PretrainedError(f"{path}: scenic parameters not used by {cls.__name__}: {p.left()}")
    return out


# -- the format ----------------------------------------------------------------------------------------------
def is_scenic_checkpoint(path: Path) -> bool:
    """A file (not a zip) that starts with a non-empty msgpack map whose first key is a string: flax's
    serialisation of a dict (cheap: reads a few bytes; :func:`load_scenic_vivit` checks the layout)."""
    if not path.is_file() or zipfile.is_zipfile(path):
        return False
    with path.open("rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, read_size=256, max_buffer_size=1 << 20)
        try:
            return unpacker.read_map_header() > 0 and isinstance(unpacker.unpack(), str)
        except (ValueError, msgpack.UnpackException, msgpack.OutOfData):
            return False


def _registry_name(cls: type, kwargs: dict[str, Any]) -> str:
    """The registered variant whose configuration this is (class count aside), else the scenic type name."""
    for name in list_models("vivit_*"):
        entry = get_entry(name)
        if entry.cls is cls and all(kwargs.get(k) == v for k, v in entry.defaults.items()):
            return name
    return f"scenic_{next(k for k, v in ATTENTION_TYPES.items() if v is cls)}"


def load_scenic_vivit(
    path: str | Path,
    *,
    attention_type: str | None = None,
    attention_order: str | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
    **overrides: Any,
) -> torch.nn.Module:
    """A scenic ViViT checkpoint as a model with scenic's forward (eval mode is set by ``from_pretrained``).

    ``attention_type``, ``attention_order``, ``num_frames`` and ``img_size`` are the scenic config's values
    (see the module docstring); ``overrides`` replace other constructor arguments (``num_classes`` different
    from the checkpoint's leaves the classifier new; ``drop_path_rate`` etc. for fine-tuning).
    """
    path = Path(path)
    params = params_tree(read_flax_msgpack(path), path)
    cls, kwargs = infer_architecture(
        params,
        path,
        attention_type=attention_type,
        attention_order=attention_order,
        num_frames=num_frames,
        img_size=img_size,
    )
    state_dict = convert_scenic_vivit(params, cls, kwargs, path)
    model = cls(**{**kwargs, **overrides})
    load_pretrained(model, state_dict, str(path))
    # normalisation: the ViViT models' own, pixels in [-1, 1] as scenic's (video_tfrecord_dataset.py:279-280, 402)
    model.model_name = _registry_name(cls, model.model_args)
    return model


register_format("scenic_vivit", is_scenic_checkpoint, load_scenic_vivit)

__all__ = [
    "ATTENTION_ORDERS",
    "ATTENTION_TYPES",
    "convert_scenic_vivit",
    "infer_architecture",
    "is_scenic_checkpoint",
    "load_scenic_vivit",
    "params_tree",
    "read_flax_msgpack",
]
