"""TimeSformer (Bertasius, Wang & Torresani, "Is Space-Time Attention All You Need for Video
Understanding?", ICML 2021).

A ViT-B/16 over ``T`` uniformly sampled frames (each frame embedded by the same 2D patch projection, eq. 1),
a CLS token, a learned spatial position embedding ``pos_embed`` (1, 1+N, D) and a learned temporal one
``time_embed`` (1, T, D) added to the patch tokens only (as the official code). Five self-attention schemes
(section 3, Fig. 1 and 2, Table 1), each a block class picked once in ``__init__``:

* ``space_only`` (S): frames are independent images with their own CLS; the per-frame tokens are averaged
  over frames before the final LayerNorm (official ``attention_type='space_only'``).
* ``joint_space_time`` (ST): one attention over all ``T*N`` patches plus the CLS token.
* ``divided_space_time`` (T+S, Fig. 2): temporal attention among patches at the same spatial position
  (CLS excluded), a zero-initialised ``temporal_fc``, then spatial attention within each frame with the
  CLS token replicated per frame and its outputs averaged over frames.
* ``local_global`` (L+G): see :class:`LocalGlobalBlock`.
* ``axial`` (T+W+H): see :class:`AxialBlock`.

Tokens are ordered ``(t h w)`` here; the official code orders them ``(h w t)``. Every operation is either
per-token or attention inside groups that both orders agree on, so outputs are identical (the checkpoint
converter in :mod:`video_transformers.pretrained.timesformer` only renames keys).

Like the official forward (vit.py:255-287), a model runs at any frame count and any frame size: when the
input's grid differs from the embeddings', ``time_embed`` and ``pos_embed`` are resampled by nearest
interpolation (:func:`resample_time_embed_nearest`, :func:`resample_pos_embed_nearest`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn

from video_transformers.layers import (
    Block,
    drop_path_rates,
    prepend,
    run_seq,
    split_prefix,
)
from video_transformers.models.base import AttentionLayout, VideoTransformer, ViTArgs, init_weights
from video_transformers.models.registry import register_model

Grid = tuple[int, int, int]  # (t, h, w) tokens per axis

# Official TimeSformer checkpoints were trained on pixels normalised with these (slowfast's defaults).
TIMESFORMER_MEAN = (0.45, 0.45, 0.45)
TIMESFORMER_STD = (0.225, 0.225, 0.225)


def resample_pos_embed_nearest(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(1, 1+n, D)`` -> ``(1, 1+h*w, D)`` for a ``grid = (h, w)`` of patches, as the official forward
    (vit.py:255-267): the ``n`` patch positions as a square map, resized by nearest interpolation
    (``F.interpolate(mode="nearest")``), the CLS position kept. Like vit.py:256 it compares token counts
    only, so a grid with as many patches as the embedding's (e.g. 2x8 for 4x4) gets it unchanged."""
    n = pos_embed.shape[1] - 1
    if n == grid[0] * grid[1]:
        return pos_embed
    side = math.isqrt(n)  # vit.py:260: P = int(n ** 0.5)
    if side * side != n:
        raise ValueError(f"pos_embed: {n} patch positions is not a square grid")
    cls, patches = split_prefix(pos_embed, 1)
    patches = F.interpolate(rearrange(patches, "b (h w) d -> b d h w", h=side, w=side), size=grid, mode="nearest")
    return torch.cat([cls, rearrange(patches, "b d h w -> b (h w) d")], dim=1)


