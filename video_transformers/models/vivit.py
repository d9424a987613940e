"""ViViT (Arnab et al., "ViViT: A Video Vision Transformer", ICCV 2021): the four models of section 3.3.

Every model takes ``(B, C, T, H, W)`` video, tokenised by uniform frame sampling (``tubelet_size=1``) or
tubelet embedding (eq. 8, ``t x p x p`` kernels); tokens are ordered ``(t h w)``.

* Model 1, spatio-temporal attention (:class:`ViViTSpatioTemporal`): all ``t*n`` tokens and a CLS token
  through one ViT encoder (section 3.3, "Model 1"), with a ``(1, 1 + t*n, D)`` position embedding.
* Model 2, factorised encoder (:class:`ViViTFactorisedEncoder`, Fig. 4): a spatial encoder run on each
  temporal index with its own CLS token, then a temporal encoder over the per-index CLS tokens. As in
  scenic both encoders end with a LayerNorm and use learned 1D position embeddings.
* Model 3, factorised self-attention (:class:`ViViTFactorisedSelfAttention`, Fig. 5, eqs. 4-6): each block
  runs self-attention within each temporal index, then across time at each spatial position, then the
  MLP. No CLS token: the paper drops it "to avoid ambiguities when reshaping the input tokens between
  spatial and temporal dimensions"; the encoder output is globally average-pooled.
* Model 4, factorised dot-product attention (:class:`ViViTFactorisedDotProduct`, Fig. 6, eq. 7): in every
  block half of the heads attend over time and half over space; their outputs are concatenated before the
  output projection. Average pooling, as for Model 3.

The reference implementation is scenic (``scenic/projects/vivit/model.py``, ``model_utils.py``); where the
paper leaves a choice open these models do what scenic does, and say where they differ:

* activation: flax's ``nn.gelu``, the tanh approximation (``act="gelu_tanh"``, model.py:255, 335);
* Model 4's heads: the first half attend over time, the second over space (model_utils.py:120-166);
* Model 3's order: the paper's spatial-then-temporal (eqs. 4-5) by default; scenic's ``attention_order``
  ``"time_space"`` is ``order="temporal_first"`` (model.py:302-307);
* CLS tokens start at zero (model.py:521, 599);
* not followed by default: scenic zero-initialises the classifier (model.py:556-559, 658-661); that is
  ``head_init="zeros"``. The default is timm's truncated normal (``"trunc_normal"``) because scenic always
  starts from image weights, while this suite also trains from scratch: measured on the tiny Model 2 of
  ``tests/test_explain.py`` (400 AdamW steps from scratch), a zero classifier with zero CLS tokens stays at
  chance (loss 2.49 = ln 12), the truncated-normal one reaches 1.13;
* stochastic depth is not rescaled by ``1 / keep`` (``drop_path_scale_by_keep=False``, model.py:246-247);
  ``True`` is timm's. Scenic's Model 3 block never applies it (``droplayer_p`` is unused, model.py:264-340);
  here Model 3 applies ``drop_path_rate`` to its three residual branches, so the default rate 0 matches scenic;
* scenic's ``classifier="gap"`` for Models 1 and 2 is ``global_pool="avg"`` (no CLS tokens, mean of the
  tokens, model.py:541-545, 616-620);
* not followed: scenic initialises fresh kernels with Xavier / LeCun normal and MLP biases with N(0, 1e-6);
  here every fresh linear is truncated normal (std 0.02) with zero bias, as in timm. Scenic's recipes start
  from image weights (model_utils.py:296), which replace all of them except the classifier.

Reference figures (``paper=`` in the registry) are from Table 2 of the paper (ViViT-B, Kinetics 400,
tubelet 16x16x2, 32 frames at 224px, one view): GFLOPs 455.2 / 284.4 / 372.3 / 277.1 and parameters
88.9M / 115.1M / 117.3M / 88.9M for Models 1 / 2 / 3 / 4. The papers count multiply-adds as "FLOPs".
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any, Literal

import torch
from einops import rearrange
from torch import nn

from video_transformers.layers import (
    Attention,
    Block,
    DropPath,
    Encoder,
    prepend,
)
from video_transformers.models.base import AttentionLayout, VideoTransformer, ViTArgs, init_weights
from video_transformers.models.registry import register_model

VIVIT_MEAN = (0.5, 0.5, 0.5)  # ViViT's released models take pixels in [-1, 1]
VIVIT_STD = (0.5, 0.5, 0.5)
TABLE2 = "Arnab et al. 2021, Table 2 (ViViT-B, K400, tubelet 16x16x2, 32x224, one view)"
Order = Literal["spatial_first", "temporal_first"]
GlobalPool = Literal["token", "avg"]
HeadInit = Literal["zeros", "trunc_normal"]


# -- blocks -------------------------------------------------------------------------------------------
class FactorisedSelfAttentionBlock(Block):
    """Model 3's block (eqs. 4-6): spatial MHSA within each temporal index, temporal MHSA at each spatial
    position (order configurable), then the MLP; each with its own pre-norm, residual and stochastic depth.

    The spatial branch keeps timm's names (``norm1``, ``attn``) so image-ViT weights load by name; the
    temporal branch (``temporal_norm1``, ``temporal_attn``) is built as a copy of the spatial one (same
    configuration; models initialise every weight afterwards). Scenic names them ``LayerNorm_space`` /
    ``MultiHeadDotProductAttention_space`` and ``..._time`` (model.py:309-321).
    Takes and returns ``(B, t*n, D)`` tokens in ``(t h w)`` order.
    """

    def __init__(
        self, dim: int, num_heads: int, *, temporal_tokens: int, order: Order = "spatial_first", **block_kwargs: Any
    ) -> None:
        if order not in ("spatial_first", "temporal_first"):
            raise ValueError(f"unknown attention order {order!r}; expected 'spatial_first' or 'temporal_first'")
        super().__init__(dim, num_heads, **block_kwargs)
        self.temporal_tokens = temporal_tokens
        self.spatial_first = order == "spatial_first"
        self.temporal_norm1 = copy.deepcopy(self.norm1)
        self.temporal_attn = copy.deepcopy(self.attn)
        self.temporal_drop_path1 = copy.deepcopy(self.drop_path1)

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 4: self-attention among the ``n`` tokens of each temporal index."""
        t = self.temporal_tokens
        y = rearrange(self.norm1(x), "b (t n) d -> (b t) n d", t=t)
        y = rearrange(self.attn(y), "(b t) n d -> b (t n) d", t=t)
        return x + self.drop_path1(y)  # drop path per video, not per folded sequence

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 5: self-attention among the ``t`` tokens at each spatial position."""
        t = self.temporal_tokens
        y = rearrange(self.temporal_norm1(x), "b (t n) d -> (b n) t d", t=t)
        y = rearrange(self.temporal_attn(y), "(b n) t d -> b (t n) d", b=x.shape[0])
        return x + self.temporal_drop_path1(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial_first:
            x = self.forward_temporal(self.forward_spatial(x))
        else:
            x = self.forward_spatial(self.forward_temporal(x))
        return x + self.drop_path2(self.mlp(self.norm2(x)))  # eq. 6


class FactorisedDotProductAttention(Attention):
    """Model 4's attention (eq. 7): the first half of the heads attend over time (tokens at the same spatial
    position), the second half over space (tokens of the same temporal index); the heads are concatenated
    and projected as usual. Scenic splits the ``(D, heads, head_dim)`` projections by head and gives split
    ``i`` to axis ``i + 1`` of ``(b, t, hw, heads, d)``, i.e. time first (model_utils.py:120-166).
    Tokens must be ``t*n`` patch tokens in ``(t h w)`` order."""

    def __init__(self, dim: int, num_heads: int = 8, *, temporal_tokens: int, **kwargs: float | bool) -> None:
        if num_heads % 2:
            raise ValueError(
                f"factorised dot-product attention splits heads half temporal / half spatial; "
                f"num_heads must be even, got {num_heads}"
            )
        super().__init__(dim, num_heads, **kwargs)
        self.temporal_tokens = temporal_tokens

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h, t = self.num_heads // 2, self.temporal_tokens
        time = [rearrange(z[:, :h], "b h (t n) d -> (b n) h t d", t=t) for z in (q, k, v)]
        space = [rearrange(z[:, h:], "b h (t n) d -> (b t) h n d", t=t) for z in (q, k, v)]
        time = rearrange(super().attend(*time), "(b n) h t d -> b h (t n) d", b=q.shape[0])
        space = rearrange(super().attend(*space), "(b t) h n d -> b h (t n) d", t=t)
        return torch.cat([time, space], dim=1)  # b heads (t n) d: temporal heads first


class FactorisedDotProductBlock(Block):
    """A pre-norm :class:`Block` whose attention is :class:`FactorisedDotProductAttention`."""

    def __init__(self, dim: int, num_heads: int, *, temporal_tokens: int, **block_kwargs: Any) -> None:
        attn_layer = partial(FactorisedDotProductAttention, temporal_tokens=temporal_tokens)
        super().__init__(dim, num_heads, attn_layer=attn_layer, **block_kwargs)


# -- models -------------------------------------------------------------------------------------------
class _ViViT(VideoTransformer):
    """What the four models share: the arguments, tokeniser, block settings, classifier and initialisation.

    Subclasses take their own arguments and forward the rest here (their ``__init__`` signature shows all of
    them, see :meth:`VideoTransformer.__init_subclass__`).
    """

    num_prefix_tokens: int = 0  # CLS tokens before the patch tokens (timm's name)

    vit_defaults = ViTArgs(num_frames=32, act="gelu_tanh")

    def __init__(
        self,
        *,
        tubelet_size: int = 2,
        drop_path_scale_by_keep: bool = False,
        head_init: HeadInit = "trunc_normal",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if head_init not in ("zeros", "trunc_normal"):
            raise ValueError(f"unknown head_init {head_init!r}; expected 'zeros' (scenic) or 'trunc_normal' (timm)")
        a = self.vit_args
        self.in_chans, self.num_heads = a.in_chans, a.num_heads
        self.drop_path_rate, self.head_init = a.drop_path_rate, head_init
        self.mean, self.std = VIVIT_MEAN, VIVIT_STD
        self.patch_embed = a.patch_embed(tubelet_size=tubelet_size)
        self.pos_drop = nn.Dropout(a.drop_rate)
        drop_path_layer = partial(DropPath, scale_by_keep=drop_path_scale_by_keep)
        self._block_kwargs = dict(a.block_kwargs(), drop_path_layer=drop_path_layer)
        self._init_head(a.num_classes, a.head_drop_rate)

    def _stack(self, block_fn: type[nn.Module], depth: int, **block_kwargs: Any) -> Encoder:
        """``depth`` blocks with drop-path rising linearly to ``drop_path_rate`` (model.py:428-430), then a
        final LayerNorm (model.py:445-446)."""
        return Encoder(
            self.embed_dim,
            depth,
            self.num_heads,
            drop_path=self.drop_path_rate,
            block_fn=block_fn,
            **self._block_kwargs,
            **block_kwargs,
        )

    def _init_weights(self, *, pos_embeds: list[nn.Parameter], cls_tokens: list[nn.Parameter]) -> None:
        init_weights(self)
        for p in pos_embeds:
            nn.init.trunc_normal_(p, std=0.02)  # scenic: N(0, 0.02) (model.py:383-385)
        for p in cls_tokens:
            nn.init.zeros_(p)  # scenic: zeros (model.py:521, 599)
        self._init_classifier()

    def _init_classifier(self) -> None:
        if self.head_init == "zeros" and isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)  # scenic's output_projection (model.py:556-559)
            nn.init.zeros_(self.head.bias)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        self._init_classifier()

    def _tokens(self, x: torch.Tensor, cls_token: nn.Parameter | None, pos_embed: nn.Parameter) -> torch.Tensor:
        """``[CLS] + tokens`` (when the model has CLS tokens) plus position embeddings, then dropout."""
        if cls_token is not None:
            x = prepend(cls_token, x)
        return self.pos_drop(x + pos_embed)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """The CLS token, or the mean of all tokens when there is none (scenic's ``gap``)."""
        return x[:, 0] if self.num_prefix_tokens else x.mean(dim=1)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return self._pool(x)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Embeddings, then ``encoder.blocks.<i>`` (Models 1, 3, 4)."""
        return {"stem": r"^(?:cls_token|pos_embed|patch_embed)(?:\.|$)", "blocks": r"^encoder\.blocks\.(\d+)\."}


def _check_pool(global_pool: str) -> bool:
    if global_pool not in ("token", "avg"):
        raise ValueError(f"unknown global_pool {global_pool!r}; expected 'token' (CLS) or 'avg' (scenic's gap)")
    return global_pool == "token"


class ViViTSpatioTemporal(_ViViT):
    """ViViT Model 1: joint space-time attention over all ``t*n`` tokens plus a CLS token (or, with
    ``global_pool="avg"``, over the patch tokens only, averaged)."""

    attention_pattern = "joint space-time attention over all tokens + CLS (ViViT Model 1)"

    def __init__(self, *, depth: int = 12, global_pool: GlobalPool = "token", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        token = _check_pool(global_pool)
        self.num_prefix_tokens = int(token)
        t, n, d = self.patch_embed.grid_size[0], self.patch_embed.num_patches, self.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + t * n, d))
        self.encoder = self._stack(Block, depth)
        self._init_weights(pos_embeds=[self.pos_embed], cls_tokens=[self.cls_token] if token else [])

    def attention_layout(self) -> AttentionLayout | None:
        """Joint attention over the CLS token and all ``t*n`` patches (none to follow without a CLS token)."""
        if not self.num_prefix_tokens:
            return None
        return AttentionLayout("joint", "ViViTSpatioTemporal joint space-time", r"encoder\.blocks\.\d+\.attn")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, [1 +] t*n, D)`` tokens, CLS first."""
        x = rearrange(self.patch_embed(x), "b t n d -> b (t n) d")
        return self.encoder(self._tokens(x, self.cls_token, self.pos_embed))


class ViViTFactorisedEncoder(_ViViT):
    """ViViT Model 2: ``L_s`` spatial blocks per temporal index, then ``L_t`` temporal blocks, each encoder
    with its own CLS token (or, with ``global_pool="avg"``, averaging its tokens instead)."""

    attention_pattern = "spatial encoder per temporal index, then temporal encoder over CLS tokens (ViViT Model 2)"
    supports_streaming = True  # forward_spatial encodes each temporal index alone (Fig. 4)

    def __init__(
        self, *, spatial_depth: int = 12, temporal_depth: int = 4, global_pool: GlobalPool = "token", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        token = _check_pool(global_pool)
        self.num_prefix_tokens = int(token)
        t, n, d = self.patch_embed.grid_size[0], self.patch_embed.num_patches, self.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + n, d))
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, d)) if token else None
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + t, d))
        self.spatial = self._stack(Block, spatial_depth)
        self.temporal = self._stack(Block, temporal_depth)
        cls = [self.cls_token, self.temporal_cls_token] if token else []
        self._init_weights(pos_embeds=[self.pos_embed, self.temporal_pos_embed], cls_tokens=cls)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Embeddings (both encoders'), the spatial blocks, then the temporal blocks on top of them."""
        return {
            "stem": r"^(?:cls_token|pos_embed|patch_embed|temporal_cls_token|temporal_pos_embed)(?:\.|$)",
            "blocks": r"^spatial\.blocks\.(\d+)\.",
            "temporal_blocks": r"^temporal\.blocks\.(\d+)\.",
        }

    def attention_layout(self) -> AttentionLayout | None:
        """Spatial attention per temporal index and temporal attention over the indices, each with its CLS."""
        if not self.num_prefix_tokens:
            return None
        spatial, temporal = r"spatial\.blocks\.\d+\.attn", r"temporal\.blocks\.\d+\.attn"
        return AttentionLayout("factorised_encoder", "ViViT factorised encoder", spatial, temporal)

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> per-temporal-index spatial features ``(B, t, D)`` (CLS or mean)."""
        x = self.patch_embed(x)  # b t n d
        b = x.shape[0]
        x = self.spatial(self._tokens(rearrange(x, "b t n d -> (b t) n d"), self.cls_token, self.pos_embed))
        return rearrange(self._pool(x), "(b t) d -> b t d", b=b)

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        """Per-index features ``(B, t, D)`` -> temporal tokens ``(B, [1 +] t, D)``."""
        return self.temporal(self._tokens(x, self.temporal_cls_token, self.temporal_pos_embed))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_temporal(self.forward_spatial(x))


class _ViViTFactorisedBlocks(_ViViT):
    """Models 3 and 4: ``t*n`` patch tokens (no CLS) through a stack of factorised blocks, then global
    average pooling (section 3.3; scenic asserts the token classifier away for them, model.py:506-513)."""

    def _build(self, block_fn: type[nn.Module], depth: int, **block_kwargs: Any) -> None:
        t, n = self.patch_embed.grid_size[0], self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, t * n, self.embed_dim))
        self.encoder = self._stack(block_fn, depth, temporal_tokens=t, **block_kwargs)
        self._init_weights(pos_embeds=[self.pos_embed], cls_tokens=[])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, t*n, D)`` tokens in ``(t h w)`` order."""
        x = rearrange(self.patch_embed(x), "b t n d -> b (t n) d")
        return self.encoder(self._tokens(x, None, self.pos_embed))


class ViViTFactorisedSelfAttention(_ViViTFactorisedBlocks):
    """ViViT Model 3: per block spatial then temporal self-attention (``order="temporal_first"``: the
    reverse, scenic's ``attention_order="time_space"``), then the MLP."""

    attention_pattern = "per block: spatial then temporal self-attention, average pooling (ViViT Model 3)"

    def __init__(self, *, depth: int = 12, order: Order = "spatial_first", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build(FactorisedSelfAttentionBlock, depth, order=order)


class ViViTFactorisedDotProduct(_ViViTFactorisedBlocks):
    """ViViT Model 4: half of the heads attend over time, half over space, in every block."""

    attention_pattern = "per block: half the heads temporal, half spatial, average pooling (ViViT Model 4)"

    def __init__(self, *, depth: int = 12, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build(FactorisedDotProductBlock, depth)


# -- registry -----------------------------------------------------------------------------------------
_B16X2 = dict(img_size=224, num_frames=32, patch_size=16, tubelet_size=2, embed_dim=768, num_heads=12)
_L16X2 = dict(_B16X2, embed_dim=1024, num_heads=16)  # ViViT-L (ViT-L sizes; paper Table 1)
_TINY = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=2, num_heads=4)
_TINY_FE = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=64, spatial_depth=2, temporal_depth=1, num_heads=4)


def _vivit(name: str, cls: type[_ViViT], sizes: dict, tiny: dict, paper: dict, **depths: int) -> None:
    register_model(name, cls, tiny=tiny, paper=paper, **sizes, **depths)


def _table2(params_m: float, gflops: float) -> dict:
    return dict(params_m=params_m, gflops=gflops, source=TABLE2)


_vivit("vivit_base_spatio_temporal_16x2", ViViTSpatioTemporal, _B16X2, _TINY, _table2(88.9, 455.2), depth=12)
_vivit("vivit_base_factorised_encoder_16x2", ViViTFactorisedEncoder, _B16X2, _TINY_FE, _table2(115.1, 284.4),
       spatial_depth=12, temporal_depth=4)  # fmt: skip
_vivit("vivit_base_factorised_self_attention_16x2", ViViTFactorisedSelfAttention, _B16X2, _TINY,
       _table2(117.3, 372.3), depth=12)  # fmt: skip
_vivit("vivit_base_factorised_dot_product_16x2", ViViTFactorisedDotProduct, _B16X2, _TINY, _table2(88.9, 277.1),
       depth=12)  # fmt: skip
# ViViT-L Model 1: the size of the released K400 ViViT-L/16x2 checkpoint. No per-view params/GFLOPs for this
# configuration are recorded here: the paper's Table 6 reports multi-view totals only.
_vivit("vivit_large_spatio_temporal_16x2", ViViTSpatioTemporal, _L16X2, dict(_TINY, num_heads=2),
       dict(source="Arnab et al. 2021, Table 1 (ViViT-L: 24 layers, D=1024, 16 heads, MLP 4096)"),
       depth=24)  # fmt: skip
# ViViT-L/16x2 factorised encoder, the model of scenic's released ViViT-L checkpoints (K400, K600, Epic
# Kitchens, SSv2: scenic/projects/vivit/README.md:51-54). Sizes from scenic's Kinetics config
# (configs/kinetics400/vivit_large_factorised_encoder.py:87-109: 24 spatial and 24 temporal layers of width
# 1024, 16 heads, MLP 4096, tubelet 16x16x2, 32 frames at 224px); its Epic Kitchens and SSv2 configs use 4
# temporal layers (pass temporal_depth=4; from_pretrained reads the depth from the checkpoint). Scenic's
# README reports 80.3 / 81.6 top-1 (K400 / K600, 4x3 views) for these checkpoints; per-view params/GFLOPs
# of this configuration are not recorded here (the paper's Table 6 gives multi-view totals only).
_vivit("vivit_large_factorised_encoder_16x2", ViViTFactorisedEncoder, _L16X2, dict(_TINY_FE, num_heads=2),
       dict(source="scenic ViViT README (ViViT-L/16x2 FE: K400 80.3, K600 81.6 top-1, 4x3 views); sizes from "
            "scenic's configs/kinetics400/vivit_large_factorised_encoder.py"),
       spatial_depth=24, temporal_depth=24)  # fmt: skip
