"""Video decoding by presentation time, with errors that name the file.

Every reader picks frames the same way, whatever the backend and whether the video is cached:

* A video is a sequence of *slots* at its frame rate ``r`` (the stream's ``r_frame_rate``, the rate at which
  every timestamp is representable; the mean rate when that one is implausible). Slot ``s`` is at
  ``start + s / r`` seconds, ``start`` the first frame's timestamp.
* A frame's slot is ``round((pts x time_base - start) x r)``; slot ``s`` shows the last frame whose slot is
  ``<= s``. This is what FFmpeg's ``fps`` filter does when it turns a variable-rate stream into a constant-rate
  one, so a constant-rate video's slot ``s`` is its frame ``s``, and a variable-rate video (screen recordings)
  gives the frames its constant-rate re-encode would: time comes from timestamps (as in PyTorchVideo's
  ``EncodedVideo`` and torchcodec), never from frame counts and a nominal rate.
* Frames are turned by the stream's display matrix (phones store portrait video landscape with a rotation):
  PyAV frames here, decord and torchcodec do it themselves.

:func:`probe` reads a video's header, its first frame and its last frames (a file cut short is an error
naming what is missing). :func:`read_slots` decodes only the frames at the slots asked for: PyAV seeks to the
keyframe before each group of wanted frames and decodes forward, and a per-frame function (the evaluation
resize) runs as each frame arrives, so memory is bounded by the clip, not the video. ``decoder`` selects PyAV
(default) or the optional decord / torchcodec backends (:data:`BACKENDS`), or ``torchcodec_cuda``: torchcodec's
NVDEC decoder, the frames decoded on the GPU the rank trains on (``cuda:$LOCAL_RANK``); where CUDA or NVDEC is
missing, :func:`resolve_decoder` says so once and torchcodec decodes on the CPU. The readers accept a path or a
file-like object holding the encoded video (a shard's bytes in memory; its ``str()`` names it in errors).
"""

from __future__ import annotations

import errno
import importlib
import io
import logging
import math
import os
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch

from video_transformers.data.errors import VideoDataError
from video_transformers.safety import limits

log = logging.getLogger(__name__)

FrameFn = Callable[[torch.Tensor], torch.Tensor]  # (C, H, W) uint8 -> (C, h, w), applied as frames arrive


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds the frames span: frames / fps
    fps: float  # slot rate (see the module docstring)
    width: int  # as displayed (after rotation)
    height: int
    frames: int = 0  # slots; the frame count of a constant-rate video
    rotation: int = 0  # degrees counter-clockwise the display matrix turns decoded frames
    start: float = 0.0  # timestamp of the first frame, seconds

    def slot_at(self, seconds: float) -> int:
        """The slot nearest to ``seconds`` after the first frame."""
        return math.floor(seconds * self.fps + 0.5)


