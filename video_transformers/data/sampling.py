"""Temporal sampling: which frames of a video make a clip, by name (``data.sampling``).

* ``time`` (default): a clip spans ``num_frames x sampling_rate / data.fps`` seconds, of which ``num_frames``
  evenly spaced frames are kept (PyTorchVideo's clip samplers and ``UniformTemporalSubsample``).
* ``stride`` / ``"<N>x<R>"``: ``N`` frames every ``R``-th frame of the video's own frame rate, so the clip
  lasts ``N x R / fps_video`` seconds (TimeSformer, Bertasius et al. 2021, Sec. 4: "8 x 32"; ViViT, Arnab et al.
  2021, Sec. 4.1: 32 frames, stride 2). Training draws the start uniformly; evaluation takes ``K`` starts spaced by
  ``(frames - span) / K`` (the official SlowFast/TimeSformer ``get_start_end_idx``). Videos shorter than the span
  are clamped to their last frame, as the official code does.
* ``uniform`` / ``"u<N>"``: TSN segment sampling (Wang et al. 2016), UniFormerV2's "u8": the video is cut into
  ``N`` equal segments and one frame is taken from each, at a random offset in training and, for clip ``k`` of
  ``K`` at evaluation, at offset ``(k + 1) / (K + 1)`` of the segment (the centre for one clip), as mmaction2's
  ``UniformSample`` does.

Frames are chosen by *slot* (timestamp on the video's own frame-rate grid, :mod:`video_transformers.data.video`):
only the chosen frames are decoded, variable-rate videos are timed by their timestamps, and the cache
(``data.cache_videos``) cannot change the choice.

Named presets: ``timesformer`` = ``8x32``, ``vivit`` = ``32x2``, ``uniformerv2`` = ``u8``. A preset's frame count
must equal ``data.num_frames`` (which is linked into the model), so a mismatch is an error, not a surprise.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Protocol

import torch
from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler, RandomClipSampler

from video_transformers.data.video import FrameFn, VideoInfo

PRESETS = {"timesformer": "8x32", "vivit": "32x2", "uniformerv2": "u8"}


@dataclass(frozen=True)
class Sampling:
    mode: Literal["time", "stride", "uniform"]
    num_frames: int
    rate: int = 1  # stride mode: frames between samples

    def describe(self) -> str:
        return {"time": "time window", "stride": f"{self.num_frames}x{self.rate}", "uniform": f"u{self.num_frames}"}[
            self.mode
        ]


def parse_sampling(spec: str, *, num_frames: int, sampling_rate: int) -> Sampling:
    """``time`` | ``stride`` | ``uniform`` | ``<N>x<R>`` | ``u<N>`` | a preset name -> :class:`Sampling`."""
    name = PRESETS.get(spec, spec)
    if name == "time":
        return Sampling("time", num_frames, sampling_rate)
    if name == "stride":
        return Sampling("stride", num_frames, sampling_rate)
    if name == "uniform":
        return Sampling("uniform", num_frames)
    m = re.fullmatch(r"(\d+)x(\d+)|u(\d+)", name)
    if m is None:
        raise ValueError(
            f"data.sampling={spec!r}: expected time, stride, uniform, '<frames>x<stride>' (8x32), 'u<frames>' (u8)"
            f" or one of {sorted(PRESETS)}"
        )
    frames = int(m.group(1) or m.group(3))
    if frames != num_frames:
        raise ValueError(
            f"data.sampling={spec!r} takes {frames} frames but data.num_frames is {num_frames}"
            f" (num_frames is linked into the model: set both)"
        )
    if frames < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ValueError(f"data.sampling={spec!r}: frames and stride must be >= 1")
    return Sampling("uniform", frames) if m.group(3) else Sampling("stride", frames, int(m.group(2)))


# -- frame indices (pure functions) -------------------------------------------------------------------
def stride_indices(start: int, num_frames: int, rate: int, total: int) -> list[int]:
    """``start, start + rate, ...`` clamped to the last of ``total`` frames."""
    return [min(start + i * rate, total - 1) for i in range(num_frames)]


def stride_starts(total: int, num_frames: int, rate: int, num_clips: int) -> list[int]:
    """Evaluation starts: clip ``k`` of ``K`` begins at ``(total - span) * k / K`` (0 when the video is short)."""
    delta = max(total - ((num_frames - 1) * rate + 1), 0)
    return [int(delta * k / num_clips) for k in range(num_clips)]


def random_stride_start(total: int, num_frames: int, rate: int, rng: random.Random | None = None) -> int:
    delta = max(total - ((num_frames - 1) * rate + 1), 0)
    return (rng or random).randint(0, delta)


def segment_bounds(total: int, num_segments: int) -> list[tuple[int, int]]:
    """``[start, end]`` frame of each of ``num_segments`` equal segments (mmaction2 ``UniformSample``)."""
    size = (total - 1) / num_segments
    return [(round(size * i), round(size * (i + 1))) for i in range(num_segments)]


def uniform_train_indices(total: int, num_segments: int, rng: random.Random | None = None) -> list[int]:
    """One random frame from each segment."""
    r = rng or random
    return [r.randint(a, b) for a, b in segment_bounds(total, num_segments)]


def uniform_eval_indices(total: int, num_segments: int, clip: int = 0, num_clips: int = 1) -> list[int]:
    """Clip ``clip`` of ``num_clips``: the frame at offset ``(clip + 1) / (num_clips + 1)`` of every segment."""
    size = (total - 1) / num_segments
    frac = (clip + 1) / (num_clips + 1)
    return [min(total - 1, math.floor(size * (i + frac) + 0.5)) for i in range(num_segments)]


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


def time_slots(start: float, clip_duration: float, rate: float, num_frames: int) -> list[int]:
    """The ``num_frames`` slots of a time window: the window ``[start, start + clip_duration)`` holds
    ``round(clip_duration x rate)`` slots from the first at or after ``start`` (the frames PyTorchVideo's
    ``EncodedVideo.get_clip`` returns for a constant-rate video), of which :func:`uniform_temporal_subsample`'s
    evenly spaced ones are kept."""
    first = math.ceil(start * rate - 1e-6)
    n = max(1, round(clip_duration * rate))
    return [first + int(i) for i in torch.linspace(0, n - 1, num_frames).round().long().tolist()]


# -- samplers: (source, video) -> (C, T, H, W) ---------------------------------------------------------------
class FrameSource(Protocol):
    infos: list

    def frames(self, i: int, slots: list[int], frame_fn: FrameFn | None = None) -> torch.Tensor: ...


class ClipSampler:
    """Turns a :class:`Sampling` into the slots of a clip (see :mod:`video_transformers.data.video`), and clips of
    a :class:`~video_transformers.data.dataset.ClipSource`. Every mode picks frames by slot, so a clip is the same
    whichever backend decodes it and whether the video is cached."""

    def __init__(self, sampling: Sampling, clip_duration: float) -> None:
        self.sampling, self.clip_duration = sampling, clip_duration
        self._random_clip = RandomClipSampler(Fraction(clip_duration).limit_denominator(10_000))

    def train_slots(self, info: VideoInfo) -> list[int]:
        s, total = self.sampling, info.frames
        if s.mode == "time":
            duration = Fraction(info.duration).limit_denominator(10_000)
            start = float(self._random_clip(0.0, duration, None).clip_start_sec)
            return time_slots(start, self.clip_duration, info.fps, s.num_frames)
        if s.mode == "stride":
            start = random_stride_start(total, s.num_frames, s.rate)
            return stride_indices(start, s.num_frames, s.rate, total)
        return uniform_train_indices(total, s.num_frames)

    def eval_slots(self, info: VideoInfo, clip: int, num_clips: int) -> list[int]:
        """Slots of evaluation clip ``clip`` of ``num_clips``."""
        s, total = self.sampling, info.frames
        if s.mode == "time":
            start = clip_starts(info.duration, self.clip_duration, num_clips)[clip]
            return time_slots(start, self.clip_duration, info.fps, s.num_frames)
        if s.mode == "stride":
            start = stride_starts(total, s.num_frames, s.rate, num_clips)[clip]
            return stride_indices(start, s.num_frames, s.rate, total)
        return uniform_eval_indices(total, s.num_frames, clip, num_clips)

    def train_clip(self, source: FrameSource, i: int) -> torch.Tensor:
        return source.frames(i, self.train_slots(source.infos[i]))

    def eval_clip(
        self, source: FrameSource, i: int, clip: int, num_clips: int, frame_fn: FrameFn | None = None
    ) -> torch.Tensor:
        return source.frames(i, self.eval_slots(source.infos[i], clip, num_clips), frame_fn)

    def too_short(self, info: VideoInfo) -> str | None:
        """Why a video of ``info`` is too short for one clip (``None`` when it is long enough)."""
        s = self.sampling
        if s.mode == "time":
            fps = s.num_frames * s.rate / self.clip_duration  # data.fps
            if info.duration < self.clip_duration - 1.0 / fps:  # allow one frame of rounding
                return (
                    f"video is {info.duration:.2f}s long; a clip needs {self.clip_duration:.2f}s"
                    f" ({s.num_frames} frames x sampling rate {s.rate} at {fps:g} fps)"
                )
        elif info.frames < s.num_frames:
            return f"video has {info.frames} frames; {s.describe()} sampling needs >= {s.num_frames}"
        return None
