"""``vt data``: dataset tools.

    vt data resize SRC DST --short-side 320 [--workers N] [--crf 23] [--keyframe-interval N] [--fps F] [--codec C]
    vt data check --config configs/data/kinetics400.yaml [--root data/k400] [--splits train val]
    vt data check --root data/ucf101 --format ucf101 [--split-id 2]
    vt data shard --config configs/data/kinetics400.yaml --out s3://bucket/k400 [--endpoint-url URL] [--workers N]

``resize`` re-encodes every video under SRC to the given short side (never upscaling: smaller videos are
copied) into the same relative path under DST, in parallel, with a progress bar. It is resumable: each output
is written to a temporary name and renamed when complete, and existing outputs are skipped. Annotation files
(everything that is not a video) are copied, so DST is a dataset root like SRC. Audio is dropped. Failures are
listed by file at the end (exit status 1). ``--short-side 0`` keeps every video's size.

Re-encoding for random access: ``--keyframe-interval N`` puts a keyframe every N frames (the encoder's "GOP"), so
a seek decodes at most N - 1 frames before the one it wants; ``--fps F`` resamples to a constant F frames per
second (FFmpeg's ``fps`` filter: frames dropped or repeated by timestamp); ``--codec`` picks the encoder
(``h264``, ``hevc``, ``vp9``, ``av1``, ``mpeg4`` or any FFmpeg encoder name). With any of the three every video
is re-encoded, also those already small enough. docs/performance.md measures loader speed and disk size
against the keyframe interval.

``check`` reads a dataset's annotations and runs the training check pass on every listed video (its first and
last frames are decoded, as training will read them), and lists every problem once, with its reason: bad rows,
missing files, broken symlinks (dangling, loops), files that are not videos (an image renamed ``.mp4``; a ``.gif``
or ``.txt`` in a class folder), unreadable, truncated, zero-frame, audio-only, too-short and duplicated videos;
with a count of each kind per split and in the summary, without stopping at the first (exit status 1 when any
was found).

``shard`` packs the usable videos of a dataset's splits (after the same check pass as training), as their encoded
bytes with labels and metadata, into LitData shards in a folder or at ``s3://bucket/prefix``; train from them with
``--data.source stream --data.root OUT`` (docs/datasets.md, "Shards").
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = {".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v"}
# (codec, options) per container: libx264 for mp4-like, VP9 for webm (SSv2 keeps its names), MPEG-4 part 2 for avi
CODECS = {
    ".webm": ("libvpx-vp9", {"crf": "{crf}", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}),
    ".avi": ("mpeg4", {"qscale": "3"}),
}
DEFAULT_CODEC = ("libx264", {"crf": "{crf}", "preset": "veryfast"})
# --codec short names -> (encoder, options); other names are passed to FFmpeg as they are, with no options
CODEC_NAMES = {
    "h264": DEFAULT_CODEC,
    "hevc": ("libx265", {"crf": "{crf}", "preset": "veryfast", "x265-params": "log-level=error"}),
    "vp9": CODECS[".webm"],
    "av1": ("libsvtav1", {"crf": "{crf}", "preset": "10"}),
    "mpeg4": CODECS[".avi"],
}
CODEC_NAMES["h265"] = CODEC_NAMES["hevc"]


def encoder_for(suffix: str, codec: str | None) -> tuple[str, dict[str, str]]:
    """``(FFmpeg encoder, options)`` for an output file: ``codec`` if given, else the container's default."""
    if codec is None:
        return CODECS.get(suffix.lower(), DEFAULT_CODEC)
    return CODEC_NAMES.get(codec, (codec, {}))


def check_codec(codec: str) -> None:
    """Raise when ``codec`` names no encoder this FFmpeg build has."""
    import av

    name = encoder_for("", codec)[0]
    try:
        av.Codec(name, "w")
    except Exception as e:  # PyAV raises UnknownCodecError / ValueError by version
        known = ", ".join(sorted(CODEC_NAMES))
        raise ValueError(f"--codec {codec}: FFmpeg has no encoder {name!r} (short names: {known})") from e


# -- resize -----------------------------------------------------------------------------------------------
def target_size(width: int, height: int, short_side: int) -> tuple[int, int] | None:
    """Even ``(width, height)`` with the short side at ``short_side``; ``None`` when already no larger."""
    if min(width, height) <= short_side:
        return None
    scale = short_side / min(width, height)
    even = lambda v: max(2, int(round(v * scale / 2)) * 2)  # noqa: E731 (yuv420p needs even sides)
    return (short_side, even(height)) if width <= height else (even(width), short_side)


