"""Video tokenisers: uniform frame sampling and tubelet embedding (Arnab et al. 2021, section 3.2).

Both are one ``Conv3d`` with kernel = stride = ``(tubelet, patch, patch)``; uniform frame sampling is
the ``tubelet=1`` case (each frame embedded by the same 2D patch projection, as in ViT and TimeSformer).
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from torch import nn


class PatchEmbed3d(nn.Module):
    """``(B, C, T, H, W)`` video -> ``(B, t, h*w, D)`` tokens, ``t = T / tubelet``, ``h = H / patch``.

    ``strict_img_size=False`` (timm's name) accepts any ``T`` (a multiple of the tubelet) and any ``H, W``
    of at least one patch; like the ``Conv2d`` of official TimeSformer, a remainder under one patch is dropped.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        num_frames: int = 8,
        patch_size: int = 16,
        tubelet_size: int = 1,
        in_chans: int = 3,
        embed_dim: int = 768,
        bias: bool = True,
        strict_img_size: bool = True,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames {num_frames} is not a multiple of tubelet_size {tubelet_size}")
        self.img_size = img_size
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.strict_img_size = strict_img_size
        self.grid_size = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[1] * self.grid_size[2]
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=k, stride=k, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.strict_img_size:
            if x.ndim != 5 or x.shape[2] % self.tubelet_size or min(x.shape[3:]) < self.patch_size:
                raise ValueError(
                    f"expected video (B, C, T, H, W) with T a multiple of {self.tubelet_size} and H, W >= "
                    f"{self.patch_size}; got {tuple(x.shape)}"
                )
        elif x.ndim != 5 or x.shape[2:] != (self.num_frames, self.img_size, self.img_size):
            raise ValueError(
                f"expected video (B, C, {self.num_frames}, {self.img_size}, {self.img_size}); got {tuple(x.shape)}"
            )
        x = self.proj(x)  # b d t h w
        return rearrange(x, "b d t h w -> b t (h w) d")


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