# -- checks ------------------------------------------------------------------------------------------------
def check_file(path: Path) -> None:
    """Raise, naming the reason, when ``path`` is not a readable regular file (missing, a dangling symlink,
    a symlink loop, a folder)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise VideoDataError(f"{path}: dangling symlink to {path.readlink()}", kind="broken_link") from None
        raise VideoDataError(f"{path}: video file not found", kind="missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise VideoDataError(f"{path}: symlink loop", kind="broken_link") from None
        raise VideoDataError(f"{path}: cannot read ({e.strerror or e})", kind="unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise VideoDataError(f"{path}: not a regular file", kind="unsupported")


def check_frame_size(path: str | Path, width: int, height: int) -> None:
    """Refuse frames larger than ``LIMITS.max_frame_pixels`` before converting them (a hostile header can
    declare any size)."""
    if width * height > limits.LIMITS.max_frame_pixels:
        raise VideoDataError(
            f"{path}: frames are {width}x{height} px, over the limit of {limits.LIMITS.max_frame_pixels:,} pixels"
            " (video_transformers.safety.limits.LIMITS.max_frame_pixels)"
        )


def _slot_rate(stream: av.video.stream.VideoStream) -> float:
    """``r_frame_rate`` (PyAV's ``guessed_rate``) unless it is implausible next to the mean rate (containers
    with millisecond time bases report 1000), then the mean rate."""
    mean, guess = float(stream.average_rate or 0), float(stream.guessed_rate or 0)
    if guess > 0 and (mean <= 0 or 0.99 * mean <= guess <= 4 * mean):
        return guess
    return mean or guess


def _seconds(frame: av.VideoFrame) -> float | None:
    return None if frame.pts is None else float(frame.pts * frame.time_base)


# -- probe -------------------------------------------------------------------------------------------------
def probe(path: str | Path) -> VideoInfo:
    """Open ``path``, read its video stream's metadata, decode its first and last frames; raise if it cannot,
    or if the frames end well before the stream says (a truncated download)."""
    path = Path(path)
    check_file(path)
    try:
        with av.open(_input(path)) as container:
            if not container.streams.video:
                kind = "audio_only" if container.streams.audio else "unreadable"
                raise VideoDataError(f"{path}: no video stream (audio-only or not a video)", kind=kind)
            stream = container.streams.video[0]
            fmt = container.format.name
            if fmt == "image2" or fmt.endswith("_pipe"):
                raise VideoDataError(
                    f"{path}: not a video: a single {stream.codec_context.name} image (format {fmt})",
                    kind="unsupported",
                )
            rate = _slot_rate(stream)
            try:
                first = next(container.decode(stream), None)
            except (EOFError, av.error.EOFError):  # a header and no packets
                first = None
            if first is None:
                raise VideoDataError(f"{path}: decoded 0 frames", kind="zero_frames")
            if rate <= 0:
                raise VideoDataError(f"{path}: stream reports no frame rate", kind="unreadable")
            check_frame_size(path, first.width, first.height)
            start = _seconds(first) or 0.0
            rotation = int(getattr(first, "rotation", 0) or 0) % 360
            declared = _declared_duration(container, stream)
            end = _last_frame_time(container, stream, start + declared)
            frames = math.floor((end - start) * rate + 0.5) + 1
            duration = frames / rate
            tolerance = max(0.5, 0.05 * declared) if stream.duration else max(1.0, 0.1 * declared)
            if declared and duration < declared - tolerance:
                raise VideoDataError(
                    f"{path}: truncated: stream says {declared:.1f} s, frames end at {duration:.1f} s",
                    kind="truncated",
                )
            w, h = (first.height, first.width) if rotation % 180 else (first.width, first.height)
            return VideoInfo(duration, rate, w, h, frames, rotation, start)
    except VideoDataError:
        raise
    except av.error.EOFError as e:  # FFmpeg found the end of the file before any frame (a header at most)
        raise VideoDataError(
            f"{path}: decoded 0 frames (the file ends before its first frame)", kind="zero_frames"
        ) from e
    except (av.FFmpegError, OSError, StopIteration, ValueError) as e:
        raise VideoDataError(f"{path}: cannot decode ({_reason(e)})", kind="unreadable") from e


def _reason(e: Exception) -> str:
    """``Type: message``; FFmpeg's message without the file name it repeats."""
    return (
        f"{type(e).__name__}: {e.strerror}"
        if isinstance(e, av.FFmpegError) and e.strerror
        else f"{type(e).__name__}: {e}"
    )


def _declared_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _last_frame_time(container: av.container.InputContainer, stream: av.video.stream.VideoStream, end: float) -> float:
    """Timestamp of the last frame that decodes: seek near the declared end and decode to the end; when that
    finds nothing (the index points past a truncated file), walk the packets to where the data stops and
    decode the last group of pictures there."""
    tb = stream.time_base
    last = _decode_tail(container, stream, max(0.0, end - 1.0) / tb if end > 0 else None)
    if last is not None:
        return last
    keyframes, top = [], None
    container.seek(stream.start_time or 0, stream=stream, backward=True)
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                top = packet.pts if top is None else max(top, packet.pts)
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
    except av.FFmpegError:
        pass  # the data stops here
    for key in reversed((keyframes or [stream.start_time or 0])[-3:]):  # damage within the last GOPs
        last = _decode_tail(container, stream, key)
        if last is not None:
            return last
    return float(top * tb) if top is not None else 0.0


