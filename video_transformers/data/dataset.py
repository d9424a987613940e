"""Map-style clip datasets indexed by (video, view), so Lightning's distributed sampler splits videos
across ranks without duplicating them (PyTorchVideo's iterable ``LabeledVideoDataset`` would).

Clip positions come from PyTorchVideo's samplers: ``RandomClipSampler`` for training and
``ConstantClipsPerVideoSampler`` (``num_clips`` evenly spaced clips) for evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from fractions import Fraction

import torch
from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler, RandomClipSampler
from torch.utils.data import Dataset

from video_transformers.data.annotations import VideoRecord
from video_transformers.data.transforms import EvalTransform, uniform_temporal_subsample
from video_transformers.data.video import decode_clip

log = logging.getLogger(__name__)


def clip_starts(duration: float, clip_duration: float, num_clips: int) -> list[float]:
    """Start times of ``num_clips`` evenly spaced clips (PyTorchVideo's ``ConstantClipsPerVideoSampler``)."""
    sampler = ConstantClipsPerVideoSampler(Fraction(clip_duration).limit_denominator(10_000), num_clips)
    starts, last_end = [], 0.0
    for _ in range(num_clips):
        info = sampler(last_end, Fraction(duration).limit_denominator(10_000), None)
        starts.append(float(info.clip_start_sec))
        last_end = info.clip_end_sec
    sampler.reset()
    return starts


class TrainClipDataset(Dataset):
    """One random clip per video per epoch; item ``i`` is video ``i``."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        durations: Sequence[float],
        *,
        clip_duration: float,
        num_frames: int,
        transform: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.records, self.durations = list(records), list(durations)
        self.clip_duration, self.num_frames, self.transform = clip_duration, num_frames, transform
        self.sampler = RandomClipSampler(Fraction(clip_duration).limit_denominator(10_000))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        info = self.sampler(0.0, Fraction(self.durations[i]).limit_denominator(10_000), None)
        start = float(info.clip_start_sec)
        clip = decode_clip(rec.path, start, start + self.clip_duration)
        video = self.transform(uniform_temporal_subsample(clip, self.num_frames))
        return {"video": video, "label": rec.label, "video_index": i, "view_index": 0}


class MultiViewDataset(Dataset):
    """``num_clips`` temporal clips x ``num_crops`` spatial crops per video; item ``i`` is one view.

    Views of the same clip are consecutive, so the last decoded clip is reused for its crops.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        durations: Sequence[float],
        *,
        clip_duration: float,
        num_frames: int,
        num_clips: int,
        num_crops: int,
        transform: EvalTransform,
    ) -> None:
        self.records, self.durations = list(records), list(durations)
        self.clip_duration, self.num_frames = clip_duration, num_frames
        self.num_clips, self.num_crops, self.transform = num_clips, num_crops, transform
        self.views_per_video = num_clips * num_crops
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.records) * self.views_per_video

    def __getitem__(self, i: int) -> dict:
        v, view = divmod(i, self.views_per_video)
        clip_idx, crop_idx = divmod(view, self.num_crops)
        rec = self.records[v]
        start = clip_starts(self.durations[v], self.clip_duration, self.num_clips)[clip_idx]
        key = (str(rec.path), start)
        if self._cache is None or self._cache[0] != key:
            clip = decode_clip(rec.path, start, start + self.clip_duration)
            self._cache = (key, uniform_temporal_subsample(clip, self.num_frames))
        video = self.transform(self._cache[1], crop_idx, self.num_crops)
        return {"video": video, "label": rec.label, "video_index": v, "view_index": view}
