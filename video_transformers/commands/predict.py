"""``vt predict``: class predictions for video files from a trained model.

    vt predict --ckpt_path runs/vivit_factorised/version_0/checkpoints/best.ckpt --paths clip.mp4 videos/ "more/*.mp4"
               [--views 4x3] [--topk 5] [--out preds.json|preds.csv] [--per-view] [--device auto]
    vt predict --ckpt_path ... --paths long.mp4 --window [--stride 0.5] --out timeline.csv   # score timeline + PNG

Each video is sampled, decoded and normalised with the checkpoint's own data settings (sampling, frames,
sampling rate, fps, crop, evaluation short side, mean/std; see :mod:`video_transformers.inference.loading`).
Views mode runs ``vt test``'s own pipeline on each file (its sampler, dataset, transform and per-video
aggregation), so a video gets the scores ``vt test`` wrote for it in ``test_predictions.csv``; ``--window``
slides one time-window clip along the video. A file that cannot be used is reported and skipped; the run
ends with a summary and exits 1 if any file failed. The Trainer's own predict loop stays reachable as
``vt predict --config ...``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from video_transformers.data.errors import VideoDataError
from video_transformers.inference.clips import (
    check_video,
    describe_views,
    expand_paths,
    expected_grid_frames,
    iter_grid_frames,
    num_windows,
    stride_frames,
    view_dataset,
)
from video_transformers.inference.loading import LoadedModel, load_model
from video_transformers.inference.render import plot_timeline
from video_transformers.inference.windows import stream_multiple, window_scorer
from video_transformers.lit.multiview import AGGREGATIONS, ViewCollector, aggregate_views, parse_views
from video_transformers.pretrained import PretrainedError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt_path", required=True, help="a vt fit .ckpt, or any source from_pretrained reads")
    p.add_argument("--paths", nargs="+", required=True, help="video files, folders (searched recursively), globs")
    p.add_argument("--views", default="4x3", help="CLIPSxCROPS per video (default 4x3)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--out", type=Path, help="write predictions to .json or .csv")
    p.add_argument("--per-view", "--per_view", dest="per_view", action="store_true", help="also write each view")
    p.add_argument("--aggregate", default="softmax_mean", choices=AGGREGATIONS, help="how views combine")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch_size", type=int, default=16, help="views or windows per forward pass")
    p.add_argument("--short-video", "--short_video", dest="short_video", choices=["pad", "error"], default="pad")
    p.add_argument("--window", action="store_true", help="sliding-window timeline instead of views")
    p.add_argument("--stride", type=float, help="window stride in seconds (default: half a clip)")
    p.add_argument(
        "--no-stream",
        "--no_stream",
        dest="stream",
        action="store_false",
        help="recompute every window even where the model allows feature reuse (ViViT-FE)",
    )
    p.add_argument("--plot_dir", type=Path, help="where timeline PNGs go (default: next to --out, else .)")
    p.add_argument("--sampling_rate", type=int, help="override the checkpoint's sampling rate")
    p.add_argument("--fps", type=float, help="override the checkpoint's target fps")
    p.add_argument("--trust_checkpoint", action="store_true", help="allow full unpickling of the checkpoint")
    return p


# -- views mode -------------------------------------------------------------------------------------------
def topk_rows(scores: torch.Tensor, names: list[str], k: int) -> list[dict[str, Any]]:
    values, idx = scores.topk(min(k, len(names)))
    return [
        {"rank": r + 1, "label": names[i], "score": round(float(v), 6)}
        for r, (v, i) in enumerate(zip(values.tolist(), idx.tolist(), strict=True))
    ]


def predict_views(lm: LoadedModel, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``vt test``'s pipeline on one file: its dataset, loader, view collector and :func:`aggregate_views`."""
    clips, crops = parse_views(args.views)
    dataset = view_dataset(path, lm.spec, clips=clips, crops=crops, short_video=args.short_video)
    collector = ViewCollector()
    for batch in DataLoader(dataset, batch_size=args.batch_size):
        collector.update(lm.logits(batch["video"]), batch)
    views = collector.cat()
    _, scores, _, _ = aggregate_views(
        views["logits"], views["video_index"], views["view_index"], views["labels"], args.aggregate
    )
    result: dict[str, Any] = {"video": str(path), "top": topk_rows(scores[0], lm.class_names, args.topk)}
    if args.per_view:
        probs = views["logits"].softmax(-1)
        result["views"] = [
            {
                "view": v.name,
                "start": round(v.start, 4),
                "end": round(v.end, 4),
                "top": topk_rows(p, lm.class_names, args.topk),
            }
            for v, p in zip(describe_views(dataset), probs, strict=True)
        ]
    return result


