"""Helpers for prefix (CLS) tokens, so blocks never re-derive where they sit."""

from __future__ import annotations

import torch


def prepend(token: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Prepend a learned ``(1, 1, D)`` token to every sequence of ``x`` ``(B, N, D)``."""
    return torch.cat([token.expand(x.shape[0], -1, -1), x], dim=1)


def split_prefix(x: torch.Tensor, num_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, P+N, D)`` -> ``(B, P, D)`` prefix tokens and ``(B, N, D)`` patch tokens."""
    return x[:, :num_prefix], x[:, num_prefix:]
