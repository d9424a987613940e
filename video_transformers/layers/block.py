"""Pre-norm transformer block (Dosovitskiy et al. 2021, eqs. 2-3), and stacks of blocks with a final norm."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from torch import nn

from video_transformers.layers.attention import Attention
from video_transformers.layers.checkpoint import run_seq
from video_transformers.layers.mlp import DropPath, Mlp, drop_path_rates


class Block(nn.Module):
    """``x + attn(norm1(x))`` then ``x + mlp(norm2(x))`` on ``(B, N, C)``; timm's names and layout.

    Variants are classes, as in timm: ``attn_layer`` builds the attention (e.g. ViViT Model 4's
    head-factorised attention), ``norm_layer(dim, eps=norm_eps)`` the norms (e.g. CLIP's float32 LayerNorm)
    and ``drop_path_layer(p)`` the stochastic depth (e.g. ``partial(DropPath, scale_by_keep=False)`` for
    scenic's ViViT, which does not rescale). Subclasses that add attention steps build them with
    :attr:`new_attention`, the factory of ``attn`` with this block's settings.
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
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        drop_path_layer: Callable[[float], nn.Module] = DropPath,
        attn_layer: Callable[..., nn.Module] = Attention,
    ) -> None:
        super().__init__()
        self.new_attention = partial(attn_layer, dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.norm1 = norm_layer(dim, eps=norm_eps)
        self.attn = self.new_attention()
        self.drop_path1 = drop_path_layer(drop_path)
        self.norm2 = norm_layer(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop_path2 = drop_path_layer(drop_path)

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
        return self.norm(run_seq(self.blocks, x, checkpointing=self.grad_checkpointing and self.training))


class Encoder(BlockStack):
    """``depth`` blocks (``block_fn``, :class:`Block` by default) with drop-path rising linearly from 0 to
    ``drop_path``, then a final LayerNorm (ViT's encoder); ``block_kwargs`` go to every block."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        *,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        block_fn: Callable[..., nn.Module] = Block,
        **block_kwargs: Any,
    ) -> None:
        blocks = [
            block_fn(dim, num_heads, drop_path=p, norm_eps=norm_eps, **block_kwargs)
            for p in drop_path_rates(drop_path, depth)
        ]
        super().__init__(blocks, dim, norm_eps)
