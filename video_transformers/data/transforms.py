"""Clip transforms on ``(C, T, H, W)`` tensors; every frame of a clip gets the same crop and flip."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def uniform_temporal_subsample(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Pick ``num_frames`` evenly spaced frames from ``(C, T, H, W)`` (repeats frames if T is short)."""
    t = x.shape[1]
    idx = torch.linspace(0, t - 1, num_frames).round().long()
    return x.index_select(1, idx)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(C, T, H, W)`` so that min(H, W) == size, keeping the aspect ratio (bilinear, antialiased)."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    y = F.interpolate(x.transpose(0, 1), size=new, mode="bilinear", align_corners=False, antialias=True)
    return y.transpose(0, 1)


def crop(x: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return x[..., top : top + size, left : left + size]


def spatial_crop(x: torch.Tensor, size: int, index: int, num_crops: int) -> torch.Tensor:
    """The ``index``-th of ``num_crops`` crops along the long side (3 crops: left/top, centre, right/bottom).

    With one crop it is the centre crop (as in SlowFast / PyTorchVideo's uniform crop).
    """
    h, w = x.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"frame {h}x{w} is smaller than the crop {size}")
    top, left = (h - size) // 2, (w - size) // 2
    if num_crops > 1:
        frac = index / (num_crops - 1)
        if w >= h:
            left = round((w - size) * frac)
        else:
            top = round((h - size) * frac)
    return crop(x, top, left, size)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(C, T, H, W)`` -> float ``(x / 255 - mean) / std``."""
    x = x.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1, 1)
    return (x - m) / s


class TrainTransform:
    """Random short-side rescale in ``short_side`` range, random crop, optional horizontal flip, normalise."""

    def __init__(
        self,
        *,
        crop_size: int,
        short_side: tuple[int, int],
        hflip: bool,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.crop_size, self.short_side, self.hflip = crop_size, short_side, hflip
        self.mean, self.std = mean, std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_short_side(x.float(), random.randint(*self.short_side))
        h, w = x.shape[-2:]
        x = crop(x, random.randint(0, h - self.crop_size), random.randint(0, w - self.crop_size), self.crop_size)
        if self.hflip and random.random() < 0.5:
            x = x.flip(-1)
        return normalize(x, self.mean, self.std)


class EvalTransform:
    """Short-side resize, then crop ``index`` of ``num_crops`` along the long side, normalise."""

    def __init__(self, *, crop_size: int, short_side: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.crop_size, self.short_side, self.mean, self.std = crop_size, short_side, mean, std

    def __call__(self, x: torch.Tensor, index: int = 0, num_crops: int = 1) -> torch.Tensor:
        x = resize_short_side(x.float(), self.short_side)
        return normalize(spatial_crop(x, self.crop_size, index, num_crops), self.mean, self.std)
