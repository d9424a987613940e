"""Transformer feed-forward network and stochastic depth, with timm's parameter names."""

from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """``fc1 -> act -> drop -> fc2 -> drop`` (Dosovitskiy et al. 2021, eq. 3)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop the residual branch per sample while training.

    ``scale_by_keep`` (timm's name and default) divides the kept branches by ``1 - p`` so that the expected
    training output equals the evaluation output; scenic does not (``x * (1 - drop_pattern)``,
    scenic/projects/vivit/model.py:246-247), so its branches are ``1 - p`` times weaker in training.
    """

    def __init__(self, p: float = 0.0, *, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.p = p
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep if self.scale_by_keep else x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}" + ("" if self.scale_by_keep else ", scale_by_keep=False")


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``depth`` blocks."""
    if depth <= 1:
        return [0.0] * depth
    return [rate * i / (depth - 1) for i in range(depth)]


class _GeluTanh(nn.GELU):
    def __init__(self) -> None:
        super().__init__(approximate="tanh")


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: OpenAI CLIP's activation, kept by UniFormerV2 (its ``uniformerv2_model.py:35-37``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "gelu_tanh": _GeluTanh, "quick_gelu": QuickGELU}


def make_act_layer(name: str) -> type[nn.Module]:
    """Activation by name: ``gelu`` (exact, ViT/TimeSformer), ``gelu_tanh`` (the tanh approximation: flax's
    ``nn.gelu`` default, ``approximate=True``, which scenic's ViViT uses) or ``quick_gelu`` (CLIP / UniFormerV2)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
