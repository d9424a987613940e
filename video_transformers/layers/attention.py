"""The one multi-head attention module shared by every variant.

Scaled dot-product attention (Vaswani et al. 2017, eq. 1) on fused ``qkv`` projections with timm's
parameter names, so image-ViT weights load by name. The fast path is
``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where available); the manual path
exposes attention maps (visualisation), is tested equal to the fast one, and also serves short sequences in
bfloat16 on CPUs, where it is measured faster (``CPU_BF16_EAGER_MAX_KEYS``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head attention on ``(B, N, C)`` tokens; returns ``(B, N, C)``.

    ``forward(x)`` is self-attention; ``forward(x, context)`` is cross-attention where queries come from
    ``x`` and keys/values from ``context`` (same fused weights, split by rows, as in
    ``nn.MultiheadAttention``'s ``in_proj``). Subclasses that regroup heads or tokens override
    :meth:`attend`, which sees ``(B, heads, N, head_dim)`` tensors.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        # Manual path switches (see `attention_maps`): never used for training speed.
        self.fused = True
        self.keep_attn = False
        self.last_attn: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        else:
            w_q, w_kv = self.qkv.weight.split([x.shape[-1], 2 * x.shape[-1]])
            b_q, b_kv = (None, None) if self.qkv.bias is None else self.qkv.bias.split([x.shape[-1], 2 * x.shape[-1]])
            q = rearrange(F.linear(x, w_q, b_q), "b n (h d) -> b h n d", h=self.num_heads)
            k, v = rearrange(F.linear(context, w_kv, b_kv), "b m (two h d) -> two b h m d", two=2, h=self.num_heads)
        x = self.attend(q, k, v)
        x = rearrange(x, "b h n d -> b n (h d)")
        return self.proj_drop(self.proj(x))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v over the last-but-one axis of ``(B, heads, N, d)`` tensors."""
        if self.fused and not self.keep_attn and not _cpu_bf16_short(q, k):
            drop = self.attn_drop.p if self.training else 0.0
            return F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        if self.keep_attn:
            self.last_attn = attn.detach()
        return self.attn_drop(attn) @ v


# In bfloat16 on a CPU, PyTorch's flash kernel is slower than two bf16 matmuls for short sequences (measured on
# AVX-512-BF16, 12 heads of 64: 8 keys 3.6 vs 1.2 ms, 197 keys 9.0 vs 5.0 ms; 394 keys 43 vs 53 ms, 1569 keys
# 52 vs 71 ms), so up to this many keys the product is computed explicitly; its (B, heads, N, M) matrix is then
# at most 256 x 256 per head. fp32 and GPUs always take SDPA.
CPU_BF16_EAGER_MAX_KEYS = 256


def _cpu_bf16_short(q: torch.Tensor, k: torch.Tensor) -> bool:
    return q.device.type == "cpu" and q.dtype == torch.bfloat16 and k.shape[-2] <= CPU_BF16_EAGER_MAX_KEYS


@contextmanager
def attention_maps(model: nn.Module) -> Iterator[dict[str, Attention]]:
    """Run ``model`` on the manual path, keeping each attention module's last map in ``.last_attn``.

    Yields ``{module_name: Attention}``; maps are ``(B', heads, N, M)`` in each module's own grouping
    (e.g. ``(b t)`` batches for spatial attention in divided blocks).
    """
    modules = {name: m for name, m in model.named_modules() if isinstance(m, Attention)}
    for m in modules.values():
        m.keep_attn = True
    try:
        yield modules
    finally:
        for m in modules.values():
            m.keep_attn = False


def set_fused_attention(model: nn.Module, fused: bool) -> None:
    """Switch every attention module between the SDPA path and the manual (reference) path."""
    for m in model.modules():
        if isinstance(m, Attention):
            m.fused = fused
