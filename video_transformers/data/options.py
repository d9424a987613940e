"""Checks of :class:`~video_transformers.data.VideoDataModule`'s options that need no data: each wrong value is a
``ValueError`` naming its ``data.*`` key, raised before any file is read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from video_transformers.data.transforms import RandAugment

AT_LEAST_ONE = (
    "num_frames",
    "sampling_rate",
    "crop_size",
    "batch_size",
    "val_clips",
    "val_crops",
    "test_clips",
    "test_crops",
    "repeated_aug",
)


def check_options(h: Mapping[str, Any]) -> None:
    """Raise on the first option of ``h`` (the data module's constructor arguments) that cannot work."""
    if h["source"] not in ("files", "stream"):
        raise ValueError(f"data.source must be 'files' or 'stream'; got {h['source']!r}")
    if h["source"] == "stream" and h["root"] is None:
        raise ValueError("data.root is required when data.source is 'stream' (the folder or s3:// URL of the shards)")
    if h["dataset"] != "embedded" and h["root"] is None:
        raise ValueError(f"data.root is required when data.dataset is {h['dataset']!r}")
    for name in AT_LEAST_ONE:
        if h[name] < 1:
            raise ValueError(f"data.{name} must be >= 1; got {h[name]}")
    if h["loader_timeout"] < 0:
        raise ValueError(f"data.loader_timeout must be >= 0 seconds (0: no timeout); got {h['loader_timeout']}")
    if h["fps"] <= 0:
        raise ValueError(f"data.fps must be > 0; got {h['fps']}")
    crop, train_side, eval_side = h["crop_size"], h["train_short_side"], h["eval_short_side"]
    if not crop <= train_side[0] <= train_side[1] or eval_side < crop:
        raise ValueError(
            f"need crop_size <= train_short_side[0] <= train_short_side[1] and crop_size <= eval_short_side;"
            f" got crop_size={crop}, train_short_side={train_side}, eval_short_side={eval_side}"
        )
    if not 0 <= h["random_erasing"] <= 1:
        raise ValueError(f"data.random_erasing is a probability; got {h['random_erasing']}")
    if h["rand_augment"]:
        RandAugment.from_string(h["rand_augment"])  # a typo fails before any decoding
