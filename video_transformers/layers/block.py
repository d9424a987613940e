"""Pre-norm transformer block (Dosovitskiy et al. 2021, eqs. 2-3), and stacks of blocks with a final norm."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from video_transformers.layers.attention import Attention
from video_transformers.layers.checkpoint import checkpoint_seq
from video_transformers.layers.mlp import DropPath, Mlp, drop_path_rates


class Block(nn.Module):
    """``x + attn(norm1(x))`` then ``x + mlp(norm2(x))`` on ``(B, N, C)``; timm's names and layout.

    ``attn_layer`` builds the attention (timm's ``attn_layer``: a variant is a class, e.g. ViViT Model 4's
    head-factorised attention); ``drop_path_scale_by_keep`` is :class:`DropPath`'s ``scale_by_keep`` (timm's
    default ``True``; scenic's ViViT does not rescale).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_eps: float = 1e-6,
        drop_path_scale_by_keep: bool = True,
        attn_layer: Callable[..., nn.Module] = Attention,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn_layer(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path1 = DropPath(drop_path, scale_by_keep=drop_path_scale_by_keep)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop_path2 = DropPath(drop_path, scale_by_keep=drop_path_scale_by_keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class BlockStack(nn.Module):
    """Blocks of any type applied in order, then a final LayerNorm (ViT's encoder), with optional gradient
    checkpointing (:func:`~video_transformers.layers.checkpoint.checkpoint_seq`) while training."""

    def __init__(self, blocks: Iterable[nn.Module], dim: int, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training:
            x = checkpoint_seq(self.blocks, x)
        else:
            for blk in self.blocks:
                x = blk(x)
        return self.norm(x)


class Encoder(BlockStack):
    """``depth`` :class:`Block` s with drop-path rising linearly from 0 to ``drop_path``, then a final
    LayerNorm (ViT's encoder); ``block_kwargs`` go to every :class:`Block`."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        *,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        **block_kwargs: Any,
    ) -> None:
        blocks = [
            Block(dim, num_heads, drop_path=p, norm_eps=norm_eps, **block_kwargs)
            for p in drop_path_rates(drop_path, depth)
        ]
        super().__init__(blocks, dim, norm_eps)
