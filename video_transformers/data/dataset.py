"""Map-style clip datasets indexed by (video, view), so Lightning's distributed sampler splits videos
across ranks without duplicating them (PyTorchVideo's iterable ``LabeledVideoDataset`` would).

Which frames make a clip is the :class:`~video_transformers.data.sampling.ClipSampler`'s business (PyTorchVideo's
``RandomClipSampler`` / ``ConstantClipsPerVideoSampler`` for time windows, frame strides, TSN segments).

With ``skip_bad=True`` a video that fails to decode at run time does not end the epoch: the failure is logged
with the file, the next video of the split (``i + 1``, ``i + 2``, ...: deterministic) is served instead, and the
item carries ``skipped`` = the failed video's index (``-1`` otherwise) for the data module to report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from fractions import Fraction

import torch
from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler
from torch.utils.data import Dataset, default_collate

from video_transformers.data.annotations import VideoRecord
from video_transformers.data.errors import VideoDataError
from video_transformers.data.inflight import InFlight
from video_transformers.data.sampling import ClipSampler, Sampling
from video_transformers.data.transforms import EvalTransform
from video_transformers.data.video import VideoInfo, decode_clip, decode_frames
from video_transformers.safety import limits

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
    """Decodes clips of listed videos: a time window (``clip``) or frames by index (``frames``); with
    ``cache=True`` each video is decoded whole once (per worker) and clips are sliced from memory: for small
    datasets that fit in RAM, such as the embedded one, where container open + seek would dominate the step time."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        infos: Sequence[VideoInfo],
        clip_duration: float,
        cache: bool = False,
        decoder: str = "pyav",
    ) -> None:
        self.records, self.infos, self.clip_duration, self.cache = list(records), list(infos), clip_duration, cache
        self.decoder = decoder
        self._videos: dict[int, torch.Tensor] = {}
        self._too_big: set[int] = set()
        self.inflight = InFlight()  # which video each loader worker is decoding (named if the worker dies)

    def __len__(self) -> int:
        return len(self.records)

    def _whole(self, i: int) -> torch.Tensor:
        if i not in self._videos:
            self._videos[i] = decode_clip(self.records[i].path, 0.0, self.infos[i].duration + 1.0)
        return self._videos[i]

    def _cacheable(self, i: int) -> bool:
        """``cache`` is on and video ``i`` fits the per-video budget (a long or large video is decoded per clip,
        so ``cache_videos`` on the wrong dataset cannot exhaust memory)."""
        if not self.cache:
            return False
        info = self.infos[i]
        size = info.frames * info.width * info.height * 3
        if size <= limits.LIMITS.max_cached_video_bytes:
            return True
        if i not in self._too_big:
            self._too_big.add(i)
            path, mb = self.records[i].path, size / 2**20
            log.info("%s: %.0f MB decoded, over the cache budget: decoding per clip", path, mb)
        return False

    def clip(self, i: int, start: float) -> torch.Tensor:
        """``(C, T, H, W)`` uint8 frames of video ``i`` from ``start`` for one clip duration."""
        fps = self.infos[i].fps
        if self._cacheable(i):
            video = self._whole(i)
            first = min(round(start * fps), video.shape[1] - 1)
            return video[:, first : first + max(1, round(self.clip_duration * fps))]
        if self.decoder != "pyav":
            first = round(start * fps)
            return self.frames(i, list(range(first, first + max(1, round(self.clip_duration * fps)))))
        return decode_clip(self.records[i].path, start, start + self.clip_duration)

    def frames(self, i: int, indices: list[int]) -> torch.Tensor:
        """``(C, len(indices), H, W)`` uint8: the frames of video ``i`` at ``indices`` (clamped to the last)."""
        if self._cacheable(i):
            video = self._whole(i)
            return video[:, [min(j, video.shape[1] - 1) for j in indices]]
        return decode_frames(self.records[i].path, indices, decoder=self.decoder)


