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
  block half of the heads attend over space and half over time; their outputs are concatenated before the
  output projection. Average pooling, as for Model 3.

Reference figures (``paper=`` in the registry) are from Table 2 of the paper (ViViT-B, Kinetics 400,
tubelet 16x16x2, 32 frames at 224px, one view): GFLOPs 455.2 / 284.4 / 372.3 / 277.1 and parameters
88.9M / 115.1M / 117.3M / 88.9M for Models 1 / 2 / 3 / 4. The papers count multiply-adds as "FLOPs".
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from video_transformers.layers import (
    Attention,
    Block,
    DropPath,
    Encoder,
    Mlp,
    PatchEmbed3d,
    drop_path_rates,
    make_act_layer,
    prepend,
)
from video_transformers.models.base import VideoTransformer, init_weights
from video_transformers.models.registry import register_model

VIVIT_MEAN = (0.5, 0.5, 0.5)  # ViViT's released models take pixels in [-1, 1]
VIVIT_STD = (0.5, 0.5, 0.5)
TABLE2 = "Arnab et al. 2021, Table 2 (ViViT-B, K400, tubelet 16x16x2, 32x224, one view)"


# -- blocks -------------------------------------------------------------------------------------------
class FactorisedSelfAttentionBlock(nn.Module):
    """Model 3's block (eqs. 4-6): spatial MHSA within each temporal index, temporal MHSA at each spatial
    position (order configurable), then the MLP; each with its own pre-norm, residual and stochastic depth.

    The spatial branch keeps timm's names (``norm1``, ``attn``) so image-ViT weights load by name; the
    temporal branch mirrors them (``temporal_norm1``, ``temporal_attn``) so that initialising it from the
    spatial weights, or from zeros (the paper's choice, section 3.4), is a rename of ``attn`` keys.
    Takes and returns ``(B, t*n, D)`` tokens in ``(t h w)`` order.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        temporal_tokens: int,
        order: Literal["spatial_first", "temporal_first"] = "spatial_first",
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if order not in ("spatial_first", "temporal_first"):
            raise ValueError(f"unknown attention order {order!r}; expected 'spatial_first' or 'temporal_first'")
        self.temporal_tokens = temporal_tokens
        self.spatial_first = order == "spatial_first"
        attn = dict(qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, **attn)
        self.drop_path1 = DropPath(drop_path)
        self.temporal_norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.temporal_attn = Attention(dim, num_heads, **attn)
        self.temporal_drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop_path2 = DropPath(drop_path)

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
    """Model 4's attention (eq. 7): the first half of the heads attend over space (tokens of the same
    temporal index), the second half over time (tokens at the same spatial position); the heads are
    concatenated and projected as usual. Tokens must be ``t*n`` patch tokens in ``(t h w)`` order."""

    def __init__(self, dim: int, num_heads: int = 8, *, temporal_tokens: int, **kwargs: float | bool) -> None:
        if num_heads % 2:
            raise ValueError(
                f"factorised dot-product attention splits heads half spatial / half temporal; "
                f"num_heads must be even, got {num_heads}"
            )
        super().__init__(dim, num_heads, **kwargs)
        self.temporal_tokens = temporal_tokens

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h, t = self.num_heads // 2, self.temporal_tokens
        space = [rearrange(z[:, :h], "b h (t n) d -> (b t) h n d", t=t) for z in (q, k, v)]
        time = [rearrange(z[:, h:], "b h (t n) d -> (b n) h t d", t=t) for z in (q, k, v)]
        space = rearrange(super().attend(*space), "(b t) h n d -> b h (t n) d", t=t)
        time = rearrange(super().attend(*time), "(b n) h t d -> b h (t n) d", b=q.shape[0])
        return torch.cat([space, time], dim=1)  # b heads (t n) d: spatial heads first


class FactorisedDotProductBlock(Block):
    """A pre-norm :class:`Block` whose attention is :class:`FactorisedDotProductAttention`."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        temporal_tokens: int,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        **kwargs: float | type[nn.Module],
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, drop=drop, attn_drop=attn_drop, **kwargs)
        self.attn = FactorisedDotProductAttention(
            dim, num_heads, temporal_tokens=temporal_tokens, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop
        )