def resize_video(
    src: Path,
    dst: Path,
    short_side: int,
    crf: int = 23,
    *,
    keyframe_interval: int | None = None,
    fps: float | None = None,
    codec: str | None = None,
) -> str:
    """Write ``src`` re-encoded to ``dst`` (via a temporary file); returns 'resized', 're-encoded' or 'copied'.

    ``short_side`` 0 keeps the size. A video already no larger is copied unless ``keyframe_interval``, ``fps``
    or ``codec`` asks for a re-encode.
    """
    import av

    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    reencode = keyframe_interval is not None or fps is not None or codec is not None
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise ValueError("no video stream (audio-only or not a video)")
            ins = inp.streams.video[0]
            ins.thread_type = "AUTO"
            width, height = ins.codec_context.width, ins.codec_context.height
            size = target_size(width, height, short_side) if short_side > 0 else None
            if size is None and not reencode:
                inp.close()
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
                return "copied"
            size = size or (width - width % 2, height - height % 2)  # yuv420p needs even sides
            rate = Fraction(fps).limit_denominator(1001) if fps else (ins.average_rate or ins.guessed_rate or 30)
            encoder = encoder_options(dst.suffix, codec, crf, keyframe_interval)
            if _encode(inp.decode(ins), ins, tmp, encoder, size=size, rate=rate, fps=fps) == 0:
                raise ValueError("decoded 0 frames")
        os.replace(tmp, dst)
        return "resized" if size != (width, height) else "re-encoded"
    finally:
        if tmp.exists():
            tmp.unlink()


def encoder_options(suffix: str, codec: str | None, crf: int, keyframe_interval: int | None) -> tuple[str, dict]:
    """``(FFmpeg encoder, options)`` for an output file, with the quality and keyframe interval filled in."""
    name, options = encoder_for(suffix, codec)
    options = {k: v.format(crf=crf) for k, v in options.items()}
    if keyframe_interval is not None:
        options["g"] = str(keyframe_interval)  # AVCodecContext.gop_size: the longest run between keyframes
        if name == "libx264":
            options["keyint_min"] = str(keyframe_interval)  # x264 would otherwise add scene-cut keyframes
    return name, options


def _encode(decoded, stream, tmp: Path, encoder: tuple[str, dict], *, size, rate, fps: float | None) -> int:
    """Encode the frames ``decoded`` from ``stream`` into ``tmp`` at ``size`` and a constant ``rate``; returns
    the number of frames written."""
    import av

    name, options = encoder
    frames = 0
    first = next(decoded, None)
    with av.open(str(tmp), mode="w") as out:
        os_ = out.add_stream(name, rate=rate)
        os_.width, os_.height = size
        os_.pix_fmt = "yuv420p"
        os_.options = options
        if first is not None and getattr(first, "rotation", 0):
            os_.set_display_rotation(first.rotation)  # a phone video stays upright
        decoded = itertools.chain([first] if first is not None else [], decoded)
        for frame in _resampled(decoded, stream, fps):
            image = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            image.pts, image.time_base = frames, 1 / Fraction(rate)  # constant rate, counted from 0
            out.mux(os_.encode(image))
            frames += 1
        out.mux(os_.encode())
    return frames


def _resampled(frames, stream, fps: float | None):
    """``frames`` as they are, or through FFmpeg's ``fps`` filter (constant ``fps``, by timestamp)."""
    if not fps:
        yield from frames
        return
    import av

    graph = av.filter.Graph()
    graph.link_nodes(graph.add_buffer(template=stream), graph.add("fps", f"fps={fps}"), graph.add("buffersink"))
    graph.configure()

    def drain():
        while True:
            try:
                yield graph.vpull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    for frame in frames:
        graph.vpush(frame)
        yield from drain()
    graph.vpush(None)  # flush: the filter emits the frames it holds
    yield from drain()


def _resize_job(job: tuple[str, str, int, int, dict]) -> tuple[str, str]:
    src, dst, short_side, crf, encode = job
    try:
        return src, resize_video(Path(src), Path(dst), short_side, crf, **encode)
    except Exception as e:  # one bad file must not stop the others; it is listed at the end
        return src, f"failed: {type(e).__name__}: {e}"