class _SkipBad:
    """Shared run-time skip logic: try video ``i``, then ``i + 1``, ... of the split."""

    source: ClipSource
    skip_bad: bool

    def _with_substitute(self, i: int, load: Callable[[int], dict]) -> dict:
        n, skipped = len(self.source), -1
        for attempt in range(n if self.skip_bad else 1):
            j = (i + attempt) % n
            self.source.inflight.mark(self.source.records[j].path)
            try:
                item = load(j)
            except VideoDataError as e:
                if not self.skip_bad:
                    raise
                log.warning("run-time decode failure, serving video %d instead: %s", (j + 1) % n, e)
                skipped = j if skipped < 0 else skipped
                continue
            self.source.inflight.mark(None)
            item["skipped"] = skipped
            return item
        raise VideoDataError(f"every one of the {n} videos failed to decode (last: {self.source.records[i].path})")


class TrainClipDataset(_SkipBad, Dataset):
    """One random clip per video per epoch; item ``i`` is video ``i``.

    ``repeats > 1`` (repeated augmentation, Hoffer et al. 2020, as SlowFast's ``AUG.NUM_SAMPLE``): the clip is
    decoded once and augmented ``repeats`` times; the item stacks them, ``(repeats, C, T, H, W)``, and
    :func:`collate_repeated` flattens them into the batch.
    """

    def __init__(
        self,
        source: ClipSource,
        *,
        num_frames: int,
        transform: Callable[[torch.Tensor, int], tuple[torch.Tensor, int]],
        sampling: Sampling | None = None,
        repeats: int = 1,
        skip_bad: bool = False,
    ) -> None:
        self.source, self.num_frames, self.transform = source, num_frames, transform
        self.sampler = ClipSampler(sampling or Sampling("time", num_frames), source.clip_duration)
        self.repeats, self.skip_bad = repeats, skip_bad

    def __len__(self) -> int:
        return len(self.source)

    def _load(self, i: int) -> dict:
        clip = self.sampler.train_clip(self.source, i)
        label = self.source.records[i].label
        if self.repeats == 1:
            video, y = self.transform(clip, label)
            return {"video": video, "label": y, "video_index": i, "view_index": 0}
        views = [self.transform(clip, label) for _ in range(self.repeats)]
        return {
            "video": torch.stack([v for v, _ in views]),
            "label": torch.tensor([y for _, y in views]),
            "video_index": torch.full((self.repeats,), i),
            "view_index": torch.arange(self.repeats),
        }

    def __getitem__(self, i: int) -> dict:
        item = self._with_substitute(i, self._load)
        if self.repeats > 1:
            item["skipped"] = torch.full((self.repeats,), item["skipped"])
        return item


def collate_repeated(items: list[dict]) -> dict:
    """Collate items of :class:`TrainClipDataset` with ``repeats > 1``: ``(B, R, ...) -> (B * R, ...)``."""
    batch = default_collate(items)
    return {k: v.flatten(0, 1) for k, v in batch.items()}


class MultiViewDataset(_SkipBad, Dataset):
    """``num_clips`` temporal clips x ``num_crops`` spatial crops per video; item ``i`` is one view.

    Views of the same clip are consecutive, so the last decoded clip is reused for its crops. A substituted view
    (``skip_bad``) carries the substitute's video index and label, so per-video scores stay correct.
    """

    def __init__(
        self,
        source: ClipSource,
        *,
        num_frames: int,
        num_clips: int,
        num_crops: int,
        transform: EvalTransform,
        sampling: Sampling | None = None,
        skip_bad: bool = False,
    ) -> None:
        self.source, self.num_frames = source, num_frames
        self.num_clips, self.num_crops, self.transform = num_clips, num_crops, transform
        self.sampler = ClipSampler(sampling or Sampling("time", num_frames), source.clip_duration)
        self.views_per_video = num_clips * num_crops
        self.skip_bad = skip_bad
        self._last: tuple[tuple[int, int], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.source) * self.views_per_video

    def __getitem__(self, i: int) -> dict:
        v, view = divmod(i, self.views_per_video)
        return self._with_substitute(v, lambda u: self._load(u, view))

    def _load(self, v: int, view: int) -> dict:
        clip_idx, crop_idx = divmod(view, self.num_crops)
        if self._last is None or self._last[0] != (v, clip_idx):
            self._last = ((v, clip_idx), self.sampler.eval_clip(self.source, v, clip_idx, self.num_clips))
        video = self.transform(self._last[1], crop_idx, self.num_crops)
        return {"video": video, "label": self.source.records[v].label, "video_index": v, "view_index": view}
