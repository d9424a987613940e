"""What every video model here shares: the classification head, timm's model interface, and what code outside
``models/`` may ask a model instead of reading its submodules: the arguments it was built with
(``model_args``), its parameter groups for layer-wise lr decay (``group_matcher``), its token grid for an
input size (``token_grid``), how its attention groups tokens (``attention_layout``) and whether windows may
reuse its per-tubelet features (``supports_streaming``)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from video_transformers.layers import PatchEmbed3d, make_act_layer
from video_transformers.safety.limits import check_model_kwargs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AttentionLayout:
    """Which attention modules mix which tokens: what attention rollout (``inference/rollout.py``) follows.

    ``kind``:

    * ``"joint"``: every module matching ``spatial`` attends over the ``num_prefix_tokens`` prefix (CLS) and
      all ``t*h*w`` patch tokens of the clip, ordered ``(t h w)``;
    * ``"divided"``: ``spatial`` modules attend within one temporal index (prefix + ``h*w``, ``(b t)``
      batches), ``temporal`` modules over the ``t`` patches at one position (``(b h w)`` batches, no prefix);
    * ``"factorised_encoder"``: ``spatial`` modules attend within one temporal index (its own prefix +
      ``h*w``), ``temporal`` modules over the prefix + one feature per temporal index.

    ``spatial`` / ``temporal`` are regular expressions that the module names fully match; ``label`` names the
    layout in rollout outputs.
    """

    kind: Literal["joint", "divided", "factorised_encoder"]
    label: str
    spatial: str
    temporal: str | None = None
    num_prefix_tokens: int = 1


@dataclass(frozen=True)
class ViTArgs:
    """The ViT arguments the model families share, written once. Each family states its defaults
    (:attr:`VideoTransformer.vit_defaults`) and the ones it does not take (:attr:`VideoTransformer.vit_omit`);
    its ``__init__`` takes them through ``**kwargs`` and its signature lists them (see
    :meth:`VideoTransformer.__init_subclass__`)."""

    num_classes: int = 400
    img_size: int = 224
    num_frames: int = 8
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0  # dropout after the position embeddings and in the blocks' MLP / projections
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0  # the last block's; rising linearly from 0
    head_drop_rate: float = 0.0  # dropout before the classifier
    act: str = "gelu"  # a key of layers.ACTIVATIONS
    norm_eps: float = 1e-6

    def block_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~video_transformers.layers.Block` these fix (not ``drop_path``)."""
        return dict(
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            drop=self.drop_rate,
            attn_drop=self.attn_drop_rate,
            act_layer=make_act_layer(self.act),
            norm_eps=self.norm_eps,
        )

    def patch_embed(self, **kwargs: Any) -> PatchEmbed3d:
        """The tokenizer for these sizes; ``kwargs``: the family's other :class:`PatchEmbed3d` arguments."""
        sizes = ("img_size", "num_frames", "patch_size", "in_chans", "embed_dim")
        return PatchEmbed3d(**{k: getattr(self, k) for k in sizes}, **kwargs)


_VIT_FIELDS = {f.name: f for f in fields(ViTArgs)}


