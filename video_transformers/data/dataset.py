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
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, default_collate

from video_transformers.data.annotations import VideoRecord
from video_transformers.data.errors import VideoDataError
from video_transformers.data.inflight import InFlight
from video_transformers.data.sampling import ClipSampler, Sampling
from video_transformers.data.transforms import EvalTransform
from video_transformers.data.video import FrameFn, VideoInfo, read_slots
from video_transformers.safety import limits

log = logging.getLogger(__name__)


class ClipSource:
    """Frames of listed videos by slot (:mod:`video_transformers.data.video`); with ``cache=True`` each video is
    decoded whole once (per worker) and clips are indexed from memory: for small datasets that fit in RAM, such as
    the embedded one, where container open + seek would dominate the step time. Both ways pick the same frames:
    the cache holds the frame shown at every slot.

    ``clip_duration`` is the time-window length the datasets' samplers use (``data.sampling: time``)."""

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
            info = self.infos[i]
            self._videos[i] = read_slots(self.records[i].path, range(info.frames), info, decoder=self.decoder)
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

    def frames(self, i: int, slots: list[int], frame_fn: FrameFn | None = None) -> torch.Tensor:
        """``(C, len(slots), H, W)``: the frames of video ``i`` shown at ``slots`` (clamped to the video), uint8 or
        as ``frame_fn`` makes each (the evaluation resize runs as frames arrive)."""
        info = self.infos[i]
        if not self._cacheable(i):
            return read_slots(self.records[i].path, slots, info, decoder=self.decoder, frame_fn=frame_fn)
        video = self._whole(i)
        clamped = [min(max(int(s), 0), video.shape[1] - 1) for s in slots]
        if frame_fn is None:
            return video[:, clamped]
        done: dict[int, torch.Tensor] = {}
        for s in clamped:
            if s not in done:
                done[s] = frame_fn(video[:, s])
        return torch.stack([done[s] for s in clamped], dim=1)


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

    def clip_slots(self, v: int, clip: int) -> list[int]:
        """The slots of clip ``clip`` of video ``v`` (their times: ``slot / infos[v].fps`` seconds)."""
        return self.sampler.eval_slots(self.source.infos[v], clip, self.num_clips)

    def _load(self, v: int, view: int) -> dict:
        clip_idx, crop_idx = divmod(view, self.num_crops)
        if self._last is None or self._last[0] != (v, clip_idx):
            # the short-side resize runs on each frame as it is decoded (memory bounded by the clip)
            clip = self.source.frames(v, self.clip_slots(v, clip_idx), self.transform.resize_frame)
            self._last = ((v, clip_idx), clip)
        video = self.transform(self._last[1], crop_idx, self.num_crops)
        return {"video": video, "label": self.source.records[v].label, "video_index": v, "view_index": view}


@dataclass(frozen=True)
class ClipPlan:
    """How a split turns a :class:`ClipSource` into items: training (one random clip per video, ``repeats``
    augmented copies) or evaluation (every ``num_clips x num_crops`` view). Files on disk and streamed shards
    (:mod:`video_transformers.data.streaming`) go through the same plan."""

    num_frames: int
    sampling: Sampling
    transform: Callable
    train: bool
    repeats: int = 1
    num_clips: int = 1
    num_crops: int = 1

    @property
    def views(self) -> int:
        """Clips a video gives: augmented copies in training, views at evaluation."""
        return self.repeats if self.train else self.num_clips * self.num_crops

    def dataset(self, source: ClipSource, *, skip_bad: bool = False) -> TrainClipDataset | MultiViewDataset:
        common = dict(num_frames=self.num_frames, transform=self.transform, sampling=self.sampling, skip_bad=skip_bad)
        if self.train:
            return TrainClipDataset(source, repeats=self.repeats, **common)
        return MultiViewDataset(source, num_clips=self.num_clips, num_crops=self.num_crops, **common)
