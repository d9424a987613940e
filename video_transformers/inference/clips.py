"""Model inputs cut from video files: multi-view clips (as ``vt test`` cuts them) and sliding windows.

* :func:`view_clips` cuts ``clips x crops`` views through the evaluation data pipeline itself: a one-video
  :class:`~video_transformers.data.dataset.ClipSource`, :class:`~video_transformers.data.dataset.MultiViewDataset`
  with the checkpoint's sampler (time windows, ``8x32`` strides, ``u8`` segments) and transform. Only the frames
  the clips need are decoded, resized as they arrive, so ``vt predict`` scores a test video as ``vt test`` did
  and its memory is bounded by a clip, not by the video.
* :func:`iter_grid_frames` streams a long video frame by frame and keeps only the frames on the model's
  sampling grid (one every ``sampling_rate / fps`` seconds, by timestamp), already resized, centre-cropped and
  normalised: memory stays at one window whatever the video's length. :func:`iter_windows` groups them into clips.

Videos shorter than one clip are padded by repeating their last frame (with a warning) or refused.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from video_transformers.data.annotations import VideoRecord
from video_transformers.data.dataset import ClipSource, MultiViewDataset
from video_transformers.data.errors import VideoDataError
from video_transformers.data.video import VideoInfo, iter_pyav, probe, to_tensor
from video_transformers.inference.loading import ClipSpec

log = logging.getLogger(__name__)

ShortVideo = Literal["pad", "error"]
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif", ".ts"}


# -- finding files ----------------------------------------------------------------------------------
def expand_paths(patterns: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named by ``patterns`` (files, folders searched recursively for video files, or globs).

    Returns ``(files, problems)``; a problem is ``(pattern, message)`` for a pattern that matched nothing.
    Folders contribute only files with a video extension; files named explicitly (or by a glob) are all
    tried, so an unsupported format gets its own message when decoding fails.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                exts = ", ".join(sorted(VIDEO_EXTENSIONS))
                problems.append((pattern, f"{path}: folder holds no video files ({exts})"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif any(c in pattern for c in "*?["):
            anchor = Path(pattern).anchor or "."
            rel = str(Path(pattern).expanduser())[len(anchor) :] if Path(pattern).is_absolute() else pattern
            found = sorted(p for p in Path(anchor).glob(rel) if p.is_file())
            if not found:
                problems.append((pattern, f"{pattern}: no file matches this pattern"))
            files.extend(found)
        else:
            problems.append((pattern, f"{path}: no such file or folder"))
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, problems


def check_video(path: Path) -> VideoInfo:
    """:func:`probe`, with a message that says when the file's format is not a video format."""
    try:
        return probe(path)
    except VideoDataError as e:
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            what = path.suffix or "(no extension)"
            raise VideoDataError(
                f"{path}: unsupported format {what!r}: not a video this build can decode", kind="unsupported"
            ) from e
        raise


# -- multi-view clips (the evaluation pipeline's) --------------------------------------------------------
@dataclass(frozen=True)
class View:
    clip: int
    crop: int
    start: float  # seconds: the clip's first frame
    end: float  # seconds: its last frame

    @property
    def name(self) -> str:
        return f"clip{self.clip}_crop{self.crop}"


def pad_frames(video: torch.Tensor, needed: int, path: Path, short_video: ShortVideo, what: str) -> torch.Tensor:
    """Repeat the last frame of ``(C, T, H, W)`` up to ``needed`` frames (``pad``) or raise (``error``)."""
    have = video.shape[1]
    if have >= needed:
        return video
    if short_video == "error":
        raise VideoDataError(f"{path}: {what}; rerun with --short-video pad to repeat its last frame")
    log.warning("%s: %s; padding with %d copies of the last frame", path, what, needed - have)
    return torch.cat([video, video[:, -1:].expand(-1, needed - have, -1, -1)], dim=1)


def view_dataset(
    path: Path, spec: ClipSpec, *, clips: int, crops: int, short_video: ShortVideo = "pad"
) -> MultiViewDataset:
    """The one-video evaluation dataset ``vt test`` would build for ``path`` (label ``-1``): items are views
    ``{"video", "label", "video_index", "view_index"}``. A video shorter than one clip is refused
    (``short_video="error"``) or its clips repeat the last frame, as the sampler clamps them (``pad``)."""
    info = check_video(path)
    sampler = spec.sampler()
    short = sampler.too_short(info)
    if short:
        if short_video == "error":
            raise VideoDataError(f"{path}: {short}; rerun with --short-video pad to repeat its last frame")
        log.warning("%s: %s; its clips repeat the last frame", path, short)
    source = ClipSource([VideoRecord(path, -1, str(path))], [info], spec.clip_duration)
    return MultiViewDataset(
        source,
        num_frames=spec.num_frames,
        num_clips=clips,
        num_crops=crops,
        transform=spec.eval_transform(),
        sampling=sampler.sampling,
    )


