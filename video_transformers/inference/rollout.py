"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020, section 3)
through each variant's own factorisation.

Rollout models the residual connection by mixing every layer's head-averaged attention with the identity,
``A' = 0.5 A + 0.5 I`` (rows renormalised), and composes layers ``R = A'_L ... A'_1``; the CLS token's row
of ``R`` says how much each input token flows into the classification. Maps come from the manual attention
path (:func:`~video_transformers.layers.attention.attention_maps`). Rollout is class-agnostic by
construction (it reads attention, not gradients).

Following each model's factorisation rather than flattening it (the model's ``attention_layout()`` names its
attention modules and how they group tokens; the token grid is the clip's, ``model.token_grid``):

* ViViT Model 2 (factorised encoder): spatial rollout per temporal index through the spatial encoder (each
  index has its own CLS), and temporal rollout through the temporal encoder (its CLS over the ``t`` indices).
* TimeSformer, divided space-time: spatial rollout per frame through the blocks' spatial attention (CLS
  included), and temporal rollout per spatial position through their temporal attention (patches only);
  the per-position temporal maps are averaged with the spatial map's weights.
* Joint space-time (ViViT Model 1, TimeSformer ``joint_space_time``): one rollout over all ``1 + t*n``
  tokens, split into its spatial and temporal marginals.

Every map is a probability distribution: ``spatial[i]`` sums to 1 over the ``h*w`` patches of index ``i``,
``temporal`` sums to 1 over indices, and :attr:`Rollout.joint` over all ``t*h*w`` tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange, reduce
from torch import nn

from video_transformers.layers import Attention, attention_maps
from video_transformers.models.base import AttentionLayout

Grid = tuple[int, int, int]


@dataclass
class Rollout:
    spatial: torch.Tensor  # (t, h, w): per temporal index, sums to 1 over h*w
    temporal: torch.Tensor  # (t,): sums to 1
    frames_per_index: int  # input frames covered by one temporal index (tubelet size)
    layout: str

    @property
    def joint(self) -> torch.Tensor:
        """``(t, h, w)`` flow to every token: spatial map of each index weighted by the index's share."""
        return self.spatial * self.temporal[:, None, None]


def rollout(maps: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Compose per-layer ``(B, heads, N, N)`` attention into ``(B, N, N)`` rollout (Abnar & Zuidema, eq. 1)."""
    if not maps:
        raise ValueError("rollout needs at least one attention map")
    eye = torch.eye(maps[0].shape[-1], dtype=torch.float64, device=maps[0].device)
    result = eye.expand(maps[0].shape[0], -1, -1)
    for a in maps:
        a = (1 - residual) * a.double().mean(dim=1) + residual * eye
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
    return result


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum(dim=-1, keepdim=True)


def _maps(modules: dict[str, Attention], pattern: str) -> list[torch.Tensor]:
    """Recorded maps of the modules whose names match ``pattern``, in registration (= execution) order."""
    found = [m.last_attn for name, m in modules.items() if re.fullmatch(pattern, name)]
    if not found or any(a is None for a in found):
        raise RuntimeError(f"no attention maps recorded for modules {pattern!r}")
    return found


def _factorised_encoder(layout: AttentionLayout, grid: Grid, modules: dict[str, Attention]) -> tuple:
    t, gh, gw = grid
    spatial = _normalise(rollout(_maps(modules, layout.spatial))[:, 0, 1:])  # (b t) n: CLS row, patches only
    temporal = _normalise(rollout(_maps(modules, layout.temporal))[:, 0, 1:])  # b t
    return rearrange(spatial, "(b t) (h w) -> b t h w", t=t, h=gh, w=gw)[0], temporal[0]


def _divided(layout: AttentionLayout, grid: Grid, modules: dict[str, Attention]) -> tuple:
    t, gh, gw = grid
    spatial = _normalise(rollout(_maps(modules, layout.spatial))[:, 0, 1:])  # (b t) 1+n 1+n
    spatial = rearrange(spatial, "(b t) (h w) -> b t h w", t=t, h=gh, w=gw)
    per_position = rollout(_maps(modules, layout.temporal))  # (b h w) t t
    per_position = rearrange(per_position, "(b n) q k -> b n q k", n=gh * gw)
    weights = reduce(spatial, "b t h w -> b (h w)", "mean")  # where the spatial rollout looks
    temporal = torch.einsum("bn,bnqk->bk", weights, per_position) / t  # rows and weights sum to 1
    return spatial[0], _normalise(temporal)[0]


def _joint(layout: AttentionLayout, grid: Grid, modules: dict[str, Attention]) -> tuple:
    t, gh, gw = grid
    flow = _normalise(rollout(_maps(modules, layout.spatial))[:, 0, 1:])  # b (t n)
    flow = rearrange(flow, "b (t h w) -> b t h w", t=t, h=gh, w=gw)[0]
    temporal = flow.sum(dim=(1, 2))
    return flow / temporal[:, None, None], temporal


_KINDS: dict[str, Callable[[AttentionLayout, Grid, dict[str, Attention]], tuple]] = {
    "factorised_encoder": _factorised_encoder,
    "divided": _divided,
    "joint": _joint,
}


def _layout(model: nn.Module) -> AttentionLayout:
    layout = model.attention_layout() if hasattr(model, "attention_layout") else None
    if layout is None or layout.num_prefix_tokens != 1:
        name = getattr(model, "model_name", "") or type(model).__name__
        raise ValueError(
            "attention rollout is implemented for ViViT Models 1-2 and TimeSformer divided/joint attention (a CLS "
            f"token through joint, divided or factorised-encoder attention); not for {name}"
        )
    return layout


@torch.no_grad()
def explain(model: nn.Module, clip: torch.Tensor) -> tuple[Rollout, torch.Tensor]:
    """Rollout maps and logits for one normalised clip ``(1, C, T, H, W)`` (manual attention path)."""
    if clip.ndim != 5 or clip.shape[0] != 1:
        raise ValueError(f"explain takes one clip (1, C, T, H, W); got {tuple(clip.shape)}")
    layout = _layout(model)
    grid = model.token_grid(clip.shape)  # the clip's grid: TimeSformer runs at any size
    was_training = model.training
    model.eval()
    try:
        with attention_maps(model) as modules:
            logits = model(clip)
            spatial, temporal = _KINDS[layout.kind](layout, grid, modules)
    finally:
        model.train(was_training)
        for m in modules.values():
            m.last_attn = None
    frames_per_index = clip.shape[2] // grid[0]
    return Rollout(spatial.float().cpu(), temporal.float().cpu(), frames_per_index, layout.label), logits.float().cpu()