def _decode_tail(container: av.container.InputContainer, stream: av.video.stream.VideoStream, at: float | None):
    """Largest timestamp decoded from the keyframe before ``at`` (stream time base) to the end, or ``None``."""
    last = None
    try:
        container.seek(int(at if at is not None else stream.start_time or 0), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = _seconds(frame)
            if t is not None:
                last = t if last is None else max(last, t)
    except av.FFmpegError:
        pass  # a damaged tail: the frames before it count
    return last


# -- decoding frames at slots --------------------------------------------------------------------------------
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
            info = VideoInfo(duration=0.2, fps=10.0, width=64, height=64, frames=2)
            list(_read_torchcodec(_probe_clip(), [0, 1], info, 64, device=cuda_decode_device()))
            return decoder
        except Exception as e:  # torchcodec raises RuntimeError / ValueError by version and build
            reason = f"torchcodec cannot decode on {cuda_decode_device()} ({type(e).__name__}: {e})"
    warnings.warn(f"data.decoder='torchcodec_cuda': {reason}; decoding on the CPU with torchcodec", stacklevel=2)
    return "torchcodec"


class VideoBytes(io.BytesIO):
    """An encoded video in memory that prints as its name (errors name the video)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


def _probe_clip() -> VideoBytes:
    """A 2-frame 64 x 64 H.264 clip in memory (what NVDEC must decode for ``torchcodec_cuda`` to be used)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for _ in range(2):
            c.mux(s.encode(av.VideoFrame(64, 64, "yuv420p")))
        c.mux(s.encode())
    return VideoBytes(buffer.getvalue(), "<2-frame probe clip>")


def _input(path: str | Path | BinaryIO) -> str | BinaryIO:
    """What a decoder opens: a file name, or the file-like object itself, rewound."""
    if hasattr(path, "read"):
        path.seek(0)
        return path
    return str(path)


def _torchcodec_has_ffmpeg() -> bool:
    """torchcodec imports without FFmpeg and fails only when a video is opened: ask it up front."""
    try:
        from torchcodec._core.ops import _FFMPEG_AVAILABLE
    except ImportError:  # another torchcodec layout: let decoding report the problem per file
        return True
    return bool(_FFMPEG_AVAILABLE)


def read_slots(
    path: str | Path,
    slots: Sequence[int],
    info: VideoInfo,
    *,
    decoder: str = "pyav",
    frame_fn: FrameFn | None = None,
    seek_gap: int = 64,
) -> torch.Tensor:
    """The frames shown at ``slots`` (any order, repeats allowed; clamped to the video) as ``(C, T, H, W)``:
    uint8, or what ``frame_fn`` makes of each frame."""
    if len(slots) == 0:
        raise ValueError(f"{path}: no frames asked for")
    clamped = [min(max(int(s), 0), max(info.frames, 1) - 1) for s in slots]
    wanted = sorted(set(clamped))
    try:
        got = BACKENDS[decoder](path if hasattr(path, "read") else Path(path), wanted, info, seek_gap)
        out: dict[int, torch.Tensor] = {}
        done: dict[int, torch.Tensor] = {}  # one conversion per decoded frame shown at several slots
        for slot, key, image in got:
            if key not in done:
                done[key] = image if frame_fn is None else frame_fn(image)
            out[slot] = done[key]
    except VideoDataError:
        raise
    except Exception as e:  # backends raise many types; callers get one, with the file
        raise VideoDataError(f"{path}: cannot decode frames {_span(clamped)} ({_reason(e)})") from e
    missing = [s for s in wanted if s not in out]
    if missing:
        raise VideoDataError(f"{path}: decoded 0 frames at slots {_span(missing)}", kind="zero_frames")
    return torch.stack([out[s] for s in clamped], dim=1)


def decode_frames(
    path: str | Path,
    indices: Sequence[int],
    *,
    decoder: str = "pyav",
    info: VideoInfo | None = None,
    seek_gap: int = 64,
) -> torch.Tensor:
    """Frames at 0-based slot ``indices`` as ``(C, T, H, W)`` uint8 (past the end: the last frame, as in
    SlowFast); :func:`read_slots` after :func:`probe` when ``info`` is not given."""
    if len(indices) == 0 or min(indices) < 0:
        raise ValueError(f"{path}: frame indices must be non-empty and >= 0; got {list(indices)}")
    return read_slots(path, indices, info or probe(path), decoder=decoder, seek_gap=seek_gap)


def decode_clip(
    path: str | Path, start: float, end: float, *, decoder: str = "pyav", info: VideoInfo | None = None
) -> torch.Tensor:
    """Every frame with a timestamp in ``[start, end)`` seconds after the first, ``(C, T, H, W)`` uint8."""
    info = info or probe(path)
    first = math.ceil(start * info.fps - 1e-6)
    stop = min(math.ceil(end * info.fps - 1e-6), info.frames)
    if stop <= first:
        raise VideoDataError(f"{path}: decoded 0 frames in [{start:.2f}s, {end:.2f}s)", kind="zero_frames")
    return read_slots(path, range(first, stop), info, decoder=decoder)


def _span(indices: Sequence[int]) -> str:
    return f"{min(indices)}..{max(indices)}" if len(indices) > 1 else str(indices[0])


def _rotate(image: torch.Tensor, rotation: int) -> torch.Tensor:
    """``(C, H, W)`` turned ``rotation`` degrees counter-clockwise (FFmpeg's display-matrix convention)."""
    k = (rotation // 90) % 4
    return image if k == 0 else torch.rot90(image, k, dims=(1, 2)).contiguous()


# Each backend: (path, sorted unique slots, info, seek_gap) -> iterable of (slot, key, (C, H, W) uint8); ``key``
# names the decoded frame (equal keys: the same picture).
Backend = Callable[[Path, list[int], VideoInfo, int], Iterable[tuple[int, int, torch.Tensor]]]


def _read_pyav(path: Path, slots: list[int], info: VideoInfo, seek_gap: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    last, key, image = None, -1, None
    for slot, frame in iter_pyav(path, slots, info, seek_gap):
        if frame is not last:
            check_frame_size(path, frame.width, frame.height)
            image = to_tensor(frame, info)
            last, key = frame, key + 1
        yield slot, key, image


def to_tensor(frame: av.VideoFrame, info: VideoInfo) -> torch.Tensor:
    """A decoded PyAV frame as displayed: ``(C, H, W)`` uint8 RGB, turned by the display matrix."""
    return _rotate(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1), info.rotation)


def iter_pyav(
    path: str | Path, slots: Iterable[int], info: VideoInfo, seek_gap: int = 64
) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(slot, frame)`` for non-decreasing ``slots``, lazily (sliding windows stream a long video
    through it): the last frame whose slot is ``<= slot``. Seeks to the keyframe before a wanted frame when it
    is more than ``seek_gap`` slots ahead, else decodes through."""
    it = iter(slots)
    target = next(it, None)
    if target is None:
        return
    with av.open(_input(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        shown: tuple[int, av.VideoFrame] | None = None
        while target is not None:
            ended = True
            try:
                for fslot, frame in _decode_from(container, stream, info, target):
                    if fslot <= target or shown is None:
                        shown = (fslot, frame)
                        if fslot <= target:
                            continue
                    while target is not None and target < fslot:
                        yield target, shown[1]
                        target = next(it, None)
                    shown = (fslot, frame)
                    if target is None or target - fslot > seek_gap:
                        ended = False
                        break
            except av.FFmpegError:
                # damage after the last frame the probe found (a file cut just short of its stated end) ends the
                # stream; anywhere else it is an error
                if shown is None or shown[0] < info.frames - 1:
                    raise
            if ended:  # the end of the stream: later slots show the last frame
                if shown is None:
                    return
                while target is not None:
                    yield target, shown[1]
                    target = next(it, None)


def _decode_from(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, info: VideoInfo, target: int
) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(slot, frame)`` from the keyframe before slot ``target`` on; seeks further back when the demuxer lands
    after it (open GOPs, inexact indexes), to the start of the stream at worst."""
    tb = stream.time_base
    back = 0.0
    while True:
        at = info.start + (target + 0.5) / info.fps - back
        beginning = at <= info.start
        offset = (stream.start_time or 0) if beginning else int(at / tb)
        container.seek(offset, stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            if beginning:
                return
            back = max(1.0, 2 * back)
            continue
        fslot = _slot(first, info, -1)
        if fslot <= target or beginning:
            yield fslot, first
            for frame in frames:
                fslot = _slot(frame, info, fslot)
                yield fslot, frame
            return
        back = max(1.0, 2 * back)


def _slot(frame: av.VideoFrame, info: VideoInfo, previous: int) -> int:
    t = _seconds(frame)
    return previous + 1 if t is None else math.floor((t - info.start) * info.fps + 0.5)


def _select(frame_slots: np.ndarray, slots: list[int]) -> np.ndarray:
    """Index of the frame shown at each slot: the last whose slot is ``<= slot`` (the first for earlier slots)."""
    return np.maximum(np.searchsorted(frame_slots, np.asarray(slots), side="right") - 1, 0)


def _read_decord(
    path: Path, slots: list[int], info: VideoInfo, seek_gap: int
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """decord 0.6 applies the display matrix itself. Its batch copy fails for some frame sizes (seen: 48x40,
    64x48 px rotated: "from_size == to_size"); that error reaches the caller with the file's name."""
    import decord

    reader = decord.VideoReader(_input(path), num_threads=1)
    n = len(reader)
    if n == 0:
        raise VideoDataError(f"{path}: decoded 0 frames", kind="zero_frames")
    pts = reader.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64)
    index = _select(np.floor((pts - info.start) * info.fps + 0.5), slots)
    unique = sorted(set(index.tolist()))
    batch = torch.from_numpy(reader.get_batch(unique).asnumpy()).permute(0, 3, 1, 2)  # T C H W
    row = {k: r for r, k in enumerate(unique)}
    for slot, k in zip(slots, index.tolist(), strict=True):
        yield slot, k, batch[row[k]]


def _read_torchcodec(
    path: Path, slots: list[int], info: VideoInfo, seek_gap: int, device: str = "cpu"
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """torchcodec applies the display matrix itself; ``get_frames_played_at(t)`` is the frame with the last
    timestamp ``<= t``, so slot ``s`` asks just before ``start + (s + 0.5) / r`` (see the module docstring)."""
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(_input(path), seek_mode="exact", dimension_order="NCHW", device=device)
    meta = dec.metadata
    if not meta.num_frames:
        raise VideoDataError(f"{path}: decoded 0 frames", kind="zero_frames")
    lo, hi = float(meta.begin_stream_seconds), float(meta.end_stream_seconds) - 1e-6
    times = [min(max(info.start + (s + 0.5) / info.fps - 1e-7, lo), hi) for s in slots]
    batch = dec.get_frames_played_at(seconds=times)
    keys = [math.floor((float(p) - info.start) * info.fps + 0.5) for p in batch.pts_seconds]
    yield from zip(slots, keys, batch.data, strict=True)


def _read_torchcodec_cuda(
    path: Path, slots: list[int], info: VideoInfo, seek_gap: int
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """torchcodec on NVDEC: the frames stay on ``cuda:$LOCAL_RANK``."""
    return _read_torchcodec(path, slots, info, seek_gap, device=cuda_decode_device())


BACKENDS: dict[str, Backend] = {
    "pyav": _read_pyav,
    "decord": _read_decord,
    "torchcodec": _read_torchcodec,
    "torchcodec_cuda": _read_torchcodec_cuda,
}
