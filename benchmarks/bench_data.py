"""Is the loader or the model the bottleneck, and with how many workers does the loader stop being one?

For each video set (generated Kinetics-like clips: 10 s, 30 fps, libx264 at the encoder's default GOP of 250
frames, at 320p and 720p, plus copies re-encoded by ``vt data resize --keyframe-interval N``), each decoder
(pyav, decord, torchcodec) and 1, 2, 4, ... loader workers up to the core count, it measures the training
loader's clips/s (TimeSformer recipe: 8x32 frame sampling, scale jitter [256, 320], 224 crop, flip) beside the
model's training-step clips/s (TimeSformer-B 8x224: forward, loss, backward, AdamW, on this machine's device);
the disk size of each set; and the same loader reading the 320p set from LitData shards (``vt data shard``)
against the files.

    python benchmarks/bench_data.py                      # full: 320p + 720p, intervals default/16/1, 1..cores workers
    python benchmarks/bench_data.py --quick              # 320p, intervals default/1, fewer clips (a few minutes)
    python benchmarks/bench_data.py --model-clips-per-s 48   # compare with a model rate measured elsewhere (a GPU)

Writes ``--out`` (runs/bench_data): results.json, results.md (the tables docs/performance.md quotes) and
loader_vs_model.png. Not run by the tests. Numbers depend on the machine and its load: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import yaml

from video_transformers.commands.data import resize_video
from video_transformers.data import VideoDataModule

REPO = Path(__file__).resolve().parents[1]
DECODERS = ("pyav", "decord", "torchcodec")
SIZES = {"320p": (320, 426), "720p": (720, 1280)}


# -- data -----------------------------------------------------------------------------------------------------
def make_videos(root: Path, n: int, size: tuple[int, int], seconds: float, fps: int = 30) -> None:
    """``n`` textured, moving videos as ``root/videos/v*.mp4`` (libx264 crf 23, default GOP) + a CSV layout."""
    rng = np.random.default_rng(0)
    h, w = size
    lines = []
    for i in range(n):
        path = root / f"videos/v{i}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, (h // 8 + 16, w // 8 + 16, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        with av.open(str(path), mode="w") as c:
            s = c.add_stream("libx264", rate=fps)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.options = {"crf": "23", "preset": "veryfast"}  # GOP: libx264's default, 250 frames
            for t in range(int(seconds * fps)):
                dy, dx = (t // 2) % 64, (3 * t) % 128
                frame = np.ascontiguousarray(base[dy : dy + h, dx : dx + w])
                c.mux(s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            c.mux(s.encode())
        lines.append(f"videos/v{i}.mp4,c{i % 2}")
    (root / "classes.txt").write_text("c0\nc1\n")
    for split in ("train", "val", "test"):
        (root / f"{split}.csv").write_text("path,label\n" + "\n".join(lines) + "\n")


def reencode(src: Path, dst: Path, interval: int) -> None:
    """What ``vt data resize SRC DST --short-side 0 --keyframe-interval N`` does, file by file."""
    for path in src.rglob("*"):
        out = dst / path.relative_to(src)
        if path.suffix == ".mp4":
            resize_video(path, out, 0, keyframe_interval=interval)
        elif path.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, out)


def video_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.mp4"))


def keyframe_gap(root: Path) -> float:
    """Mean frames between keyframes of the first video."""
    with av.open(str(next(root.rglob("*.mp4")))) as c:
        keys = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    return len(keys) / max(1, sum(keys))


# -- measurements ---------------------------------------------------------------------------------------------
def datamodule(root: str, decoder: str, **extra) -> VideoDataModule:
    cfg = yaml.safe_load((REPO / "configs/data/recipes/timesformer.yaml").read_text())["data"]
    cfg.update(dataset="csv", root=root, decoder=decoder, num_frames=8, crop_size=224, batch_size=4, **extra)
    dm = VideoDataModule(**cfg)
    dm.setup("fit")
    return dm


def loader_rate(dm: VideoDataModule, workers: int, clips: int) -> float:
    """Training clips/s of the data module's own training loader with ``workers`` workers, after start-up."""
    dm.hparams.num_workers = workers
    loader = dm.train_dataloader()
    if len(loader) == 0:
        raise ValueError(f"{dm.root}: fewer videos than one batch of {dm.hparams.batch_size}")
    seen, start, it = 0, None, None
    while seen < clips:
        if it is None:
            it = iter(loader)
        try:
            batch = next(it)
        except StopIteration:
            it = None
            continue
        if start is None:  # the first batch pays worker start-up and imports
            start = time.perf_counter()
            continue
        seen += len(batch["label"])
    return seen / (time.perf_counter() - start)


