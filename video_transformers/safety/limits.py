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
    max_frame_pixels: int = 8192 * 8192  # decoded frame width x height (8K video is 7680 x 4320)
    max_cached_video_bytes: int = 512 * 2**20  # data.cache_videos keeps a video in memory only below this
    max_other_int: int = 4096  # any other integer model argument (kernel sizes, layer indices, counts)


LIMITS = SizeLimits()

# Size arguments with their own limit: keyword -> (limit attribute, minimum). Depth-like keys may be 0 (e.g. no
# temporal stack). Every other integer argument is bounded by ``max_other_int`` (see check_model_kwargs).
_INT_KEYS: dict[str, tuple[str, int]] = {
    "num_frames": ("max_frames", 1),
    "img_size": ("max_image_size", 1),
    "patch_size": ("max_patch_size", 1),
    "tubelet_size": ("max_frames", 1),
    "in_chans": ("max_in_chans", 1),
    "embed_dim": ("max_embed_dim", 1),
    "depth": ("max_depth", 1),
    "num_heads": ("max_heads", 1),
    "num_classes": ("max_classes", 0),
}


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


def _is_depth(key: str) -> bool:
    return key == "depth" or key.endswith("_depth")


def _check_value(key: str, value: Any, lim: SizeLimits, where: str) -> int | None:
    """Range-check one argument by its name and type; returns it when it is an integer size."""
    if key in _INT_KEYS:
        attr, lo = _INT_KEYS[key]
        return _int(key, _as_int_pair(value), lo, getattr(lim, attr), where)
    if _is_depth(key):
        return _int(key, value, 0, lim.max_depth, where)
    if key.endswith("_ratio"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= lim.max_mlp_ratio:
            raise SizeError(f"{where}{key}={value!r}: expected a number in (0, {lim.max_mlp_ratio:g}]")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(key, value, 0, lim.max_other_int, where)
    if isinstance(value, (list, tuple)) and any(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(value) > lim.max_depth:
            raise SizeError(f"{where}{key}: {len(value):,} entries; expected at most {lim.max_depth:,}")
        for v in value:
            _int(key, v, 0, lim.max_other_int, where)
    if isinstance(value, float) and not math.isfinite(value):
        raise SizeError(f"{where}{key}={value}: expected a finite number")
    return None


def check_model_kwargs(name: str, kwargs: Mapping[str, Any], limits: SizeLimits | None = None) -> None:
    """Reject absurd architecture arguments of model ``name`` before it is built.

    Every argument is checked by its name and type, so a model's new size argument is checked too: the sizes
    in the table above against their own limits, ``depth`` and every ``*_depth`` against ``max_depth``,
    every ``*_ratio`` in ``(0, max_mlp_ratio]``, any other integer (and list of integers) against
    ``max_other_int``, floats for finiteness. Then the token count per clip and an estimate of the parameter
    count (``sum of depths x (8 + 2 x largest ratio) x embed_dim^2`` plus embeddings and head: an upper bound
    for every block type here, factorised ones included).
    """
    lim = limits or LIMITS
    where = f"model {name!r}: "
    values = {k: v for k, v in ((k, _check_value(k, v, lim, where)) for k, v in kwargs.items() if v is not None)}
    values = {k: v for k, v in values.items() if v is not None}
    frames, size = values.get("num_frames", 1), values.get("img_size", 1)
    patch, tubelet = values.get("patch_size", 1), values.get("tubelet_size", 1)
    tokens = math.ceil(frames / tubelet) * math.ceil(size / patch) ** 2
    if tokens > lim.max_tokens:
        raise SizeError(
            f"{where}{frames} frames at {size}px with {patch}px patches (tubelet {tubelet}) give {tokens:,} tokens"
            f" per clip; the limit is {lim.max_tokens:,} (check num_frames / img_size / patch_size)"
        )
    dim = values.get("embed_dim", 0)
    depth = sum(v for k, v in values.items() if _is_depth(k))
    ratio = max([float(v) for k, v in kwargs.items() if k.endswith("_ratio")] or [4.0])
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
