"""UniFormerV2's blocks (Li et al., "UniFormerV2: Unlocking the Potential of Image ViTs for Video
Understanding", ICCV 2023, section 3 / Fig. 3), on the shared :class:`Attention` and :class:`Block`.

* :class:`LocalMHRA` - the local UniBlock's temporal relation aggregator (LT-MHRA, eq. 4): BatchNorm3d,
  1x1x1 down-projection, depthwise ``k x 1 x 1`` temporal convolution, 1x1x1 up-projection (zero-initialised).
* :class:`LocalUniBlock` - a CLIP ViT block with LT-MHRA as a residual on the patch tokens before the
  MHSA and (``double``) before the FFN (eqs. 2-3; the official ``ResidualAttentionBlock``).
* :class:`GlobalUniBlock` - dynamic position encoding (depthwise 3x3x3 conv, eq. 5) on the stage's tokens,
  then cross-attention of one learnable query to all of them and an FFN (eqs. 6-8; the official
  ``Extractor``), with zero-initialised output projections.
* :class:`SharedDropPath` and :class:`CastLayerNorm` - stochastic depth and LayerNorm as the official code
  computes them (``OpenGVLab/UniFormerV2 slowfast/models/uniformerv2_model.py``, cited below as ``official``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from einops import rearrange
from torch import nn

from video_transformers.layers.attention import Attention
from video_transformers.layers.block import Block
from video_transformers.layers.mlp import Mlp, QuickGELU
from video_transformers.layers.tokens import split_prefix


class SharedDropPath(nn.Module):
    """Stochastic depth whose keep/drop draw varies along the axes ``dims`` only and is shared along the rest.

    The official code applies timm's per-sample ``DropPath`` (mask shape ``(x.shape[0], 1, ...)``, drawn with
    ``bernoulli_`` and scaled by ``1 / keep``) to tensors whose first axis is not the sample, so what it drops
    depends on the layout (official lines 70, 106, 114, 119, 127 and 138, 180-181):

    * CLIP blocks, ``(1 + h*w, B*t, D)``: one draw per token position, shared by every clip and frame;
    * local MHRA, ``(B, D, t, h, w)``: one draw per clip;
    * global blocks, the query ``(1, B, D)``: one draw for the whole batch.

    ``dims`` names the axes of *our* tensor that carry the draws; the draws are made in the same number and
    order as timm's, so under one RNG seed the masks equal the official ones.
    """

    def __init__(self, p: float = 0.0, *, dims: tuple[int, ...] = (0,)) -> None:
        super().__init__()
        self.p, self.dims = p, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty([n if i in self.dims else 1 for i, n in enumerate(x.shape)]).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, dims={self.dims}"


class CastLayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in the input's dtype (CLIP's; official lines 26-32).

    Under autocast this keeps the CLIP blocks' residual stream in half precision, as the official model does,
    where ``nn.LayerNorm`` would return float32 and promote the stream. In float32 it is ``nn.LayerNorm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class LocalMHRA(nn.Module):
    """LT-MHRA (UniFormerV2 eq. 4): a depthwise temporal convolution between 1x1x1 projections.

    Acts on patch tokens ``((B t), h*w, D)`` and returns the branch output (no residual) in the same
    layout. Each spatial position mixes only with itself at neighbouring times (kernel ``k x 1 x 1``); the
    up-projection is zero-initialised, so the branch starts at zero and the block starts as the image block.
    Sub-module names (``pos_embed.0..3``) are the official ones.
    """

    def __init__(self, dim: int, *, reduction: float = 1.5, kernel_size: int = 3) -> None:
        super().__init__()
        inner = int(dim // reduction)
        self.pos_embed = nn.Sequential(
            nn.BatchNorm3d(dim),
            nn.Conv3d(dim, inner, kernel_size=1),
            nn.Conv3d(inner, inner, kernel_size=(kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0), groups=inner),
            nn.Conv3d(inner, dim, kernel_size=1),
        )
        # zero-init: the local branch starts as identity (official Local_MHRA)
        nn.init.zeros_(self.pos_embed[3].weight)
        nn.init.zeros_(self.pos_embed[3].bias)

    def forward(self, x: torch.Tensor, num_frames: int, grid_size: tuple[int, int]) -> torch.Tensor:
        h, w = grid_size
        x = rearrange(x, "(b t) (h w) d -> b d t h w", t=num_frames, h=h, w=w)
        x = self.pos_embed(x)
        return rearrange(x, "b d t h w -> (b t) (h w) d")


class ImageBlock(Block):
    """The CLIP ViT block (:class:`Block`, timm names) with the video-block call signature.

    The official ``ResidualAttentionBlock`` without local MHRA (K400 recipes, ``NO_LMHRA: True``): CLIP's
    LayerNorm (:class:`CastLayerNorm`, official lines 84 and 90) and one drop-path draw per token position,
    shared by every clip and frame (official line 70 on ``(1 + h*w, B*t, D)`` tensors, lines 114 and 127).
    """

    def __init__(self, dim: int, num_heads: int, *, norm_eps: float = 1e-5, **block_kwargs: Any) -> None:
        super().__init__(
            dim,
            num_heads,
            norm_eps=norm_eps,
            norm_layer=CastLayerNorm,
            drop_path_layer=partial(SharedDropPath, dims=(1,)),  # tokens ((B t), n, D): draws along n
            **block_kwargs,
        )

    def forward(self, x: torch.Tensor, num_frames: int, grid_size: tuple[int, int]) -> torch.Tensor:
        return super().forward(x)


class LocalUniBlock(ImageBlock):
    """:class:`ImageBlock` with LT-MHRA residuals on the patch tokens (the official ``ResidualAttentionBlock``).

    ``x_p += LMHRA1(x_p)`` before the MHSA and, with ``double=True``, ``x_p += LMHRA2(x_p)`` before the
    FFN (UniFormerV2 eqs. 2-3, Fig. 3 "Local UniBlock"; official lines 99-121); the CLS token (first token)
    bypasses them. The LT-MHRA branches share the block's drop-path rate with one draw per clip (official
    lines 106 and 119 on ``(B, D, t, h, w)`` tensors).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        double: bool = True,
        reduction: float = 1.5,
        kernel_size: int = 3,
        drop_path: float = 0.0,
        **block_kwargs: Any,
    ) -> None:
        super().__init__(dim, num_heads, drop_path=drop_path, **block_kwargs)
        self.lmhra1 = LocalMHRA(dim, reduction=reduction, kernel_size=kernel_size)
        self.lmhra2 = LocalMHRA(dim, reduction=reduction, kernel_size=kernel_size) if double else None
        self.drop_path_local = SharedDropPath(drop_path, dims=(0,))  # applied to (B, t, n, D): draws along B

    def local(self, x: torch.Tensor, lmhra: LocalMHRA, num_frames: int, grid_size: tuple[int, int]) -> torch.Tensor:
        """``x_p + drop_path(lmhra(x_p))`` on the patch tokens of ``((B t), 1 + h*w, D)``; CLS unchanged."""
        cls, patches = split_prefix(x, 1)
        branch = rearrange(lmhra(patches, num_frames, grid_size), "(b t) n d -> b t n d", t=num_frames)
        branch = rearrange(self.drop_path_local(branch), "b t n d -> (b t) n d")
        return torch.cat([cls, patches + branch], dim=1)

    def forward(self, x: torch.Tensor, num_frames: int, grid_size: tuple[int, int]) -> torch.Tensor:
        x = self.local(x, self.lmhra1, num_frames, grid_size)
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        if self.lmhra2 is not None:
            x = self.local(x, self.lmhra2, num_frames, grid_size)
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class GlobalUniBlock(nn.Module):
    """Global UniBlock (UniFormerV2 eqs. 5-8): DPE, then one query cross-attends to a stage's tokens.

    ``tokens`` is ``((B t), 1 + h*w, D)`` (per-frame CLS first). The depthwise 3x3x3 DPE is added to a copy
    of the patch tokens; keys/values are all ``t * (1 + h*w)`` tokens of the clip; the query ``(B, 1, D)``
    is updated by ``q + attn(norm1(q), norm_ctx(kv))`` then ``q + mlp(norm2(q))`` (the official ``Extractor``:
    ``ln_1``, ``ln_3``, ``ln_2``: plain ``nn.LayerNorm``, official lines 141, 149-150). The attention and FFN
    output projections are zero-initialised, so at init the block returns its query unchanged. Drop path
    makes one draw for the whole batch (official lines 138, 180-181 on the ``(1, B, D)`` query).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        mlp_drop: float = 0.5,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = QuickGELU,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.dpe = nn.Conv3d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm_ctx = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, round(mlp_ratio * dim), act_layer=act_layer)  # official line 142: round
        self.mlp.drop1.p = mlp_drop  # official Extractor: dropout only between the activation and c_proj
        self.drop_path = SharedDropPath(drop_path, dims=())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official Extractor's initialisation (lines 153-159): xavier q/k/v (zero biases, as
        ``nn.MultiheadAttention``) and fc1 (its bias keeps ``nn.Linear``'s default), zero output projections; the
        DPE keeps ``nn.Conv3d``'s default weight with a zero bias (line 225)."""
        self.dpe.reset_parameters()
        nn.init.zeros_(self.dpe.bias)
        nn.init.xavier_uniform_(self.attn.qkv.weight)
        nn.init.zeros_(self.attn.qkv.bias)
        self.mlp.fc1.reset_parameters()
        nn.init.xavier_uniform_(self.mlp.fc1.weight)
        # zero-init: the query leaves the block unchanged at step 0
        for layer in (self.attn.proj, self.mlp.fc2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def context(self, tokens: torch.Tensor, num_frames: int, grid_size: tuple[int, int]) -> torch.Tensor:
        """``((B t), 1 + h*w, D)`` -> keys/values ``(B, t * (1 + h*w), D)`` with DPE on the patch tokens."""
        h, w = grid_size
        cls, patches = split_prefix(tokens, 1)
        pos = rearrange(patches, "(b t) (h w) d -> b d t h w", t=num_frames, h=h, w=w)
        pos = rearrange(self.dpe(pos), "b d t h w -> (b t) (h w) d")
        ctx = torch.cat([cls, patches + pos], dim=1)
        return rearrange(ctx, "(b t) m d -> b (t m) d", t=num_frames)

    def forward(
        self, query: torch.Tensor, tokens: torch.Tensor, num_frames: int, grid_size: tuple[int, int]
    ) -> torch.Tensor:
        ctx = self.context(tokens, num_frames, grid_size)
        query = query + self.drop_path(self.attn(self.norm1(query), self.norm_ctx(ctx)))
        return query + self.drop_path(self.mlp(self.norm2(query)))


__all__ = [
    "CastLayerNorm",
    "GlobalUniBlock",
    "ImageBlock",
    "LocalMHRA",
    "LocalUniBlock",
    "SharedDropPath",
]