# -- window mode ------------------------------------------------------------------------------------------
def predict_windows(lm: LoadedModel, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    spec = lm.spec
    use_stream = args.stream and stream_multiple(lm.model) > 1
    stride = stride_frames(spec, args.stride or spec.clip_duration / 2, stream_multiple(lm.model) if use_stream else 1)
    info = check_video(path)
    total = num_windows(expected_grid_frames(info, spec), spec.num_frames, stride)
    scorer = window_scorer(lm, stream=use_stream, batch_size=args.batch_size)
    windows, logits = [], []
    t0 = time.perf_counter()
    frames = iter_grid_frames(path, spec)
    for w, lg in tqdm(scorer.run(frames, stride, path, args.short_video), total=total, desc="windows", leave=False):
        windows.append(w)
        logits.append(lg)
    seconds = time.perf_counter() - t0
    probs = torch.stack(logits).softmax(-1)
    plot_dir = args.plot_dir or (args.out.parent if args.out else Path("."))
    png = plot_dir / f"{path.stem}.timeline.png"
    stride_s = stride * spec.frame_step
    plot_timeline(
        [w.start for w in windows],
        [w.end for w in windows],
        probs,
        lm.class_names,
        png,
        topk=args.topk,
        title=f"{path.name}: {len(windows)} windows of {spec.clip_duration:g}s, stride {stride_s:g}s",
    )
    return {
        "video": str(path),
        "top": topk_rows(probs.mean(0), lm.class_names, args.topk),
        "stride_s": stride_s,
        "streaming": use_stream,
        "seconds": round(seconds, 4),
        "plot": str(png),
        "windows": [
            {
                "index": w.index,
                "start": round(w.start, 4),
                "end": round(w.end, 4),
                "scores": [round(float(v), 6) for v in p],
            }
            for w, p in zip(windows, probs, strict=True)
        ],
    }


# -- output -----------------------------------------------------------------------------------------------
def write_json(path: Path, lm: LoadedModel, args: argparse.Namespace, results: list, failed: list) -> None:
    doc = {
        "checkpoint": lm.source,
        "mode": "window" if args.window else "views",
        "views": None if args.window else args.views,
        "clip": lm.spec.to_dict(),
        "classes": lm.class_names,
        "predictions": results,
        "failed": [{"video": v, "error": e} for v, e in failed],
    }
    path.write_text(json.dumps(doc, indent=1))


def write_csv(path: Path, lm: LoadedModel, args: argparse.Namespace, results: list) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        if args.window:
            w.writerow(["video", "window", "start", "end", "top1", "top1_score", *lm.class_names])
            for r in results:
                for win in r["windows"]:
                    best = max(range(len(win["scores"])), key=win["scores"].__getitem__)
                    w.writerow(
                        [
                            r["video"],
                            win["index"],
                            win["start"],
                            win["end"],
                            lm.class_names[best],
                            win["scores"][best],
                            *win["scores"],
                        ]
                    )
            return
        w.writerow(["video", "rank", "label", "score"] + (["view"] if args.per_view else []))
        for r in results:
            for row in r["top"]:
                w.writerow([r["video"], row["rank"], row["label"], row["score"]] + (["all"] if args.per_view else []))
            for view in r.get("views", []):
                for row in view["top"]:
                    w.writerow([r["video"], row["rank"], row["label"], row["score"], view["view"]])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--config" or a.startswith(("--config=", "--data.", "--trainer.", "--model.")) for a in argv):
        from video_transformers.cli import run_cli  # the Trainer's predict loop over a data module

        run_cli(["predict", *argv])
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.out is not None and args.out.suffix.lower() not in (".json", ".csv"):
        print(f"vt predict: --out {args.out}: expected a .json or .csv file", file=sys.stderr)
        return 2
    try:
        parse_views(args.views)
        lm = load_model(
            args.ckpt_path,
            device=args.device,
            sampling_rate=args.sampling_rate,
            fps=args.fps,
            trust=args.trust_checkpoint,
        )
    except (PretrainedError, ValueError, RuntimeError, KeyError) as e:
        print(f"vt predict: {e}", file=sys.stderr)
        return 2
    files, failed = expand_paths(args.paths)
    results: list[dict[str, Any]] = []
    run = predict_windows if args.window else predict_views
    for path in tqdm(files, desc="videos", unit="video", disable=len(files) < 2):
        try:
            result = run(lm, path, args)
        except Exception as e:  # noqa: BLE001 (one bad file never stops the run; the message names it)
            msg = str(e) if str(path) in str(e) else f"{path}: {type(e).__name__}: {e}"
            if not isinstance(e, VideoDataError | ValueError):
                log.exception("unexpected error on %s", path)
            print(f"FAILED {msg}", file=sys.stderr)
            failed.append((str(path), msg))
            continue
        results.append(result)
        extra = f"  ({len(result['windows'])} windows, plot {result['plot']})" if args.window else ""
        print(f"{path}{extra}")
        for row in result["top"]:
            print(f"  {row['rank']:>2}. {row['label']:<28} {row['score']:.4f}")
    if args.out is not None and (results or failed):
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix.lower() == ".json":
            write_json(args.out, lm, args, results, failed)
        else:
            write_csv(args.out, lm, args, results)
        print(f"wrote {args.out}")
    print(f"{len(results)} of {len(results) + len(failed)} inputs predicted, {len(failed)} failed")
    for _, msg in failed:
        print(f"  failed: {msg}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