def describe_views(dataset: MultiViewDataset, v: int = 0) -> list[View]:
    """Which frames each view of video ``v`` holds (times of its first and last frame)."""
    fps = dataset.source.infos[v].fps
    views = []
    for c in range(dataset.num_clips):
        slots = dataset.clip_slots(v, c)
        views += [View(c, k, slots[0] / fps, slots[-1] / fps) for k in range(dataset.num_crops)]
    return views


def view_clips(
    path: Path, spec: ClipSpec, *, clips: int, crops: int, short_video: ShortVideo = "pad"
) -> tuple[torch.Tensor, list[View], VideoInfo]:
    """``(clips*crops, C, T, S, S)`` normalised views of ``path``, their descriptions and the video's info:
    the items of :func:`view_dataset`."""
    dataset = view_dataset(path, spec, clips=clips, crops=crops, short_video=short_video)
    x = torch.stack([dataset[i]["video"] for i in range(len(dataset))])
    return x, describe_views(dataset), dataset.source.infos[0]


# -- streaming frames and sliding windows -------------------------------------------------------------
def grid_slots(info: VideoInfo, spec: ClipSpec) -> Iterator[int]:
    """Slot of grid frame ``j = 0, 1, ...``: the one nearest to ``j * sampling_rate / fps`` seconds."""
    j = 0
    while (slot := info.slot_at(j * spec.frame_step)) < info.frames:
        yield slot
        j += 1


def iter_grid_frames(path: Path, spec: ClipSpec) -> Iterator[torch.Tensor]:
    """The frames of ``path`` shown at times ``j * sampling_rate / fps`` (``j = 0, 1, ...``), each ``(C, S, S)``,
    resized, centre-cropped and normalised; decoded in one pass, frame by frame."""
    transform = spec.eval_transform()
    info = check_video(path)
    last, x = None, None
    try:
        for _, frame in iter_pyav(path, grid_slots(info, spec), info):
            if frame is not last:  # a frame may serve several grid points (a video slower than the grid)
                last, x = frame, transform(to_tensor(frame, info)[:, None])[:, 0]  # c s s
            yield x
    except VideoDataError:
        raise
    except Exception as e:  # PyAV raises many types; callers get one, with the file
        raise VideoDataError(f"{path}: cannot decode ({type(e).__name__}: {e})") from e


@dataclass(frozen=True)
class Window:
    index: int
    first: int  # first grid frame
    start: float  # seconds
    end: float


def stride_frames(spec: ClipSpec, stride_s: float, multiple: int = 1) -> int:
    """A stride in seconds as a whole number of grid frames, rounded to a multiple of ``multiple``."""
    if stride_s <= 0:
        raise ValueError(f"--stride must be > 0 seconds; got {stride_s}")
    frames = max(1, round(stride_s / spec.frame_step))
    return max(multiple, multiple * round(frames / multiple))


def iter_windows(
    frames: Iterator[torch.Tensor], spec: ClipSpec, stride: int, path: Path, short_video: ShortVideo = "pad"
) -> Iterator[tuple[Window, torch.Tensor]]:
    """Sliding windows of ``num_frames`` grid frames every ``stride`` grid frames: ``(Window, (C, T, S, S))``.

    A video too short for one window gives one window padded with its last frame (or raises).
    """
    n = spec.num_frames
    buf: deque[torch.Tensor] = deque(maxlen=n)
    seen, emitted = 0, 0
    for x in frames:
        buf.append(x)
        seen += 1
        first = seen - n
        if first >= 0 and first % stride == 0:
            yield make_window(emitted, first, spec), torch.stack(list(buf), dim=1)
            emitted += 1
    if emitted == 0:
        if seen == 0:
            raise VideoDataError(f"{path}: decoded 0 frames")
        clip = pad_frames(
            torch.stack(list(buf), dim=1),
            n,
            path,
            short_video,
            f"video gives {seen} sampled frames but a window needs {n} ({spec.clip_duration:.2f}s)",
        )
        yield make_window(0, 0, spec), clip


def make_window(index: int, first: int, spec: ClipSpec) -> Window:
    start = first * spec.frame_step
    return Window(index, first, start, start + spec.clip_duration)


def num_windows(num_grid_frames: int, num_frames: int, stride: int) -> int:
    return max(1, (num_grid_frames - num_frames) // stride + 1)


def expected_grid_frames(info: VideoInfo, spec: ClipSpec) -> int:
    """Grid frames a video of ``info`` gives (for progress bars)."""
    return max(1, math.floor(info.duration / spec.frame_step + 1e-6))