def resample_time_embed_nearest(time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(1, T, D)`` -> ``(1, num_frames, D)`` by nearest interpolation over time, as the official forward
    (vit.py:279-283) and its checkpoint loader (utils/checkpoint.py:360-365)."""
    if time_embed.shape[1] == num_frames:
        return time_embed
    y = F.interpolate(rearrange(time_embed, "b t d -> b d t"), size=num_frames, mode="nearest")
    return rearrange(y, "b d t -> b t d")


def _flip(pattern: str) -> str:
    lhs, rhs = pattern.split("->")
    return f"{rhs.strip()} -> {lhs.strip()}"


def attend_patches(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, fold: str, **sizes: int
) -> torch.Tensor:
    """Apply ``fn`` (norm -> attention) within groups of patch tokens and return to ``(B, T*N, D)``.

    ``fold`` moves the axes that do not interact into the batch, e.g. ``"b (t h w) d -> (b h w) t d"``
    for temporal attention; the inverse pattern unfolds the result.
    """
    return rearrange(fn(rearrange(x, fold, **sizes)), _flip(fold), **sizes)


def attend_patches_with_cls(
    fn: Callable[[torch.Tensor], torch.Tensor], cls: torch.Tensor, x: torch.Tensor, fold: str, **sizes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`attend_patches`, with the CLS token ``(B, 1, D)`` replicated into every group and its
    outputs averaged back over the groups (the official divided space-time block's CLS handling).

    ``fold`` must put the batch first in the group axis (``"... -> (b g...) n d"``). Returns the CLS output
    ``(B, 1, D)`` and the patch outputs ``(B, T*N, D)``.
    """
    y = rearrange(x, fold, **sizes)  # (b g) n d
    groups = y.shape[0] // cls.shape[0]
    y = fn(torch.cat([repeat(cls, "b 1 d -> (b g) 1 d", g=groups), y], dim=1))
    cls_out, y = split_prefix(y, 1)
    return reduce(cls_out, "(b g) 1 d -> b 1 d", "mean", g=groups), rearrange(y, _flip(fold), **sizes)


class JointSpaceTimeBlock(Block):
    """A ViT block over every token it is given: joint space-time attention (section 3, Fig. 1)
    on ``(B, 1+T*N, D)``, or space-only attention when the model folds frames into the batch."""

    def forward(self, x: torch.Tensor, grid: Grid | None = None) -> torch.Tensor:
        return super().forward(x)


class _FactorisedBlock(Block):
    """A :class:`Block` (the image ViT's ``norm1``/``attn``, run last with the CLS token, ``norm2``/``mlp``)
    preceded by patch-only attention steps: for each name in :attr:`steps`, ``<name>_norm1 -> <name>_attn ->
    <name>_fc`` with ``<name>_fc`` zero-initialised so every new step starts as the identity (and an image
    ViT's weights give the image model at step 0; the paper initialises from an ImageNet-pretrained ViT,
    section 4).

    Drop path is applied inside the folded batches, as in the official block (one mask per group of
    tokens, e.g. per spatial position for temporal attention, not per clip): ``drop_path1`` after every
    attention step, ``drop_path2`` after the MLP (the official block has one ``drop_path`` for all, vit.py:109).
    """

    steps: tuple[str, ...] = ()

    def __init__(self, dim: int, num_heads: int, *, norm_eps: float = 1e-6, **block_kwargs: Any) -> None:
        super().__init__(dim, num_heads, norm_eps=norm_eps, **block_kwargs)
        for name in self.steps:
            setattr(self, f"{name}_norm1", nn.LayerNorm(dim, eps=norm_eps))
            setattr(self, f"{name}_attn", self.new_attention())
            setattr(self, f"{name}_fc", nn.Linear(dim, dim))

    def zero_init_steps(self) -> None:
        """Zero every ``*_fc`` so the added steps are identities (official TimeSformer init)."""
        for name in self.steps:
            nn.init.zeros_(getattr(self, f"{name}_fc").weight)
            nn.init.zeros_(getattr(self, f"{name}_fc").bias)

    def _step(self, name: str, x: torch.Tensor, fold: str, **sizes: int) -> torch.Tensor:
        """Residual patch-only step: ``x + <name>_fc(drop_path(<name>_attn(<name>_norm1(x))))`` in groups."""
        norm, attn, fc = (getattr(self, f"{name}_{part}") for part in ("norm1", "attn", "fc"))
        return x + fc(attend_patches(lambda y: self.drop_path1(attn(norm(y))), x, fold, **sizes))

    def _last(self, cls: torch.Tensor, x: torch.Tensor, fold: str, **sizes: int) -> torch.Tensor:
        """The CLS-including step with the image weights, then the MLP; returns ``(B, 1+T*N, D)``."""
        res_cls, res = attend_patches_with_cls(
            lambda y: self.drop_path1(self.attn(self.norm1(y))), cls, x, fold, **sizes
        )
        x = torch.cat([cls, x], dim=1) + torch.cat([res_cls, res], dim=1)
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class DividedSpaceTimeBlock(_FactorisedBlock):
    """Divided space-time attention (T+S, section 3, Fig. 2), exactly the official block: temporal attention
    over the ``T`` patches at each spatial position, zero-initialised ``temporal_fc``, residual; spatial
    attention within each frame with the CLS token replicated per frame and averaged back; MLP."""

    steps = ("temporal",)

    def temporal(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Eq. 7 on patch tokens ``(B, T*N, D)``: each spatial position attends over time only."""
        t, h, w = grid
        return self._step("temporal", x, "b (t h w) d -> (b h w) t d", t=t, h=h, w=w)

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        t, h, w = grid
        cls, x = split_prefix(x, 1)
        x = self.temporal(x, grid)
        return self._last(cls, x, "b (t h w) d -> (b t) (h w) d", t=t, h=h, w=w)  # spatial, per frame


class AxialBlock(_FactorisedBlock):
    """Axial attention (T+W+H, Fig. 1, Table 1; Ho et al. 2019): attention along time, then along width,
    then along height, each with its own parameters (``temporal_*``, ``width_*``, then the image ViT's
    ``norm1``/``attn`` for height), then the MLP. About 156M parameters at ViT-B (Table 1: 156.3M).

    The paper gives no code for this scheme; our reading follows the divided block: the time and width
    steps see patch tokens only and end in a zero-initialised ``*_fc``; the height step includes the CLS
    token replicated into every ``(t, w)`` column, its outputs averaged back.
    """

    steps = ("temporal", "width")

    def temporal(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        t, h, w = grid
        return self._step("temporal", x, "b (t h w) d -> (b h w) t d", t=t, h=h, w=w)

    def width(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        t, h, w = grid
        return self._step("width", x, "b (t h w) d -> (b t h) w d", t=t, h=h, w=w)

    def height(self, cls: torch.Tensor, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Height attention (with CLS) and the MLP; returns ``(B, 1+T*N, D)``."""
        t, h, w = grid
        return self._last(cls, x, "b (t h w) d -> (b t w) h d", t=t, h=h, w=w)

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        cls, x = split_prefix(x, 1)
        return self.height(cls, self.width(self.temporal(x, grid), grid), grid)


class LocalGlobalBlock(_FactorisedBlock):
    """Sparse local-global attention (L+G, section 3 and appendix; Table 1: 121.4M parameters).

    The paper (appendix, paraphrased): a local attention over the neighbouring F x H/2 x W/2 patches, then a
    sparse global attention over the entire clip with a stride of 2 patches along time and both spatial
    axes (after Child et al. 2019). The official code
    does not implement it. Our reading:

    * local step (``local_norm1``/``local_attn``/zero-initialised ``local_fc``, patch tokens only): the
      ``h x w`` grid is cut into 2 x 2 non-overlapping quadrants; a patch attends to every patch of its own
      quadrant in all ``F = T`` frames, i.e. an ``F x H/2 x W/2`` neighbourhood;
    * global step (the image ViT's ``norm1``/``attn``, with the CLS token replicated into every group and
      averaged back): patches are grouped by their ``(t, h, w)`` coordinates modulo 2, so each group spans
      the whole clip with stride 2 along all three axes (8 groups of ``T*N/8`` patches).

    Two steps connect every pair of patches (local hop into the right parity class, then global hop), at
    ``O(T*N * (T*N/4 + T*N/8))`` attention cost instead of ``O((T*N)^2)``. Needs even ``T``, ``h`` and ``w``.
    """

    steps = ("local",)

    def local(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Attention within each ``T x h/2 x w/2`` quadrant neighbourhood, on patch tokens ``(B, T*N, D)``."""
        t, h, w = grid
        fold = "b (t qh h qw w) d -> (b qh qw) (t h w) d"
        return self._step("local", x, fold, t=t, qh=2, h=h // 2, qw=2, w=w // 2)

    def glob(self, cls: torch.Tensor, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Stride-2 sparse global attention (with CLS) and the MLP; returns ``(B, 1+T*N, D)``."""
        t, h, w = grid
        fold = "b (t st h sh w sw) d -> (b st sh sw) (t h w) d"
        return self._last(cls, x, fold, t=t // 2, st=2, h=h // 2, sh=2, w=w // 2, sw=2)

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        if any(n % 2 for n in grid):
            raise ValueError(f"local_global attention needs an even token grid (t, h, w); got {grid}")
        cls, x = split_prefix(x, 1)
        return self.glob(cls, self.local(x, grid), grid)


@dataclass(frozen=True)
class Scheme:
    """How an attention scheme lays out tokens: its block, whether frames are separate images, and which
    attention modules group which tokens (for attention rollout; ``None``: not defined for the scheme)."""

    block: type[Block]
    pattern: str  # one line for `vt info` (Table 1's names)
    frames_as_images: bool = False  # space-only: (b t) batches, a CLS per frame, no time_embed
    even_grid: bool = False  # the token grid (t, h, w) must be even along every axis
    layout: AttentionLayout | None = None


_SPATIAL = r"blocks\.\d+\.attn"  # the image ViT's attention of every block
SCHEMES: dict[str, Scheme] = {
    "space_only": Scheme(JointSpaceTimeBlock, "S: attention within each frame, frames averaged", frames_as_images=True),
    "joint_space_time": Scheme(
        JointSpaceTimeBlock,
        "ST: one attention over all T*N tokens + CLS",
        layout=AttentionLayout("joint", "TimeSformer joint space-time", _SPATIAL),
    ),
    "divided_space_time": Scheme(
        DividedSpaceTimeBlock,
        "T+S: temporal attention per position, then spatial per frame",
        layout=AttentionLayout("divided", "TimeSformer divided space-time", _SPATIAL, r"blocks\.\d+\.temporal_attn"),
    ),
    "local_global": Scheme(
        LocalGlobalBlock, "L+G: local F x H/2 x W/2 windows, then global with stride 2", even_grid=True
    ),
    "axial": Scheme(AxialBlock, "T+W+H: attention along time, then width, then height"),
}


class TimeSformer(VideoTransformer):
    """TimeSformer on ``(B, C, T, H, W)`` video -> ``(B, num_classes)`` logits (section 3, Fig. 1-2).

    ``attention_type`` is one of :data:`SCHEMES` (official names for S, ST and T+S). Defaults are the
    paper's TimeSformer: ViT-B/16, 8 frames at 224 px, divided space-time, drop path 0.1.

    ``num_frames`` / ``img_size`` size ``time_embed`` / ``pos_embed`` and are the nominal input (data
    pipelines, FLOP counts); ``forward`` takes any frame count and frame size, as the official model does.

    ``embed_init_std``: ``None`` is the official initialisation (``pos_embed`` / ``cls_token`` truncated
    normal with std 0.02, ``time_embed`` zeros), made for starting from an image ViT. A float draws
    ``pos_embed`` and ``time_embed`` with that std instead, for training from scratch: at 0.02 (and zero
    time embeddings, which make every scheme blind to frame order at step 0) position and order are faint
    next to the patch embeddings, and tiny models on the embedded dataset stayed at chance on the direction of
    its time-reversed pairs (joint attention: 44% after 25 epochs at 0.02, 73% after 12 at 0.3).
    """

    vit_defaults = ViTArgs(drop_path_rate=0.1)

    def __init__(
        self,
        *,
        depth: int = 12,
        attention_type: str = "divided_space_time",
        embed_init_std: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if attention_type not in SCHEMES:
            raise ValueError(f"unknown attention_type {attention_type!r}; expected one of {sorted(SCHEMES)}")
        self.scheme = SCHEMES[attention_type]
        self.attention_type, self.attention_pattern = attention_type, self.scheme.pattern
        self.mean, self.std = TIMESFORMER_MEAN, TIMESFORMER_STD
        a = self.vit_args
        self._init_embeddings()
        block_kwargs = a.block_kwargs()
        self.blocks = nn.ModuleList(
            self.scheme.block(a.embed_dim, a.num_heads, drop_path=p, **block_kwargs)
            for p in drop_path_rates(a.drop_path_rate, depth)
        )
        self.norm = nn.LayerNorm(a.embed_dim, eps=a.norm_eps)
        self.grad_checkpointing = False
        self._init_head(a.num_classes, a.head_drop_rate)
        self._init_weights(embed_init_std)

    def _init_embeddings(self) -> None:
        """``patch_embed``, ``cls_token``, ``pos_embed`` and (not for space-only) ``time_embed``."""
        d = self.embed_dim
        # any size and T, as the official forward (vit.py:169-175, 255-287)
        self.patch_embed = self.vit_args.patch_embed(strict_img_size=False, strict_num_frames=False)
        t, h, w = self.patch_embed.grid_size
        if self.scheme.even_grid and (t % 2 or h % 2 or w % 2):
            raise ValueError(f"{self.attention_type} attention needs an even token grid (t, h, w); got {(t, h, w)}")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + h * w, d))
        self.pos_drop = nn.Dropout(self.vit_args.drop_rate)
        # Space-only has no temporal embedding (official checkpoints lack the key), frames stay independent.
        self.time_embed = None if self.scheme.frames_as_images else nn.Parameter(torch.zeros(1, t, d))
        self.time_drop = nn.Dropout(self.vit_args.drop_rate)
        # Token layouts, chosen here so forward never branches on the scheme.
        self._fold = "b t n d -> (b t) n d" if self.scheme.frames_as_images else "b t n d -> b (t n) d"
        self._merge = "(b t) n d -> b n d" if self.scheme.frames_as_images else "b n d -> b n d"

    def _init_weights(self, embed_init_std: float | None) -> None:
        init_weights(self)
        for p in (self.cls_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        if embed_init_std is not None:
            for p in (self.pos_embed, self.time_embed):
                if p is not None:
                    nn.init.trunc_normal_(p, std=embed_init_std, a=-3 * embed_init_std, b=3 * embed_init_std)
        for blk in self.blocks:
            if isinstance(blk, _FactorisedBlock):
                blk.zero_init_steps()  # zero-init: new temporal/local/width branches start as identity

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return {"stem": r"^(?:cls_token|pos_embed|time_embed|patch_embed)(?:\.|$)", "blocks": r"^blocks\.(\d+)\."}

    def attention_layout(self) -> AttentionLayout | None:
        return self.scheme.layout

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """Patches + ``pos_embed`` (+ ``time_embed`` on patches only), CLS prepended, in the blocks' layout:
        ``(B, 1+T*N, D)``, or ``(B*T, 1+N, D)`` for space-only; and the blocks' grid ``(t, h, w)`` (``t = 1``
        for space-only). Embeddings of another grid are resampled by nearest (vit.py:255-287)."""
        t, h, w = self.token_grid(x.shape)
        x = self.patch_embed(x)  # b t n d
        pos_embed = resample_pos_embed_nearest(self.pos_embed, (h, w))
        x = self.pos_drop(x + pos_embed[:, None, 1:])
        if self.time_embed is not None:
            time_embed = resample_time_embed_nearest(self.time_embed, t)
            x = self.time_drop(x + rearrange(time_embed, "1 t d -> 1 t 1 d"))
        x = rearrange(x, self._fold)
        x = prepend(self.pos_drop(self.cls_token + pos_embed[:, :1]), x)
        return x, ((1 if self.scheme.frames_as_images else t), h, w)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the last block, in the blocks' layout (per frame for space-only), before the frame
        averaging and the final LayerNorm."""
        x, grid = self.embed(x)
        blocks = [partial(blk, grid=grid) for blk in self.blocks]
        return run_seq(blocks, x, checkpointing=self.grad_checkpointing and self.training)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> normalised tokens ``(B, 1+T*N, D)`` (space-only: ``(B, 1+N, D)``, the
        per-frame tokens averaged over frames, as the official model)."""
        b = x.shape[0]
        x = self.forward_tokens(x)
        return self.norm(reduce(x, self._merge, "mean", b=b))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


# -- registry ------------------------------------------------------------------------------------------
# Table 1 (K400, 8x224): parameters per scheme. Table 3: TimeSformer 0.59 TFLOPs for 3 views (1 clip x 3 crops),
# TimeSformer-HR 5.11, TimeSformer-L 7.14; per view = / 3 (GFLOPs = multiply-adds, fvcore).
_TINY = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=2, num_heads=4)
_TABLE1, _TABLE3 = "Bertasius et al. 2021, Table 1", "Bertasius et al. 2021, Table 3"


def _vit_b16(name: str, attention_type: str, frames: int, size: int, paper: dict, **tiny: int) -> None:
    """Register ``name``: TimeSformer on ViT-B/16 (the paper's backbone for every variant)."""
    sizes = dict(num_frames=frames, img_size=size, patch_size=16, embed_dim=768, depth=12, num_heads=12)
    register_model(name, TimeSformer, tiny={**_TINY, **tiny}, paper=paper, attention_type=attention_type, **sizes)


_vit_b16("timesformer_base_space_only_8x224", "space_only", 8, 224, dict(params_m=85.9, source=_TABLE1))
_vit_b16("timesformer_base_joint_8x224", "joint_space_time", 8, 224, dict(params_m=85.9, source=_TABLE1))
_vit_b16("timesformer_base_divided_8x224", "divided_space_time", 8, 224,
         dict(params_m=121.4, gflops=590.0 / 3, views=3, source="Bertasius et al. 2021, Tables 1 and 3"))  # fmt: skip
_vit_b16("timesformer_base_local_global_8x224", "local_global", 8, 224, dict(params_m=121.4, source=_TABLE1))
# our reading of T+W+H (two added steps with *_fc) gives 157.0M
_vit_b16("timesformer_base_axial_8x224", "axial", 8, 224, dict(params_m=156.3, params_tol=0.01, source=_TABLE1))
# Table 3 gives 121.4M for HR as for the base model; the 28x28 pos_embed adds 0.46M (0.5%) that it leaves out.
_vit_b16("timesformer_hr_divided_16x448", "divided_space_time", 16, 448, img_size=64,
         paper=dict(params_m=121.4, params_tol=0.01, gflops=5110.0 / 3, views=3,
                    source=f"{_TABLE3} (TimeSformer-HR)"))  # fmt: skip
_vit_b16("timesformer_large_divided_96x224", "divided_space_time", 96, 224, num_frames=8,
         paper=dict(params_m=121.4, gflops=7140.0 / 3, views=3, source=f"{_TABLE3} (TimeSformer-L)"))  # fmt: skip
