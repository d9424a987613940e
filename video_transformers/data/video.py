"""Video decoding, with errors that name the file.

``decode_clip`` reads a time window through PyTorchVideo's ``EncodedVideo`` (PyAV); ``decode_frames`` reads only
the frames at given indices: it seeks to the keyframe before the first one, decodes forward and seeks again
across long gaps (TSN-style segment sampling spreads frames over the whole video). ``decoder`` selects PyAV
(default), the optional decord / torchcodec backends, or ``torchcodec_cuda``: torchcodec's NVDEC decoder, the
frames decoded on the GPU the rank trains on (``cuda:$LOCAL_RANK``); where CUDA or NVDEC is missing,
:func:`resolve_decoder` says so once and torchcodec decodes on the CPU. Both functions accept a path or a
file-like object holding the encoded video (a shard's bytes in memory; its ``str()`` names it in errors).
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import torch
from pytorchvideo.data.encoded_video import EncodedVideo
from pytorchvideo.data.encoded_video_pyav import EncodedVideoPyAV

from video_transformers.data.errors import VideoDataError
from video_transformers.safety import limits

logging.getLogger("pytorchvideo").setLevel(logging.ERROR)  # it warns on every seek


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    fps: float
    width: int
    height: int
    frames: int = 0  # frame count from the container, else duration x fps


def probe(path: str | Path) -> VideoInfo:
    """Open ``path``, read its video stream's metadata and decode one frame; raise if it cannot."""
    path = Path(path)
    if not path.is_file():
        raise VideoDataError(f"{path}: video file not found", kind="missing")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                kind = "audio_only" if container.streams.audio else "unreadable"
                raise VideoDataError(f"{path}: no video stream (audio-only or not a video)", kind=kind)
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            try:
                frame = next(container.decode(stream), None)
            except (EOFError, av.error.EOFError):  # a header and no packets
                frame = None
            if frame is None:
                raise VideoDataError(f"{path}: decoded 0 frames", kind="zero_frames")
            check_frame_size(path, frame.width, frame.height)
            frames = int(stream.frames or 0) or max(1, round(duration * fps))
            return VideoInfo(duration, fps, frame.width, frame.height, frames)
    except VideoDataError:
        raise
    except av.error.EOFError as e:  # FFmpeg found the end of the file before any frame (a header at most)
        raise VideoDataError(
            f"{path}: decoded 0 frames (the file ends before its first frame)", kind="zero_frames"
        ) from e
    except (av.FFmpegError, OSError, StopIteration, ValueError) as e:
        raise VideoDataError(f"{path}: cannot decode ({type(e).__name__}: {e})", kind="unreadable") from e


def check_frame_size(path: str | Path, width: int, height: int) -> None:
    """Refuse frames larger than ``LIMITS.max_frame_pixels`` before converting them (a hostile header can
    declare any size)."""
    if width * height > limits.LIMITS.max_frame_pixels:
        raise VideoDataError(
            f"{path}: frames are {width}x{height} px, over the limit of {limits.LIMITS.max_frame_pixels:,} pixels"
            " (video_transformers.safety.limits.LIMITS.max_frame_pixels)"
        )


def _input(path: str | Path | BinaryIO) -> str | BinaryIO:
    """What a decoder opens: a file name, or the file-like object itself."""
    return path if hasattr(path, "read") else str(path)


def decode_clip(path: str | Path | BinaryIO, start: float, end: float) -> torch.Tensor:
    """Frames with timestamps in ``[start, end)`` as ``(C, T, H, W)`` uint8 (seek, then decode)."""
    try:
        if hasattr(path, "read"):
            video = EncodedVideoPyAV(path, str(path), decode_audio=False)
        else:
            video = EncodedVideo.from_path(str(path), decode_audio=False, decoder="pyav")
        try:
            clip = video.get_clip(start, end)["video"]
        finally:
            video.close()
    except Exception as e:  # PyAV and PyTorchVideo raise many types; callers get one, with the file
        raise VideoDataError(f"{path}: cannot decode clip [{start:.2f}s, {end:.2f}s) ({type(e).__name__}: {e})") from e
    if clip is None or clip.shape[1] == 0:
        raise VideoDataError(f"{path}: decoded 0 frames in [{start:.2f}s, {end:.2f}s)", kind="zero_frames")
    return clip.to(torch.uint8)


