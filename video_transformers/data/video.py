"""Decoding through PyTorchVideo's ``EncodedVideo`` (PyAV), with errors that name the file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import torch
from pytorchvideo.data.encoded_video import EncodedVideo

from video_transformers.data.errors import VideoDataError

logging.getLogger("pytorchvideo").setLevel(logging.ERROR)  # it warns on every seek


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    fps: float
    width: int
    height: int


def probe(path: str | Path) -> VideoInfo:
    """Open ``path``, read its video stream's metadata and decode one frame; raise if it cannot."""
    path = Path(path)
    if not path.is_file():
        raise VideoDataError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDataError(f"{path}: no video stream (audio-only or not a video)")
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            frame = next(container.decode(stream), None)
            if frame is None:
                raise VideoDataError(f"{path}: decoded 0 frames")
            return VideoInfo(duration, fps, frame.width, frame.height)
    except VideoDataError:
        raise
    except (av.FFmpegError, OSError, StopIteration, ValueError) as e:
        raise VideoDataError(f"{path}: cannot decode ({type(e).__name__}: {e})") from e


def decode_clip(path: str | Path, start: float, end: float) -> torch.Tensor:
    """Frames with timestamps in ``[start, end)`` as ``(C, T, H, W)`` uint8 (seek, then decode)."""
    try:
        video = EncodedVideo.from_path(str(path), decode_audio=False, decoder="pyav")
        try:
            clip = video.get_clip(start, end)["video"]
        finally:
            video.close()
    except Exception as e:  # PyAV and PyTorchVideo raise many types; callers get one, with the file
        raise VideoDataError(f"{path}: cannot decode clip [{start:.2f}s, {end:.2f}s) ({type(e).__name__}: {e})") from e
    if clip is None or clip.shape[1] == 0:
        raise VideoDataError(f"{path}: decoded 0 frames in [{start:.2f}s, {end:.2f}s)")
    return clip.to(torch.uint8)