class VideoTransformer(nn.Module):
    """Base class: ``forward(x) = forward_head(forward_features(x))`` on ``(B, C, T, H, W)`` input.

    Subclasses build ``self.head`` through :meth:`_init_head`, a ``patch_embed`` with a ``grid(T, H, W)``
    method, and implement ``forward_features`` (tokens), ``pool`` (tokens -> ``(B, D)`` pre-logits) and
    ``group_matcher``.

    The shared ViT arguments (:class:`ViTArgs`) arrive through a subclass ``__init__``'s ``**kwargs`` at
    ``VideoTransformer.__init__``, which fills in the family's :attr:`vit_defaults` and keeps them as
    ``self.vit_args``. A subclass ``__init__`` that ends in ``**kwargs`` gets a signature listing every
    argument it forwards (:meth:`__init_subclass__`).
    """

    # The family's defaults of the shared arguments, and the shared arguments it does not take.
    vit_defaults: ClassVar[ViTArgs] = ViTArgs()
    vit_omit: ClassVar[tuple[str, ...]] = ()
    vit_args: ViTArgs

    num_classes: int
    embed_dim: int
    num_frames: int
    img_size: int
    model_name: str = ""
    # Normalisation the weights expect (the data module reads it; issue: pretrained weights).
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    class_names: list[str] | None = None
    # True where forward_spatial(clip) -> (B, t, D) encodes each temporal index on its own and
    # forward_head(forward_temporal(features)) finishes: sliding windows then share the per-index features.
    supports_streaming: bool = False
    model_args: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> VideoTransformer:
        # Absurd sizes fail here, before any allocation, however the model is built (registry, loaders).
        check_model_kwargs(cls.__name__, kwargs)
        # nanoGPT's model_args: the keyword arguments of this construction, so that a checkpoint can record
        # them and a loader rebuild the same architecture (models take keyword arguments only).
        self = super().__new__(cls)
        self.model_args = dict(kwargs)
        return self

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        unknown = [k for k in kwargs if k not in _VIT_FIELDS or k in self.vit_omit]
        if unknown:
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {unknown[0]!r}")
        self.vit_args = a = replace(self.vit_defaults, **kwargs)
        self.embed_dim, self.num_frames, self.img_size = a.embed_dim, a.num_frames, a.img_size

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Show the arguments a subclass ``__init__`` forwards through ``**kwargs`` in its signature (after
        its own), with this family's defaults, so that ``inspect.signature`` (the registry's argument check,
        ``vt info``, ``config.json``, ``help()``) lists every typed keyword argument the model takes."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        sig = inspect.signature(init) if init else inspect.Signature()
        own = sig.parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values()):
            return
        parent = super(cls, cls).__init__
        if parent is VideoTransformer.__init__:
            kw_only = inspect.Parameter.KEYWORD_ONLY
            forwarded = [inspect.Parameter(n, kw_only, annotation=f.type) for n, f in _VIT_FIELDS.items()]
            forwarded = [p for p in forwarded if p.name not in cls.vit_omit]
        else:
            forwarded = [p for n, p in inspect.signature(parent).parameters.items() if n != "self"]
        forwarded = [
            p.replace(default=getattr(cls.vit_defaults, p.name)) if p.name in _VIT_FIELDS else p
            for p in forwarded
            if p.name not in own
        ]
        mine = [p for p in own.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        init.__signature__ = sig.replace(parameters=mine[:1] + forwarded + mine[1:])

    def _init_head(self, num_classes: int, head_drop_rate: float) -> None:
        self.num_classes = num_classes
        self.head_drop = nn.Dropout(head_drop_rate)
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.model_args["num_classes"] = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self.head)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay: learned tokens and position embeddings."""
        keys = ("token", "pos_embed", "time_embed")
        return {n for n, _ in self.named_parameters() if any(k in n.rsplit(".", 1)[-1] for k in keys)}

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's parameter grouping (``timm.models.group_parameters``), bottom to top: ``stem`` (embeddings,
        group 0), then one group per block of each stack in the order they run; parameters no pattern
        matches (final norms, head) form the top group."""
        raise NotImplementedError

    def token_grid(self, video_shape: Sequence[int] | None = None) -> tuple[int, int, int]:
        """Patch tokens per axis ``(t, h, w)`` for input of ``video_shape`` ``(B, C, T, H, W)`` (default: the
        nominal ``num_frames`` x ``img_size``), in ``(t h w)`` order."""
        shape = video_shape or (1, 3, self.num_frames, self.img_size, self.img_size)
        return self.patch_embed.grid(*shape[2:])

    def attention_layout(self) -> AttentionLayout | None:
        """How the attention modules group tokens (:class:`AttentionLayout`); ``None`` where attention rollout
        is not defined for this model."""
        return None

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (saves memory, costs ~30% time)."""
        for m in self.modules():
            if hasattr(m, "grad_checkpointing"):
                m.grad_checkpointing = enable


def init_weights(module: nn.Module) -> None:
    """timm's ViT initialisation: truncated normal (std 0.02) linear weights, zero biases, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AttentionLayout", "VideoTransformer", "ViTArgs", "init_weights"]
