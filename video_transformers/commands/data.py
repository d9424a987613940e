"""``vt data``: dataset tools.

    vt data resize SRC DST --short-side 320 [--workers N] [--crf 23]
    vt data check --config configs/data/kinetics400.yaml [--root data/k400] [--splits train val]
    vt data check --root data/ucf101 --format ucf101 [--split-id 2]

``resize`` re-encodes every video under SRC to the given short side (never upscaling: smaller videos are
copied) into the same relative path under DST, in parallel, with a progress bar. It is resumable: each output
is written to a temporary name and renamed when complete, and existing outputs are skipped. Annotation files
(everything that is not a video) are copied, so DST is a dataset root like SRC. Audio is dropped. Failures are
listed by file at the end (exit status 1).

``check`` reads a dataset's annotations and runs the training check pass on every listed video (its first and
last frames are decoded, as training will read them), and lists every problem once, with its reason: bad rows,
missing files, broken symlinks (dangling, loops), files that are not videos (an image renamed ``.mp4``; a ``.gif``
or ``.txt`` in a class folder), unreadable, truncated, zero-frame, audio-only, too-short and duplicated videos;
with a count of each kind per split and in the summary, without stopping at the first (exit status 1 when any
was found).
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


# -- resize -----------------------------------------------------------------------------------------------
def target_size(width: int, height: int, short_side: int) -> tuple[int, int] | None:
    """Even ``(width, height)`` with the short side at ``short_side``; ``None`` when already no larger."""
    if min(width, height) <= short_side:
        return None
    scale = short_side / min(width, height)
    even = lambda v: max(2, int(round(v * scale / 2)) * 2)  # noqa: E731 (yuv420p needs even sides)
    return (short_side, even(height)) if width <= height else (even(width), short_side)


def resize_video(src: Path, dst: Path, short_side: int, crf: int = 23) -> str:
    """Write ``src`` re-encoded to ``dst`` (via a temporary file); returns 'resized' or 'copied'."""
    import av

    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise ValueError("no video stream (audio-only or not a video)")
            ins = inp.streams.video[0]
            ins.thread_type = "AUTO"
            size = target_size(ins.codec_context.width, ins.codec_context.height, short_side)
            if size is None:
                inp.close()
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
                return "copied"
            rate = ins.average_rate or ins.guessed_rate or 30
            codec, options = CODECS.get(dst.suffix.lower(), DEFAULT_CODEC)
            frames = 0
            decoded = inp.decode(ins)
            first = next(decoded, None)
            with av.open(str(tmp), mode="w") as out:
                os_ = out.add_stream(codec, rate=rate)
                os_.width, os_.height = size
                os_.pix_fmt = "yuv420p"
                os_.options = {k: v.format(crf=crf) for k, v in options.items()}
                if first is not None and getattr(first, "rotation", 0):
                    os_.set_display_rotation(first.rotation)  # a phone video stays upright
                for frame in itertools.chain([first] if first is not None else [], decoded):
                    image = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                    image.pts, image.time_base = frames, 1 / Fraction(rate)  # constant rate, counted from 0
                    out.mux(os_.encode(image))
                    frames += 1
                out.mux(os_.encode())
            if frames == 0:
                raise ValueError("decoded 0 frames")
        os.replace(tmp, dst)
        return "resized"
    finally:
        if tmp.exists():
            tmp.unlink()


def _resize_job(job: tuple[str, str, int, int]) -> tuple[str, str]:
    src, dst, short_side, crf = job
    try:
        return src, resize_video(Path(src), Path(dst), short_side, crf)
    except Exception as e:  # one bad file must not stop the others; it is listed at the end
        return src, f"failed: {type(e).__name__}: {e}"


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
        jobs.append((str(path), str(out), args.short_side, args.crf))
    results: dict[str, list[str]] = {"resized": [], "copied": [], "failed": []}
    workers = max(1, args.workers)
    bar = tqdm(total=len(jobs), desc=f"resizing to short side {args.short_side}", unit="video")
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
        f" {args.short_side}), {skipped} already done, {copied} other files copied, {len(results['failed'])} failed"
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt data", description="Dataset tools: resize videos, check a dataset.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("resize", help="re-encode videos to a short side, in parallel and resumably")
    r.add_argument("src")
    r.add_argument("dst")
    r.add_argument("--short-side", type=int, default=320)
    r.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    r.add_argument("--crf", type=int, default=23, help="quality for libx264 / VP9 (lower is better)")
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
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "resize":
        if args.short_side < 2:
            print("vt data resize: --short-side must be >= 2", file=sys.stderr)
            return 2
        return run_resize(args)
    if not args.config and not args.root:
        print("vt data check: give --config or --root (with --format)", file=sys.stderr)
        return 2
    return run_check(args)
