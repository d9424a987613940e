"""Video tokenisers: uniform frame sampling and tubelet embedding (Arnab et al. 2021, section 3.2), and
UniFormerV2's temporally down-sampling tokenizer.

All are one ``Conv3d`` with stride ``(tubelet, patch, patch)``; uniform frame sampling is the ``tubelet=1``
case (each frame embedded by the same 2D patch projection, as in ViT and TimeSformer).
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from torch import nn


class PatchEmbed3d(nn.Module):
    """``(B, C, T, H, W)`` video -> ``(B, t, h*w, D)`` tokens, ``t = T / tubelet``, ``h = H / patch``.

    The kernel is ``(temporal_kernel, patch, patch)`` (``temporal_kernel`` defaults to the tubelet: tubelet
    embedding); a longer temporal kernel is padded by ``temporal_kernel // 2`` frames on each side, e.g.
    UniFormerV2's kernel 3, stride 2 (its official ``conv1``, uniformerv2_model.py:301-305).

    ``strict_img_size`` (timm's name) requires ``H = W = img_size``, ``strict_num_frames`` requires
    ``T = num_frames``; without them any ``H, W`` of at least one patch (a remainder under one patch is
    dropped, like the ``Conv2d`` of official TimeSformer) and any ``T`` that is a multiple of the tubelet.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        num_frames: int = 8,
        patch_size: int = 16,
        tubelet_size: int = 1,
        temporal_kernel: int | None = None,
        in_chans: int = 3,
        embed_dim: int = 768,
        bias: bool = True,
        strict_img_size: bool = True,
        strict_num_frames: bool = True,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames {num_frames} is not a multiple of tubelet_size {tubelet_size}")
        self.img_size, self.num_frames, self.patch_size, self.tubelet_size = (
            img_size,
            num_frames,
            patch_size,
            tubelet_size,
        )
        self.temporal_kernel = temporal_kernel or tubelet_size
        self.strict_img_size, self.strict_num_frames = strict_img_size, strict_num_frames
        self.grid_size = self.grid(num_frames, img_size, img_size)
        self.num_patches = self.grid_size[1] * self.grid_size[2]
        pad = self.temporal_kernel // 2 if self.temporal_kernel > tubelet_size else 0
        self.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            kernel_size=(self.temporal_kernel, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
            padding=(pad, 0, 0),
            bias=bias,
        )

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Tokens per axis ``(t, h, w)`` for a ``frames x height x width`` input."""
        return frames // self.tubelet_size, height // self.patch_size, width // self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, size, p = self.tubelet_size, self.img_size, self.patch_size
        frames = f"{self.num_frames}" if self.strict_num_frames else f"T (a multiple of {t})"
        sides = f"{size}, {size}" if self.strict_img_size else f"H, W (>= {p})"
        bad = (
            x.ndim != 5
            or x.shape[2] % t
            or (self.strict_num_frames and x.shape[2] != self.num_frames)
            or (self.strict_img_size and x.shape[3:] != (size, size))
            or min(x.shape[3:]) < p
        )
        if bad:
            raise ValueError(f"expected video (B, C, {frames}, {sides}); got {tuple(x.shape)}")
        return rearrange(self.proj(x), "b d t h w -> b t (h w) d")


def inflate_patch_weight(
    weight: torch.Tensor, tubelet_size: int, method: Literal["central_frame", "average"] = "central_frame"
) -> torch.Tensor:
    """Inflate a 2D patch kernel ``(D, C, p, p)`` to a tubelet kernel ``(D, C, t, p, p)``.

    ``central_frame`` (Arnab et al. 2021, eq. 8): the image kernel at the middle time index, zeros
    elsewhere, so the tubelet embedding of a static clip equals the image embedding of its middle frame.
    ``average`` (eq. 7, "filter inflation"): the kernel replicated over time and divided by ``t``.
    """
    if weight.ndim == 5:
        return weight
    if weight.ndim != 4:
        raise ValueError(f"patch kernel must be (D, C, p, p); got {tuple(weight.shape)}")
    if method == "average":
        return weight.unsqueeze(2).repeat(1, 1, tubelet_size, 1, 1) / tubelet_size
    if method == "central_frame":
        out = weight.new_zeros(weight.shape[:2] + (tubelet_size,) + weight.shape[2:])
        out[:, :, tubelet_size // 2] = weight
        return out
    raise ValueError(f"unknown inflation {method!r}; expected 'central_frame' or 'average'")