class BlockStack(nn.Module):
    """Blocks then a final LayerNorm, with gradient checkpointing: :class:`Encoder` for any block type."""

    def __init__(self, blocks: list[nn.Module], dim: int, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = checkpoint(blk, x, use_reentrant=False) if self.grad_checkpointing and self.training else blk(x)
        return self.norm(x)


# -- models -------------------------------------------------------------------------------------------
class _ViViT(VideoTransformer):
    """Shared stem of the four models: tokeniser, sizes, normalisation, head and initialisation."""

    def _init_stem(
        self,
        *,
        img_size: int,
        num_frames: int,
        patch_size: int,
        tubelet_size: int,
        in_chans: int,
        embed_dim: int,
        drop_rate: float,
    ) -> tuple[int, int]:
        self.embed_dim, self.num_frames, self.img_size, self.in_chans = embed_dim, num_frames, img_size, in_chans
        self.mean, self.std = VIVIT_MEAN, VIVIT_STD
        self.patch_embed = PatchEmbed3d(
            img_size=img_size,
            num_frames=num_frames,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
        )
        self.pos_drop = nn.Dropout(drop_rate)
        return self.patch_embed.grid_size[0], self.patch_embed.num_patches

    def _init_weights(self, *tokens: nn.Parameter) -> None:
        init_weights(self)
        for p in tokens:
            nn.init.trunc_normal_(p, std=0.02)


class ViViTSpatioTemporal(_ViViT):
    """ViViT Model 1: joint space-time attention over all ``t*n`` tokens plus a CLS token."""

    attention_pattern = "joint space-time attention over all tokens + CLS (ViViT Model 1)"

    def __init__(
        self,
        *,
        num_classes: int = 400,
        img_size: int = 224,
        num_frames: int = 32,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_drop_rate: float = 0.0,
        act: str = "gelu",
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        t, n = self._init_stem(
            img_size=img_size,
            num_frames=num_frames,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            drop_rate=drop_rate,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + t * n, embed_dim))
        self.encoder = Encoder(
            embed_dim,
            depth,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
            drop_path=drop_path_rate,
            act_layer=make_act_layer(act),
            norm_eps=norm_eps,
        )
        self._init_head(num_classes, head_drop_rate)
        self._init_weights(self.cls_token, self.pos_embed)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, 1 + t*n, D)`` tokens, CLS first."""
        x = rearrange(self.patch_embed(x), "b t n d -> b (t n) d")
        x = self.pos_drop(prepend(self.cls_token, x) + self.pos_embed)
        return self.encoder(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class ViViTFactorisedEncoder(_ViViT):
    """ViViT Model 2: ``L_s`` spatial blocks per temporal index, then ``L_t`` temporal blocks."""

    attention_pattern = "spatial encoder per temporal index, then temporal encoder over CLS tokens (ViViT Model 2)"

    def __init__(
        self,
        *,
        num_classes: int = 400,
        img_size: int = 224,
        num_frames: int = 32,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        spatial_depth: int = 12,
        temporal_depth: int = 4,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_drop_rate: float = 0.0,
        act: str = "gelu",
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        t, n = self._init_stem(
            img_size=img_size,
            num_frames=num_frames,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            drop_rate=drop_rate,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, embed_dim))
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, 1 + t, embed_dim))
        enc = dict(
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
            drop_path=drop_path_rate,
            act_layer=make_act_layer(act),
            norm_eps=norm_eps,
        )
        self.spatial = Encoder(embed_dim, spatial_depth, num_heads, **enc)
        self.temporal = Encoder(embed_dim, temporal_depth, num_heads, **enc)
        self._init_head(num_classes, head_drop_rate)
        self._init_weights(self.cls_token, self.pos_embed, self.temporal_cls_token, self.temporal_pos_embed)

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> per-temporal-index spatial CLS features ``(B, t, D)``."""
        x = self.patch_embed(x)  # b t n d
        b = x.shape[0]
        x = rearrange(x, "b t n d -> (b t) n d")
        x = self.pos_drop(prepend(self.cls_token, x) + self.pos_embed)
        x = self.spatial(x)[:, 0]  # (b t) d: each temporal index's CLS
        return rearrange(x, "(b t) d -> b t d", b=b)

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        """Per-index features ``(B, t, D)`` -> temporal tokens ``(B, 1 + t, D)``."""
        x = self.pos_drop(prepend(self.temporal_cls_token, x) + self.temporal_pos_embed)
        return self.temporal(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_temporal(self.forward_spatial(x))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class _ViViTFactorisedBlocks(_ViViT):
    """Models 3 and 4: ``t*n`` patch tokens (no CLS) through a stack of factorised blocks, then global
    average pooling (section 3.3). Subclasses name their block class in ``block_fn``."""

    block_fn: type[nn.Module]

    def __init__(
        self,
        *,
        num_classes: int = 400,
        img_size: int = 224,
        num_frames: int = 32,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_drop_rate: float = 0.0,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        **block_kwargs: str,
    ) -> None:
        super().__init__()
        t, n = self._init_stem(
            img_size=img_size,
            num_frames=num_frames,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            drop_rate=drop_rate,
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, t * n, embed_dim))
        blocks = [
            self.block_fn(
                embed_dim,
                num_heads,
                temporal_tokens=t,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=p,
                act_layer=make_act_layer(act),
                norm_eps=norm_eps,
                **block_kwargs,
            )
            for p in drop_path_rates(drop_path_rate, depth)
        ]
        self.encoder = BlockStack(blocks, embed_dim, norm_eps)
        self._init_head(num_classes, head_drop_rate)
        self._init_weights(self.pos_embed)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, t*n, D)`` tokens in ``(t h w)`` order."""
        x = rearrange(self.patch_embed(x), "b t n d -> b (t n) d")
        return self.encoder(self.pos_drop(x + self.pos_embed))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class ViViTFactorisedSelfAttention(_ViViTFactorisedBlocks):
    """ViViT Model 3: per block spatial then temporal self-attention (or the reverse), then the MLP."""

    attention_pattern = "per block: spatial then temporal self-attention, average pooling (ViViT Model 3)"
    block_fn = FactorisedSelfAttentionBlock

    def __init__(
        self,
        *,
        num_classes: int = 400,
        img_size: int = 224,
        num_frames: int = 32,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_drop_rate: float = 0.0,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        order: Literal["spatial_first", "temporal_first"] = "spatial_first",
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            img_size=img_size,
            num_frames=num_frames,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            head_drop_rate=head_drop_rate,
            act=act,
            norm_eps=norm_eps,
            order=order,
        )


class ViViTFactorisedDotProduct(_ViViTFactorisedBlocks):
    """ViViT Model 4: half of the heads attend over space, half over time, in every block."""

    attention_pattern = "per block: half the heads spatial, half temporal, average pooling (ViViT Model 4)"
    block_fn = FactorisedDotProductBlock

    def __init__(
        self,
        *,
        num_classes: int = 400,
        img_size: int = 224,
        num_frames: int = 32,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_drop_rate: float = 0.0,
        act: str = "gelu",
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            img_size=img_size,
            num_frames=num_frames,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            head_drop_rate=head_drop_rate,
            act=act,
            norm_eps=norm_eps,
        )


# -- registry -----------------------------------------------------------------------------------------
_B16X2 = dict(img_size=224, num_frames=32, patch_size=16, tubelet_size=2, embed_dim=768, num_heads=12)
_TINY = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=2, num_heads=4)
_TINY_FE = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=64, spatial_depth=2, temporal_depth=1, num_heads=4)

register_model(
    "vivit_base_spatio_temporal_16x2",
    ViViTSpatioTemporal,
    tiny=_TINY,
    paper=dict(params_m=88.9, gflops=455.2, source=TABLE2),
    depth=12,
    **_B16X2,
)
register_model(
    "vivit_base_factorised_encoder_16x2",
    ViViTFactorisedEncoder,
    tiny=_TINY_FE,
    paper=dict(params_m=115.1, gflops=284.4, source=TABLE2),
    spatial_depth=12,
    temporal_depth=4,
    **_B16X2,
)
register_model(
    "vivit_base_factorised_self_attention_16x2",
    ViViTFactorisedSelfAttention,
    tiny=_TINY,
    paper=dict(params_m=117.3, gflops=372.3, source=TABLE2),
    depth=12,
    **_B16X2,
)
register_model(
    "vivit_base_factorised_dot_product_16x2",
    ViViTFactorisedDotProduct,
    tiny=_TINY,
    paper=dict(params_m=88.9, gflops=277.1, source=TABLE2),
    depth=12,
    **_B16X2,
)
# ViViT-L (ViT-L sizes: 24 layers, width 1024, 16 heads; paper Table 1), Model 1: the size of the released
# K400 ViViT-L/16x2 checkpoint. No per-view params/GFLOPs for this configuration are recorded here: the
# paper's Table 6 reports multi-view totals only.
register_model(
    "vivit_large_spatio_temporal_16x2",
    ViViTSpatioTemporal,
    tiny=dict(_TINY, num_heads=2),
    paper=dict(source="Arnab et al. 2021, Table 1 (ViViT-L: 24 layers, D=1024, 16 heads, MLP 4096)"),
    **{**_B16X2, "embed_dim": 1024, "num_heads": 16},
    depth=24,
)