def model_rate(backbone: str, batch: int, reps: int, device: str) -> float:
    """Training-step clips/s of ``backbone`` at 8x224 (forward, loss, backward, AdamW), median of ``reps``."""
    from video_transformers.lit import VideoClassifier

    model = VideoClassifier(backbone=backbone, num_classes=400, num_frames=8, img_size=224).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    video = torch.randn(batch, 3, 8, 224, 224, device=device)
    label = torch.randint(0, 400, (batch,), device=device)
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(video), label)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return batch / float(np.median(times[1:]))


def worker_counts(cores: int) -> list[int]:
    counts, w = [], 1
    while w < cores:
        counts.append(w)
        w *= 2
    return counts + [cores]


# -- report ---------------------------------------------------------------------------------------------------
def enough_workers(rates: dict[int, float], model: float) -> str:
    ok = [w for w, r in sorted(rates.items()) if r >= model]
    return str(ok[0]) if ok else f"> {max(rates)}"


def write_report(results: dict, out: Path, command: str) -> str:
    model = results["model_clips_per_s"]
    counts = results["workers"]
    lines = [
        f"`{command}` on {results['machine']} (load average {results['load'][0]:.1f} at start, "
        f"{results['load'][1]:.1f} at end)",
        "",
        f"Model: {results['model']} training step, {model:.2f} clips/s ({results['model_source']}).",
        "",
        "| set | keyframe every | disk MB | decoder | "
        + " | ".join(f"{w} w" for w in counts)
        + " | workers to feed the model |",
        "|---|---|---|---|" + "---|" * len(counts) + "---|",
    ]
    for row in results["loader"]:
        rates = {int(w): r for w, r in row["clips_per_s"].items()}
        cells = " | ".join(f"{rates[w]:.2f}" if w in rates else "-" for w in counts)
        gap = f"{row['keyframe_gap']:.0f} frames"
        lines.append(
            f"| {row['set']} | {gap} | {row['mb']:.1f} | {row['decoder']} | {cells} | {enough_workers(rates, model)} |"
        )
    if results.get("shards"):
        s = results["shards"]
        lines += [
            "",
            f"Shards vs files ({s['set']}, pyav, {s['workers']} workers, same recipe): files {s['files']:.2f} clips/s,"
            f" local LitData shards {s['shards']:.2f} clips/s (ratio {s['shards'] / s['files']:.2f}).",
        ]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    return text


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["set"] for r in results["loader"]})
    gaps = {n: sorted({r["keyframe_gap"] for r in results["loader"] if r["set"] == n}, reverse=True) for n in names}
    cols = max(len(g) for g in gaps.values())
    fig, axes = plt.subplots(len(names), cols, figsize=(3.2 * cols, 3.0 * len(names)), sharey=True, squeeze=False)
    for ax, (name, gap) in [(axes[i][j], (n, g)) for i, n in enumerate(names) for j, g in enumerate(gaps[n])]:
        for row in results["loader"]:
            if (row["set"], row["keyframe_gap"]) == (name, gap):
                ws = sorted(int(w) for w in row["clips_per_s"])
                ax.plot(ws, [row["clips_per_s"][str(w)] for w in ws], marker="o", label=row["decoder"])
        ax.axhline(results["model_clips_per_s"], color="k", linestyle="--", label="model step")
        ax.set_title(f"{name}, keyframe every {gap:.0f}", fontsize=9)
        ax.set_xlabel("loader workers")
        ax.set_xticks(results["workers"])
        ax.set_yscale("log")
    for row in axes:
        row[0].set_ylabel("training clips/s")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"loader vs {results['model']} step ({results['machine']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# -- main -----------------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="320p only, intervals default and 1, fewer clips")
    p.add_argument("--videos", type=int, help="videos per set (default 8, quick 4)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clips", type=int, help="clips timed per measurement (default 48, quick 16)")
    p.add_argument("--sets", nargs="+", choices=sorted(SIZES), help="default: 320p 720p (quick: 320p)")
    p.add_argument("--intervals", help="keyframe intervals for the re-encoded copies (default 16,1; quick 1)")
    p.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=DECODERS)
    p.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--model", default="timesformer_base_divided_8x224")
    p.add_argument("--model-batch", type=int, default=1)
    p.add_argument("--model-clips-per-s", type=float, help="use this model rate instead of measuring it here")
    p.add_argument("--out", default="runs/bench_data")
    p.add_argument("--replot", metavar="RESULTS_JSON", help="only redraw the plot and table of an earlier run")
    args = p.parse_args()
    if args.replot:
        results, out = json.loads(Path(args.replot).read_text()), Path(args.replot).parent
        plot(results, out / "loader_vs_model.png")
        print(write_report(results, out, results.get("command", "(command not recorded)")))
        return
    quick = args.quick
    videos = args.videos or (4 if quick else 8)
    clips = args.clips or (16 if quick else 48)
    sets = args.sets or (["320p"] if quick else ["320p", "720p"])
    intervals = [int(i) for i in (args.intervals or ("1" if quick else "16,1")).split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/bench_data.py", *sys.argv[1:]])
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "load": [os.getloadavg()[0]],
        "workers": worker_counts(args.max_workers),
        "loader": [],
    }
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.model_clips_per_s:
        results["model_clips_per_s"], results["model_source"] = args.model_clips_per_s, "given on the command line"
    else:
        t = time.perf_counter()
        rate = model_rate(args.model, args.model_batch, 1 if quick else 3, device)
        results["model_clips_per_s"] = rate
        results["model_source"] = f"measured here on {device}, batch {args.model_batch}"
        if device == "cuda":
            results["model_source"] += ", bf16 autocast"
        print(f"{args.model}: {rate:.2f} training clips/s on {device} ({time.perf_counter() - t:.0f} s)")
    results["model"] = args.model
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets:
            original = Path(tmp) / name
            t = time.perf_counter()
            make_videos(original, videos, SIZES[name], args.seconds)
            print(f"{name}: made {videos} videos in {time.perf_counter() - t:.0f} s")
            variants = [original]
            for interval in intervals:
                copy = Path(tmp) / f"{name}_k{interval}"
                reencode(original, copy, interval)
                variants.append(copy)
            for root in variants:
                gap, mb = keyframe_gap(root), video_bytes(root) / 1e6
                for decoder in args.decoders:
                    dm = datamodule(str(root), decoder)
                    rates = {}
                    for w in results["workers"]:
                        rates[str(w)] = loader_rate(dm, w, clips)
                        what = f"{name} keyframe/{gap:.0f} {mb:6.1f} MB {decoder:10s} {w:2d} workers"
                        print(f"{what}: {rates[str(w)]:6.2f} clips/s")
                    results["loader"].append(
                        {"set": name, "keyframe_gap": gap, "mb": mb, "decoder": decoder, "clips_per_s": rates}
                    )
        # shards vs files: one epoch of 6 links to each of the first set's originals (48 videos at the default)
        from video_transformers.commands.data import main as data_main

        name, many = sets[0], Path(tmp) / "many"
        rows = []
        for k in range(6):
            for i in range(videos):
                link = many / f"videos/v{i}_{k}.mp4"
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path(tmp) / name / f"videos/v{i}.mp4")
                rows.append(f"videos/v{i}_{k}.mp4,c{i % 2}")
        shutil.copy(Path(tmp) / name / "classes.txt", many / "classes.txt")
        for split in ("train", "val"):
            (many / f"{split}.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
        shards = Path(tmp) / "shards"
        data_main(["shard", "--root", str(many), "--format", "csv", "--out", str(shards), "--splits", "train", "val",
                   "--workers", "1"])  # fmt: skip
        w = results["workers"][-1]
        n = min(clips, len(rows) - 4 * (w + 1))  # within one epoch: the stream loader restarts its workers per epoch
        files = loader_rate(datamodule(str(many), "pyav"), w, n)
        streamed = loader_rate(datamodule(str(shards), "pyav", source="stream", stream_cache=f"{tmp}/cache"), w, n)
        results["shards"] = {"set": name, "workers": w, "files": files, "shards": streamed}
        print(f"shards vs files ({name}, pyav, {w} workers): {streamed:.2f} vs {files:.2f} clips/s")
    results["load"].append(os.getloadavg()[0])
    results["command"] = command
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(write_report(results, out, command))
    plot(results, out / "loader_vs_model.png")
    print(f"wrote {out}/results.json, results.md, loader_vs_model.png")


if __name__ == "__main__":
    main()
