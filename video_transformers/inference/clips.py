"""Model inputs cut from video files: multi-view clips (as ``vt test`` cuts them) and sliding windows.

* :func:`view_clips` decodes a video whole and cuts ``clips x crops`` views exactly as the evaluation data
  pipeline does (PyTorchVideo's evenly spaced clip starts, uniform temporal subsampling, short-side resize,
  left/centre/right crops, normalisation), so ``vt predict`` scores a test video as ``vt test`` did.
* :func:`iter_grid_frames` streams a long video frame by frame and keeps only the frames on the model's
  sampling grid (one every ``sampling_rate / fps`` seconds), already resized, centre-cropped and normalised:
  memory stays at one window whatever the video's length. :func:`iter_windows` groups them into clips.

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

import av
import torch

from video_transformers.data.dataset import clip_starts
from video_transformers.data.errors import VideoDataError
from video_transformers.data.transforms import EvalTransform, uniform_temporal_subsample
from video_transformers.data.video import VideoInfo, decode_clip, probe
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
            raise VideoDataError(f"{path}: unsupported format {what!r}: not a video this build can decode") from e
        raise


# -- multi-view clips (the evaluation pipeline's) --------------------------------------------------------
@dataclass(frozen=True)
class View:
    clip: int
    crop: int
    start: float  # seconds

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


def view_clips(
    path: Path, spec: ClipSpec, *, clips: int, crops: int, short_video: ShortVideo = "pad"
) -> tuple[torch.Tensor, list[View], VideoInfo]:
    """``(clips*crops, C, T, S, S)`` normalised views of ``path`` and their descriptions.

    Decodes the whole video once (like the data module's in-memory cache) and cuts each clip as
    :class:`~video_transformers.data.dataset.ClipSource` does: ``round(start * fps)`` onwards for
    ``round(clip_duration * fps)`` frames, then uniform temporal subsampling to ``num_frames``.
    """
    info = check_video(path)
    video = decode_clip(path, 0.0, info.duration + 1.0)  # c t h w uint8
    if min(video.shape[-2:]) < 1:
        raise VideoDataError(f"{path}: decoded empty frames of size {tuple(video.shape[-2:])}")
    fps = info.fps if info.fps > 0 else video.shape[1] / max(info.duration, 1e-6)
    per_clip = max(1, round(spec.clip_duration * fps))
    duration = video.shape[1] / fps
    short = (
        f"video has {video.shape[1]} frames ({duration:.2f}s) but a clip needs {per_clip} ({spec.clip_duration:.2f}s)"
    )
    video = pad_frames(video, per_clip, path, short_video, short)
    duration = max(duration, spec.clip_duration)
    transform = EvalTransform(crop_size=spec.crop_size, short_side=spec.short_side, mean=spec.mean, std=spec.std)
    out, views = [], []
    for c, start in enumerate(clip_starts(duration, spec.clip_duration, clips)):
        first = min(round(start * fps), video.shape[1] - 1)
        clip = uniform_temporal_subsample(video[:, first : first + per_clip], spec.num_frames)
        for k in range(crops):
            out.append(transform(clip, k, crops))
            views.append(View(c, k, start))
    return torch.stack(out), views, info


# -- streaming frames and sliding windows -------------------------------------------------------------
def _frame_transform(spec: ClipSpec) -> EvalTransform:
    return EvalTransform(crop_size=spec.crop_size, short_side=spec.short_side, mean=spec.mean, std=spec.std)


def iter_grid_frames(path: Path, spec: ClipSpec) -> Iterator[torch.Tensor]:
    """The frames of ``path`` at times ``j * sampling_rate / fps`` (``j = 0, 1, ...``), each ``(C, S, S)``,
    resized, centre-cropped and normalised; decoded in one pass, frame by frame."""
    transform = _frame_transform(spec)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDataError(f"{path}: no video stream (audio-only or not a video)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            if fps <= 0:
                raise VideoDataError(f"{path}: stream reports no frame rate")
            j = 0
            for i, frame in enumerate(container.decode(stream)):
                # grid frame j sits at native index round(j * step * fps); a frame may serve several j
                x = None
                while round(j * spec.frame_step * fps) == i:
                    if x is None:
                        rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))  # h w c
                        x = transform(rgb.permute(2, 0, 1)[:, None])[:, 0]  # c s s
                    yield x
                    j += 1
    except VideoDataError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
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
            yield _window(emitted, first, spec), torch.stack(list(buf), dim=1)
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
        yield _window(0, 0, spec), clip


def _window(index: int, first: int, spec: ClipSpec) -> Window:
    start = first * spec.frame_step
    return Window(index, first, start, start + spec.clip_duration)


def num_windows(num_grid_frames: int, num_frames: int, stride: int) -> int:
    return max(1, (num_grid_frames - num_frames) // stride + 1)


def expected_grid_frames(info: VideoInfo, spec: ClipSpec) -> int:
    """Grid frames a video of ``info`` gives (for progress bars)."""
    return max(1, math.floor(info.duration / spec.frame_step + 1e-6))