DECODERS = ("pyav", "decord", "torchcodec", "torchcodec_cuda")


def check_decoder(decoder: str) -> None:
    """Raise a clear error when an optional decoding backend is selected but not installed."""
    if decoder not in DECODERS:
        raise ValueError(f"data.decoder must be one of {DECODERS}; got {decoder!r}")
    if decoder != "pyav":
        package = decoder.removesuffix("_cuda")
        try:
            importlib.import_module(package)
        except ImportError as e:
            raise VideoDataError(
                f"data.decoder={decoder!r} needs the {package} package, which is not installed"
                f" (pip install {package}); the default decoder is 'pyav'",
                kind="annotation",
            ) from e
    if decoder.startswith("torchcodec") and not _torchcodec_has_ffmpeg():
        raise VideoDataError(
            "data.decoder='torchcodec': torchcodec is installed but cannot load FFmpeg's shared libraries"
            " (it needs FFmpeg 4-7 on the system, e.g. apt-get install ffmpeg); the default decoder is 'pyav'",
            kind="annotation",
        )


def cuda_decode_device() -> str:
    """The GPU this process trains on: ``cuda:$LOCAL_RANK`` (set by Lightning's DDP and torchrun), else the
    current device."""
    rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(rank) if rank is not None else torch.cuda.current_device()}"


def resolve_decoder(decoder: str) -> str:
    """``decoder``, except that ``torchcodec_cuda`` becomes ``torchcodec`` (CPU), with one warning, when CUDA is
    unavailable or torchcodec cannot decode on it (no NVDEC, a CPU-only build): checked by decoding a 2-frame
    H.264 clip on the device."""
    if decoder != "torchcodec_cuda":
        return decoder
    if not torch.cuda.is_available():
        reason = "CUDA is not available"
    else:
        try:
            _decode_torchcodec(_probe_clip(), [0, 1], device=cuda_decode_device())
            return decoder
        except Exception as e:  # torchcodec raises RuntimeError / ValueError by version and build
            reason = f"torchcodec cannot decode on {cuda_decode_device()} ({type(e).__name__}: {e})"
    warnings.warn(f"data.decoder='torchcodec_cuda': {reason}; decoding on the CPU with torchcodec", stacklevel=2)
    return "torchcodec"


