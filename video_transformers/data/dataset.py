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
from video_transformers.data.video import VideoInfo, decode_clip

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


class ClipSource:
    """Decodes ``[start, start + clip_duration)`` of a listed video; with ``cache=True`` each video is
    decoded whole once (per worker) and clips are sliced from memory: for small datasets that fit in RAM,
    such as the embedded one, where container open + seek would dominate the step time."""

    def __init__(self, records: Sequence[VideoRecord], infos: Sequence[VideoInfo], clip_duration: float,
                 cache: bool = False) -> None:
        self.records, self.infos, self.clip_duration, self.cache = list(records), list(infos), clip_duration, cache
        self._videos: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def clip(self, i: int, start: float) -> torch.Tensor:
        """``(C, T, H, W)`` uint8 frames of video ``i`` from ``start`` for one clip duration."""
        if not self.cache:
            return decode_clip(self.records[i].path, start, start + self.clip_duration)
        if i not in self._videos:
            self._videos[i] = decode_clip(self.records[i].path, 0.0, self.infos[i].duration + 1.0)
        video, fps = self._videos[i], self.infos[i].fps
        first = min(round(start * fps), video.shape[1] - 1)
        return video[:, first : first + max(1, round(self.clip_duration * fps))]


class TrainClipDataset(Dataset):
    """One random clip per video per epoch; item ``i`` is video ``i``."""

    def __init__(
        self,
        source: ClipSource,
        *,
        num_frames: int,
        transform: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.source, self.num_frames, self.transform = source, num_frames, transform
        self.sampler = RandomClipSampler(Fraction(source.clip_duration).limit_denominator(10_000))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        duration = Fraction(self.source.infos[i].duration).limit_denominator(10_000)
        start = float(self.sampler(0.0, duration, None).clip_start_sec)
        video = self.transform(uniform_temporal_subsample(self.source.clip(i, start), self.num_frames))
        return {"video": video, "label": self.source.records[i].label, "video_index": i, "view_index": 0}


class MultiViewDataset(Dataset):
    """``num_clips`` temporal clips x ``num_crops`` spatial crops per video; item ``i`` is one view.

    Views of the same clip are consecutive, so the last decoded clip is reused for its crops.
    """

    def __init__(
        self,
        source: ClipSource,
        *,
        num_frames: int,
        num_clips: int,
        num_crops: int,
        transform: EvalTransform,
    ) -> None:
        self.source, self.num_frames = source, num_frames
        self.num_clips, self.num_crops, self.transform = num_clips, num_crops, transform
        self.views_per_video = num_clips * num_crops
        self._last: tuple[tuple[int, int], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.source) * self.views_per_video

    def __getitem__(self, i: int) -> dict:
        v, view = divmod(i, self.views_per_video)
        clip_idx, crop_idx = divmod(view, self.num_crops)
        if self._last is None or self._last[0] != (v, clip_idx):
            start = clip_starts(self.source.infos[v].duration, self.source.clip_duration, self.num_clips)[clip_idx]
            self._last = ((v, clip_idx), uniform_temporal_subsample(self.source.clip(v, start), self.num_frames))
        video = self.transform(self._last[1], crop_idx, self.num_crops)
        return {"video": video, "label": self.source.records[v].label, "video_index": v, "view_index": view}
