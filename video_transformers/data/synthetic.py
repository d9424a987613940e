"""The embedded default dataset: seeded synthetic action videos written as real mp4 files.

Twelve classes. Ten form five pairs whose members differ only in the direction of time (each reversed
video is the exact frame-reversal of a forward one): a model that cannot order frames is at chance
within each pair. Two classes (``static``, ``blink``) are their own time reversal. Colours, sizes,
positions, speeds, textures and backgrounds are random per video; objects are always brighter than
their background (random bright colour on a random dark gradient with soft blobs).

Layout on disk (same as a real CSV dataset, see :mod:`video_transformers.data.annotations`)::

    root/classes.txt             one class name per line
    root/{train,val,test}.csv    header ``path,label``; paths relative to root
    root/videos/<split>/<class>_<index>.mp4
    root/manifest.json           counts, generator version and a checksum of every file

The cache is built in a temporary folder and renamed into place, so a half-written cache never looks
complete; a cache whose manifest is missing or whose checksum does not match is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3
BACKGROUND_RANGE = (0.0, 110.0)  # per channel, before sensor noise
OBJECT_RANGE = (150.0, 255.0)
PAIRS = [
    ("move_right", "move_left"),
    ("move_down", "move_up"),
    ("grow", "shrink"),
    ("appear", "vanish"),
    ("rotate_clockwise", "rotate_anticlockwise"),
]
SELF_REVERSED = ["static", "blink"]
CLASS_NAMES: list[str] = [c for pair in PAIRS for c in pair] + SELF_REVERSED
# class -> (forward motion it is rendered from, whether its frames are reversed)
_RENDER = {fwd: (fwd, False) for fwd, _ in PAIRS} | {rev: (fwd, True) for fwd, rev in PAIRS}
_RENDER |= {c: (c, False) for c in SELF_REVERSED}

DEFAULT_SPLITS = {"train": 100, "val": 10, "test": 10}  # videos per class
FPS = 16


def default_root() -> Path:
    """``$VT_DATA_DIR`` or ``~/.cache/video_transformers``, plus the generator version."""
    base = os.environ.get("VT_DATA_DIR") or Path.home() / ".cache" / "video_transformers"
    return Path(base) / f"embedded-v{GENERATOR_VERSION}"


def render(cls: str, rng: np.random.Generator, *, num_frames: int = 32, size: int = 40) -> np.ndarray:
    """Render one video of class ``cls`` as ``(T, H, W, 3)`` uint8."""
    motion, reverse = _RENDER[cls]
    T, S = num_frames, size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    t = np.arange(T, dtype=np.float32)[:, None, None]

    bg = _background(rng, S)
    # Bright objects on darker backgrounds, both of random colour: the object's contrast has one sign. With
    # either sign (v2), tiny ViViT/TimeSformer models trained from scratch stayed at chance for 4,500 steps;
    # with one sign they pass 90% within ~1,000 (measured on this dataset; see docs/datasets.md).
    color = rng.uniform(OBJECT_RANGE[0], OBJECT_RANGE[1], 3)
    shape = rng.choice(["disc", "square"])
    r = rng.uniform(5.0, 8.0)
    cx, cy = rng.uniform(r + 2, S - r - 2, 2)
    alpha = np.ones((T, 1, 1), np.float32)

    if motion in ("move_right", "move_down"):
        v = rng.uniform(0.6, 1.0)
        travel = v * (T - 1)
        start = rng.uniform(r + 1, max(r + 1.5, S - r - 1 - travel))
        pos = start + v * t
        (cx, cy) = (pos, cy) if motion == "move_right" else (cx, pos)
    elif motion == "grow":
        r0 = rng.uniform(3.0, 4.0)
        r1 = r0 * rng.uniform(2.5, 3.5)
        r = r0 + (r1 - r0) * t / (T - 1)
        cx, cy = rng.uniform(r1 + 1, S - r1 - 1, 2) if S > 2 * r1 + 2 else (S / 2, S / 2)
    elif motion == "appear":
        alpha = np.clip(t / (T - 1) * rng.uniform(1.0, 1.3), 0, 1)
    elif motion == "blink":
        period = rng.integers(4, 9)
        alpha = (((t.astype(int) + rng.integers(period)) // (period // 2)) % 2).astype(np.float32)
    if motion == "rotate_clockwise":
        omega = rng.uniform(0.06, 0.12)  # rad per frame: well under pi/2 between sampled frames
        theta = rng.uniform(0, np.pi) + omega * t  # image y points down, so +theta turns clockwise
        half_len, half_w = rng.uniform(8, 13), rng.uniform(1.5, 3.0)
        cx, cy = rng.uniform(half_len + 1, S - half_len - 1, 2)
        dx, dy = xx - cx, yy - cy
        along = dx * np.cos(theta) + dy * np.sin(theta)
        across = -dx * np.sin(theta) + dy * np.cos(theta)
        mask = (np.abs(along) <= half_len) & (np.abs(across) <= half_w)
    elif shape == "disc":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= np.square(r)
    else:
        mask = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    mask = np.broadcast_to(mask, (T, S, S)).astype(np.float32) * alpha

    frames = bg[None] * (1 - mask[..., None]) + color * mask[..., None]
    frames += rng.normal(0, 4.0, frames.shape)  # sensor noise: no two frames are identical
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    return frames[::-1].copy() if reverse else frames


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random dark colour gradient plus a few soft blobs, ``(H, W, 3)`` float in ``BACKGROUND_RANGE``."""
    c0, c1 = rng.uniform(0, BACKGROUND_RANGE[1] - 20, (2, 3))
    direction = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ramp = np.cos(direction) * xx + np.sin(direction) * yy
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    bg = c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]
    for _ in range(rng.integers(0, 4)):
        bx, by = rng.uniform(0, 1, 2)
        sigma = rng.uniform(0.05, 0.2)
        blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma**2))
        bg += blob[..., None] * rng.uniform(-30, 30, 3)
    return np.clip(bg, *BACKGROUND_RANGE)


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """Encode ``(T, H, W, 3)`` uint8 frames as H.264 mp4 (yuv420p, near-lossless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        stream.codec_context.thread_count = 1  # tiny frames: threads only cost (PyAV ignores a "threads" option)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _checksum(root: Path, rel_paths: list[str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(rel_paths):
        h.update(rel.encode())
        h.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return h.hexdigest()


def _files(splits: dict[str, int]) -> list[str]:
    return ["classes.txt"] + [f"{s}.csv" for s in splits]


def verify(root: Path, splits: dict[str, int] | None = None) -> str | None:
    """``None`` when the cache at ``root`` is complete, intact and (if given) has ``splits`` videos per
    class, else the reason it is not."""
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        return "no manifest.json (never built, or a build was interrupted)"
    try:
        manifest = json.loads(manifest_path.read_text())
        rel_paths = manifest["files"]
        if manifest.get("version") != GENERATOR_VERSION:
            return f"generator version {manifest.get('version')} != {GENERATOR_VERSION}"
        if splits is not None:
            want = {s: n * len(CLASS_NAMES) for s, n in splits.items()}
            if manifest.get("counts") != want:
                return f"split sizes {manifest.get('counts')} != requested {want}"
        missing = [p for p in rel_paths if not (root / p).is_file()]
        if missing:
            return f"{len(missing)} files missing, e.g. {missing[0]}"
        if _checksum(root, rel_paths) != manifest["checksum"]:
            return "checksum mismatch (files changed or half-written)"
    except (KeyError, ValueError, TypeError) as e:
        return f"unreadable manifest.json: {e}"
    return None


def build(
    root: str | Path | None = None,
    *,
    seed: int = 0,
    splits: dict[str, int] | None = None,
    num_frames: int = 32,
    size: int = 40,
) -> Path:
    """Create (or reuse) the embedded dataset at ``root``; returns the root.

    Deterministic: video ``i`` of class ``c`` in split ``s`` is rendered from a generator seeded by
    ``(seed, s, c, i)``.
    """
    root = Path(root) if root is not None else default_root()
    splits = dict(splits or DEFAULT_SPLITS)
    reason = verify(root, splits)
    if reason is None:
        return root
    if root.exists():
        log.warning("embedded dataset at %s is incomplete (%s); rebuilding", root, reason)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        rel_paths = _files(splits)
        (tmp / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
        jobs = [(s, ci, c, i) for s, n in splits.items() for ci, c in enumerate(CLASS_NAMES) for i in range(n)]
        rows: dict[str, list[str]] = {s: [] for s in splits}
        split_ids = {s: k for k, s in enumerate(splits)}
        for s, ci, c, i in tqdm(jobs, desc=f"building embedded dataset in {root}", unit="video"):
            rng = np.random.default_rng([seed, split_ids[s], ci, i])
            rel = f"videos/{s}/{c}_{i:03d}.mp4"
            write_mp4(tmp / rel, render(c, rng, num_frames=num_frames, size=size))
            rows[s].append(f"{rel},{c}")
            rel_paths.append(rel)
        for s, lines in rows.items():
            (tmp / f"{s}.csv").write_text("path,label\n" + "\n".join(lines) + "\n")
        manifest = dict(
            version=GENERATOR_VERSION,
            seed=seed,
            counts={s: len(v) for s, v in rows.items()},
            num_classes=len(CLASS_NAMES),
            frames_per_video=num_frames,
            fps=FPS,
            size=size,
            files=rel_paths,
            checksum=_checksum(tmp, rel_paths),
        )
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