def _probe_clip() -> io.BytesIO:
    """A 2-frame 64 x 64 H.264 clip in memory (what NVDEC must decode for ``torchcodec_cuda`` to be used)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for _ in range(2):
            c.mux(s.encode(av.VideoFrame(64, 64, "yuv420p")))
        c.mux(s.encode())
    buffer.seek(0)
    return buffer


def _torchcodec_has_ffmpeg() -> bool:
    """torchcodec imports without FFmpeg and fails only when a video is opened: ask it up front."""
    try:
        from torchcodec._core.ops import _FFMPEG_AVAILABLE
    except ImportError:  # another torchcodec layout: let decoding report the problem per file
        return True
    return bool(_FFMPEG_AVAILABLE)


def decode_frames(
    path: str | Path | BinaryIO, indices: Sequence[int], *, decoder: str = "pyav", seek_gap: int = 64
) -> torch.Tensor:
    """Frames at 0-based ``indices`` (any order, repeats allowed) as ``(C, T, H, W)`` uint8, ``T = len(indices)``.

    Indices past the last frame give the last frame (clips are clamped to the video, as in SlowFast).
    """
    if len(indices) == 0 or min(indices) < 0:
        raise ValueError(f"{path}: frame indices must be non-empty and >= 0; got {list(indices)}")
    try:
        if decoder == "decord":
            frames = _decode_decord(path, indices)
        elif decoder == "torchcodec":
            frames = _decode_torchcodec(path, indices)
        elif decoder == "torchcodec_cuda":
            frames = _decode_torchcodec(path, indices, device=cuda_decode_device())
        else:
            frames = _decode_pyav(path, indices, seek_gap)
    except VideoDataError:
        raise
    except Exception as e:  # backends raise many types; callers get one, with the file
        raise VideoDataError(f"{path}: cannot decode frames {_span(indices)} ({type(e).__name__}: {e})") from e
    return frames


def _span(indices: Sequence[int]) -> str:
    return f"{min(indices)}..{max(indices)}" if len(indices) > 1 else str(indices[0])


def _decode_pyav(path: str | Path, indices: Sequence[int], seek_gap: int) -> torch.Tensor:
    wanted = sorted(set(int(i) for i in indices))
    got: dict[int, torch.Tensor] = {}
    tail = None  # the last frame decoded: indices past the end take it
    with av.open(_input(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        if fps <= 0:
            raise VideoDataError(f"{path}: unknown frame rate; cannot index frames")
        tb, t0 = stream.time_base, stream.start_time or 0
        k = 0
        while k < len(wanted):
            target = wanted[k]
            container.seek(t0 + int(target / fps / tb), stream=stream, backward=True, any_frame=False)
            exhausted, count = True, 0
            for frame in container.decode(stream):
                idx = round(float((frame.pts - t0) * tb) * fps) if frame.pts is not None else count
                count, tail = idx + 1, frame
                if idx < target:
                    continue
                check_frame_size(path, frame.width, frame.height)
                image = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                while k < len(wanted) and wanted[k] <= idx:  # a missing index takes the next frame
                    got[wanted[k]] = image
                    k += 1
                if k == len(wanted) or wanted[k] - idx > seek_gap:  # done, or far enough to seek again
                    exhausted = k == len(wanted)
                    break
            if exhausted:
                break
        if tail is None and k < len(wanted):  # seeking past the end decodes nothing: read the end from the start
            container.seek(t0, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                tail = frame
    if tail is None:
        raise VideoDataError(f"{path}: decoded 0 frames at indices {_span(indices)}", kind="zero_frames")
    last = torch.from_numpy(tail.to_ndarray(format="rgb24"))
    frames = torch.stack([got.get(int(i), last) for i in indices])  # T H W C
    return frames.permute(3, 0, 1, 2).contiguous()


def _decode_decord(path: str | Path, indices: Sequence[int]) -> torch.Tensor:
    """decord 0.6 reads the same frames as PyAV, except for some frame sizes where its batch copy fails
    (seen: 48x40 px, "from_size == to_size"); that error reaches the caller with the file's name."""
    import decord

    reader = decord.VideoReader(_input(path), num_threads=1)
    n = len(reader)
    if n == 0:
        raise VideoDataError(f"{path}: decoded 0 frames", kind="zero_frames")
    batch = reader.get_batch([min(int(i), n - 1) for i in indices]).asnumpy()  # T H W C
    return torch.from_numpy(batch).permute(3, 0, 1, 2).contiguous()


def _decode_torchcodec(path: str | Path | BinaryIO, indices: Sequence[int], device: str = "cpu") -> torch.Tensor:
    """``device`` ``cuda:N`` decodes with NVDEC: the frames stay on that GPU."""
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(_input(path), device=device)
    n = dec.metadata.num_frames
    if not n:
        raise VideoDataError(f"{path}: decoded 0 frames", kind="zero_frames")
    batch = dec.get_frames_at(indices=[min(int(i), n - 1) for i in indices]).data  # T C H W
    return batch.permute(1, 0, 2, 3).contiguous()
