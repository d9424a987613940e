"""Size limits checked before allocation: a typo (``num_frames: 1000000``, ``embed_dim: 10000000``) or a
hostile checkpoint must fail with a message naming the argument, not after minutes of swapping or an
out-of-memory kill.

The limits are far above every paper configuration in the registry: the largest token grids are
TimeSformer-L (96 frames x 14 x 14 = 18,816 tokens) and UniFormerV2 L/14@336 (32 x 24 x 24 = 18,432); the
largest model is UniFormerV2-L at 354M parameters. ``LIMITS`` can be replaced for research beyond them::

    import video_transformers.safety.limits as limits
    limits.LIMITS = limits.SizeLimits(max_tokens=4_000_000)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SizeError(ValueError):
    """A size argument is absurd (non-positive or far beyond any model/clip this suite is meant for)."""


@dataclass(frozen=True)
class SizeLimits:
    max_frames: int = 4096  # frames per clip
    max_image_size: int = 4096  # pixels per side of the model input / crop
    max_patch_size: int = 1024
    max_embed_dim: int = 16384  # ViT-22B is 6144 wide
    max_depth: int = 1024  # blocks per stack
    max_heads: int = 1024
    max_classes: int = 1_000_000
    max_in_chans: int = 64
    max_mlp_ratio: float = 64.0
    max_tokens: int = 1 << 20  # tokens per clip; paper sizes reach ~19k
    max_params: float = 4e9  # estimated parameters (16 GB in fp32)
    max_batch_size: int = 65536
    max_views: int = 1024  # clips or crops per video at evaluation
    max_sampling_rate: int = 1000
    max_clip_seconds: float = 3600.0
    max_frame_pixels: int = 8192 * 8192  # decoded frame width x height (8K video is 7680 x 4320)
    max_cached_video_bytes: int = 512 * 2**20  # data.cache_videos keeps a video in memory only below this


LIMITS = SizeLimits()

# registry keyword -> (limit attribute, minimum). Depth-like keys may be 0 (e.g. no temporal stack).
_INT_KEYS: dict[str, tuple[str, int]] = {
    "num_frames": ("max_frames", 1),
    "img_size": ("max_image_size", 1),
    "patch_size": ("max_patch_size", 1),
    "tubelet_size": ("max_frames", 1),
    "in_chans": ("max_in_chans", 1),
    "embed_dim": ("max_embed_dim", 1),
    "depth": ("max_depth", 1),
    "spatial_depth": ("max_depth", 1),
    "temporal_depth": ("max_depth", 0),
    "num_heads": ("max_heads", 1),
    "num_classes": ("max_classes", 0),
    "local_kernel": ("max_patch_size", 1),
}
_RATIO_KEYS = ("mlp_ratio", "global_mlp_ratio")


def _int(name: str, value: Any, lo: int, hi: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SizeError(f"{where}{name}={value!r}: expected an integer")
    if not lo <= value <= hi:
        limit = f"expected {lo} <= {name} <= {hi:,} (see video_transformers.safety.limits)"
        raise SizeError(f"{where}{name}={value}: {limit}")
    return value


def _as_int_pair(value: Any) -> Any:
    """``img_size`` / ``patch_size`` may be given as ``(h, w)``; the larger side bounds the check."""
    if isinstance(value, (tuple, list)) and value and all(type(v) is int for v in value):
        return max(value)
    return value


def check_model_kwargs(name: str, kwargs: Mapping[str, Any], limits: SizeLimits | None = None) -> None:
    """Reject absurd architecture arguments of registry model ``name`` before it is built.

    Checks each known size argument's type and range, then the token count per clip and an estimate of
    the parameter count (``depth x (8 + 2 mlp_ratio) x embed_dim^2`` plus embeddings and head: an upper
    bound for every block type here, factorised ones included).
    """
    lim = limits or LIMITS
    where = f"model {name!r}: "
    values: dict[str, int] = {}
    for key, (attr, lo) in _INT_KEYS.items():
        if key in kwargs and kwargs[key] is not None:
            values[key] = _int(key, _as_int_pair(kwargs[key]), lo, getattr(lim, attr), where)
    for key in _RATIO_KEYS:
        if key in kwargs:
            r = kwargs[key]
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= lim.max_mlp_ratio:
                raise SizeError(f"{where}{key}={r!r}: expected a number in (0, {lim.max_mlp_ratio:g}]")
    frames, size = values.get("num_frames", 1), values.get("img_size", 1)
    patch, tubelet = values.get("patch_size", 1), values.get("tubelet_size", 1)
    tokens = math.ceil(frames / tubelet) * math.ceil(size / patch) ** 2
    if tokens > lim.max_tokens:
        raise SizeError(
            f"{where}{frames} frames at {size}px with {patch}px patches (tubelet {tubelet}) give {tokens:,} tokens"
            f" per clip; the limit is {lim.max_tokens:,} (check num_frames / img_size / patch_size)"
        )
    dim = values.get("embed_dim", 0)
    depth = sum(values.get(k, 0) for k in ("depth", "spatial_depth", "temporal_depth"))
    ratio = max([float(kwargs[k]) for k in _RATIO_KEYS if k in kwargs] or [4.0])
    params = (
        depth * (8 + 2 * ratio) * dim * dim
        + (tokens + frames) * dim  # position embeddings
        + values.get("in_chans", 3) * patch * patch * tubelet * dim
        + dim * values.get("num_classes", 0)
    )
    if params > lim.max_params:
        raise SizeError(
            f"{where}about {params / 1e9:.1f}B parameters (embed_dim={dim}, depth={depth}, mlp_ratio={ratio:g},"
            f" {tokens:,} tokens); the limit is {lim.max_params / 1e9:.1f}B"
        )


def check_data_sizes(sizes: Mapping[str, Any], limits: SizeLimits | None = None) -> None:
    """Reject absurd data-module sizes (``data.<name>`` in messages) before anything is decoded."""
    lim = limits or LIMITS
    bounds = {
        "num_frames": lim.max_frames,
        "sampling_rate": lim.max_sampling_rate,
        "crop_size": lim.max_image_size,
        "eval_short_side": lim.max_image_size,
        "batch_size": lim.max_batch_size,
        "eval_batch_size": lim.max_batch_size,
        "val_clips": lim.max_views,
        "val_crops": lim.max_views,
        "test_clips": lim.max_views,
        "test_crops": lim.max_views,
    }
    for key, hi in bounds.items():
        if key in sizes and sizes[key] is not None:
            _int(key, sizes[key], 1, hi, "data.")
    if "train_short_side" in sizes:
        side = sizes["train_short_side"]
        if not isinstance(side, (tuple, list)) or len(side) != 2:
            raise SizeError(f"data.train_short_side={side!r}: expected [min, max]")
        for v in side:
            _int("train_short_side", v, 1, lim.max_image_size, "data.")
    if "num_frames" in sizes and "sampling_rate" in sizes and "fps" in sizes:
        fps = sizes["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 10_000 or math.isnan(fps):
            raise SizeError(f"data.fps={fps!r}: expected a number in (0, 10000]")
        seconds = sizes["num_frames"] * sizes["sampling_rate"] / fps
        if seconds > lim.max_clip_seconds:
            raise SizeError(
                f"data: a clip of {sizes['num_frames']} frames x sampling rate {sizes['sampling_rate']} at {fps:g} fps"
                f" spans {seconds:,.0f}s; the limit is {lim.max_clip_seconds:,.0f}s"
            )
