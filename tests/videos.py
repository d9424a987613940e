"""Real-world video files, generated with PyAV: what phones (rotation metadata), screen recorders (variable frame
rate), cameras (long, 720p) and broken downloads (truncated) produce. Frame ``k`` of the numbered videos is a
flat grey ``code(k)``, so a decoded frame says which source frame it is (:func:`frame_numbers`)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

STEP, BASE = 3, 8  # grey level of frame k: BASE + STEP * k (lossless coding keeps it within +-1)


def code(k: int) -> int:
    return BASE + STEP * k


def frame_numbers(clip: torch.Tensor) -> list[int]:
    """Source frame of each frame of a ``(C, T, H, W)`` uint8 clip of a numbered video."""
    return ((clip.float().mean((0, 2, 3)) - BASE) / STEP).round().long().tolist()


def _stream(container: av.container.OutputContainer, size: tuple[int, int], rate: int, lossless: bool):
    stream = container.add_stream("libx264", rate=rate)
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    stream.options = {"qp": "0", "preset": "ultrafast"} if lossless else {"crf": "12", "preset": "ultrafast"}
    stream.codec_context.time_base = Fraction(1, rate)
    return stream


def write_numbered(
    path: Path, pts: Sequence[int], *, rate: int = 30, size: tuple[int, int] = (32, 48), options: dict | None = None
) -> Path:
    """Frame ``k`` (grey ``code(k)``) at timestamp ``pts[k] / rate`` s; uneven ``pts`` make a variable-rate file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = _stream(container, size, rate, lossless=True)
        for k, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), code(k), np.uint8), format="rgb24")
            frame.pts, frame.time_base = p, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_vfr(path: Path, slow_s: float = 2.0, fast_s: float = 2.0) -> tuple[Path, list[float]]:
    """A screen recording's variable rate: ``slow_s`` seconds at 10 fps, then ``fast_s`` at 30 fps (time base
    1/30). Returns the file and each frame's timestamp."""
    slow, fast = round(10 * slow_s), round(30 * fast_s)
    pts = [3 * k for k in range(slow)] + [3 * slow + k for k in range(fast)]
    return write_numbered(path, pts), [p / 30 for p in pts]


def cfr_reencode(src: Path, dst: Path, rate: int = 30) -> Path:
    """``src`` through FFmpeg's ``fps`` filter (a constant-rate re-encode, as ``ffmpeg -vf fps=30`` makes), lossless."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ins = inp.streams.video[0]
        graph = av.filter.Graph()
        buffer, fps, sink = graph.add_buffer(template=ins), graph.add("fps", f"fps={rate}"), graph.add("buffersink")
        buffer.link_to(fps)
        fps.link_to(sink)
        graph.configure()
        stream = _stream(out, (ins.height, ins.width), rate, lossless=True)
        n = 0

        def drain() -> None:
            nonlocal n
            while True:
                try:
                    frame = graph.pull()
                except (av.BlockingIOError, av.EOFError):
                    return
                frame.pts, frame.time_base = n, Fraction(1, rate)
                n += 1
                out.mux(stream.encode(frame))

        for frame in inp.decode(ins):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
        out.mux(stream.encode())
    return dst


def pattern(size: tuple[int, int], seed: int = 0, block: int = 8) -> np.ndarray:
    """An asymmetric ``(H, W, 3)`` picture of flat blocks (survives lossy coding; every rotation differs)."""
    h, w = size
    base = np.random.default_rng(seed).integers(0, 256, (h // block, w // block, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, block, 0), block, 1)


def write_frames(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    rate: int = 10,
    rotation: int | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    gop: int | None = None,
    container_options: dict | None = None,
) -> Path:
    """``frames`` (``(H, W, 3)`` uint8) as a video; ``rotation`` writes a display matrix (degrees
    counter-clockwise, as a phone records portrait video into landscape frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.options = options if options is not None else {"crf": "12", "preset": "ultrafast"}
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