def resize_args_problem(args: argparse.Namespace) -> str | None:
    if args.short_side == 1 or args.short_side < 0:
        return "--short-side must be >= 2 (or 0 to keep the size)"
    if args.keyframe_interval is not None and args.keyframe_interval < 1:
        return "--keyframe-interval must be >= 1"
    if args.fps is not None and args.fps <= 0:
        return "--fps must be > 0"
    if args.codec is not None:
        try:
            check_codec(args.codec)
        except ValueError as e:
            return str(e)
    return None


def run_resize(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    src_root, dst_root = Path(args.src), Path(args.dst)
    if not src_root.is_dir():
        print(f"vt data resize: {src_root}: not a directory", file=sys.stderr)
        return 2
    if dst_root.resolve() == src_root.resolve() or src_root.resolve() in dst_root.resolve().parents:
        print(f"vt data resize: DST {dst_root} must lie outside SRC {src_root}", file=sys.stderr)
        return 2
    jobs, skipped, copied = [], 0, 0
    for path in sorted(p for p in src_root.rglob("*") if p.is_file()):
        if path.name.startswith(".") and ".partial" in path.name:
            continue
        out = dst_root / path.relative_to(src_root)
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
                copied += 1
            continue
        if out.exists():
            skipped += 1  # finished in an earlier run: outputs only appear complete (temp + rename)
            continue
        encode = dict(keyframe_interval=args.keyframe_interval, fps=args.fps, codec=args.codec)
        jobs.append((str(path), str(out), args.short_side, args.crf, encode))
    results: dict[str, list[str]] = {"resized": [], "re-encoded": [], "copied": [], "failed": []}
    workers = max(1, args.workers)
    what = f"resizing to short side {args.short_side}" if args.short_side else "re-encoding"
    bar = tqdm(total=len(jobs), desc=what, unit="video")
    if workers == 1:
        outcomes = map(_resize_job, jobs)
        for src, outcome in outcomes:
            results["failed" if outcome.startswith("failed") else outcome].append(f"{src}: {outcome}")
            bar.update()
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for src, outcome in pool.imap_unordered(_resize_job, jobs):
                results["failed" if outcome.startswith("failed") else outcome].append(f"{src}: {outcome}")
                bar.update()
    bar.close()
    print(
        f"{len(results['resized'])} resized, {len(results['copied'])} copied (short side already <="
        f" {args.short_side}), {len(results['re-encoded'])} re-encoded at their size, {skipped} already done,"
        f" {copied} other files copied, {len(results['failed'])} failed"
    )
    if results["failed"]:
        print("failures:\n  " + "\n  ".join(sorted(results["failed"])))
        return 1
    return 0


# -- check ------------------------------------------------------------------------------------------------
def _data_config(paths: list[str]) -> dict[str, Any]:
    """The ``data`` section of ``vt`` configs, read by the parser ``vt fit`` uses (bases, defaults, key checks)."""
    from video_transformers.cli import read_config

    if not paths:
        return {}
    return read_config([a for path in paths for a in ("--config", path)]).data.as_dict()


def run_check(args: argparse.Namespace) -> int:
    from video_transformers.data import VideoDataError, VideoDataModule
    from video_transformers.data.errors import KINDS

    cfg = _data_config(args.config or [])
    overrides = dict(
        root=args.root, dataset=args.format, split_id=args.split_id, sampling=args.sampling, num_frames=args.num_frames
    )
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    cfg["num_workers"] = args.workers
    try:
        dm = VideoDataModule(**cfg)
    except (VideoDataError, ValueError, TypeError) as e:
        print(f"vt data check: cannot read the dataset: {e}", file=sys.stderr)
        return 2
    print(f"{dm.dataset} at {dm.root}: {dm.num_classes} classes, {dm.sampling.describe()} sampling")
    total, counts = 0, dict.fromkeys(KINDS, 0)
    for split in args.splits:
        try:
            scan = dm.scan(split, workers=args.workers)
        except VideoDataError as e:
            print(f"\n[{split}] cannot read annotations: {e}")
            total += 1
            counts[e.kind] += 1
            continue
        print(
            f"\n[{split}] ({dm.annotation_split(split)}): {scan.listed} listed, {len(scan.records)} usable,"
            f" {scan.num_problems} problems"
        )
        for kind in KINDS:
            msgs = scan.problems.get(kind) or []
            if not msgs:
                continue
            counts[kind] += len(msgs)
            print(f"  {kind.replace('_', '-')}: {len(msgs)}")
            for msg in msgs[: args.max_list]:
                print(f"    {msg}")
            if len(msgs) > args.max_list:
                print(f"    ... and {len(msgs) - args.max_list} more")
        total += scan.num_problems
    by_kind = ", ".join(f"{n} {kind.replace('_', '-')}" for kind, n in counts.items() if n)
    print(f"\n{total} problems found: {by_kind}" if total else "\nno problems found")
    return 1 if total else 0


# -- shard ------------------------------------------------------------------------------------------------
def run_shard(args: argparse.Namespace) -> int:
    from video_transformers.data import VideoDataError, VideoDataModule
    from video_transformers.data.shards import Store, pack

    cfg = _data_config(args.config or [])
    cfg.update({k: v for k, v in dict(root=args.root, dataset=args.format).items() if v is not None})
    cfg.update(num_workers=args.workers, source="files")
    try:
        store = Store(args.out, args.endpoint_url)
        dm = VideoDataModule(**cfg)
        manifest = pack(
            dm, store, splits=args.splits, chunk_bytes=args.chunk_bytes, workers=args.workers, overwrite=args.overwrite
        )
    except (VideoDataError, ValueError, TypeError, FileExistsError, ImportError) as e:
        print(f"vt data shard: {e}", file=sys.stderr)
        return 2
    for split, n in manifest["splits"].items():
        print(f"{split}: {n['videos']} videos, {n['bytes'] / 1e6:.1f} MB -> {store.join(split)}")
    extra = f" --data.endpoint_url {args.endpoint_url}" if args.endpoint_url else ""
    print(f"train from them with: vt fit ... --data.source stream --data.root {args.out}{extra}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt data", description="Dataset tools: resize, check or shard a dataset.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("resize", help="re-encode videos to a short side, in parallel and resumably")
    r.add_argument("src")
    r.add_argument("dst")
    r.add_argument("--short-side", type=int, default=320, help="0 keeps the size")
    r.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    r.add_argument("--crf", type=int, default=23, help="quality for libx264 / VP9 (lower is better)")
    r.add_argument("--keyframe-interval", type=int, help="a keyframe every N frames (default: the encoder's, 250)")
    r.add_argument("--fps", type=float, help="resample to a constant frame rate (default: keep the video's)")
    r.add_argument("--codec", help=f"encoder: {', '.join(sorted(CODEC_NAMES))} or an FFmpeg encoder name")
    c = sub.add_parser("check", help="list bad rows and bad videos of a dataset, with counts")
    c.add_argument("--config", action="append", help="a vt YAML whose data: section describes the dataset")
    c.add_argument("--root")
    c.add_argument("--format", help="data.dataset: csv, list, folder, kinetics400, ssv2, ucf101, hmdb51, ...")
    c.add_argument("--split-id", type=int)
    c.add_argument("--sampling", help="data.sampling (decides what is too short)")
    c.add_argument("--num-frames", type=int)
    c.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    c.add_argument("--workers", type=int, default=4, help="probing threads")
    c.add_argument("--max-list", type=int, default=50, help="files listed per problem kind")
    s = sub.add_parser("shard", help="pack a dataset's videos into shards that stream (a folder or s3://)")
    s.add_argument("--config", action="append", help="a vt YAML whose data: section describes the dataset")
    s.add_argument("--root")
    s.add_argument("--format", help="data.dataset: csv, list, folder, kinetics400, ssv2, ucf101, hmdb51, ...")
    s.add_argument("--out", required=True, help="a folder, or s3://bucket/prefix")
    s.add_argument("--endpoint-url", help="an S3-compatible store's endpoint (MinIO, Ceph, R2)")
    s.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    s.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="packing processes")
    s.add_argument("--chunk-bytes", default="64MB", help="chunk size (LitData's chunk_bytes)")
    s.add_argument("--overwrite", action="store_true", help="replace shards already at --out")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "resize":
        problem = resize_args_problem(args)
        if problem:
            print(f"vt data resize: {problem}", file=sys.stderr)
            return 2
        return run_resize(args)
    if not args.config and not args.root:
        print(f"vt data {args.command}: give --config or --root (with --format)", file=sys.stderr)
        return 2
    if args.command == "shard":
        return run_shard(args)
    return run_check(args)
