"""Data throughput: decoded + augmented training clips per second per worker, for each recipe in
configs/data/recipes on 320p H.264 input (generated here with PyAV, 10 s at 30 fps like Kinetics clips after
``vt data resize --short-side 320``) and on the embedded dataset; then the loader with 2 workers against the
training step time of the model it would feed.

    python benchmarks/bench_data.py [--clips 12] [--videos 6] [--out runs/bench_data.json]

Not run by the tests. Numbers depend on the machine and its load: compare runs on the same one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from video_transformers.data import VideoDataModule, synthetic

REPO = Path(__file__).resolve().parents[1]
RECIPES = {  # recipe -> frames it samples (paper models), crop 224
    "none": dict(num_frames=8, sampling="time", sampling_rate=8, fps=30, train_short_side=[256, 320]),
    "timesformer": dict(num_frames=8),
    "vivit": dict(num_frames=32),
    "uniformerv2": dict(num_frames=8),
}


def make_videos(root: Path, n: int, seconds: float = 10.0, fps: int = 30, size: tuple[int, int] = (320, 426)) -> None:
    """``n`` textured moving videos at 320 x 426 (short side 320), libx264 crf 23, keyframe every 250 frames."""
    rng = np.random.default_rng(0)
    h, w = size
    lines = []
    for i in range(n):
        path = root / f"videos/v{i}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, (h + 64, w + 64, 3), dtype=np.uint8)
        with av.open(str(path), mode="w") as c:
            s = c.add_stream("libx264", rate=fps)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.options = {"crf": "23", "preset": "veryfast", "g": "250"}
            for t in range(int(seconds * fps)):
                dy, dx = (t // 2) % 64, t % 64
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[dy : dy + h, dx : dx + w]), format="rgb24")
                c.mux(s.encode(frame))
            c.mux(s.encode())
        lines.append(f"videos/v{i}.mp4,c{i % 2}")
    (root / "classes.txt").write_text("c0\nc1\n")
    for split in ("train", "val", "test"):
        (root / f"{split}.csv").write_text("path,label\n" + "\n".join(lines) + "\n")


def clips_per_second(dataset, n: int) -> float:
    dataset[0]  # warm-up: imports, first container open
    start = time.perf_counter()
    for i in range(n):
        dataset[(i + 1) % len(dataset)]
    return n / (time.perf_counter() - start)


def loader_rate(dm: VideoDataModule, batches: int) -> float:
    """Clips/s from a shuffled 2-worker loader over ``batches`` batches (epochs restart as needed)."""
    loader = DataLoader(
        dm._datasets["train"], batch_size=dm.hparams.batch_size, num_workers=2, shuffle=True, persistent_workers=True
    )
    it = iter(loader)
    next(it)  # worker start-up
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += len(batch["label"])
    return n / (time.perf_counter() - start)


def step_time(backbone: str, kwargs: dict, num_frames: int, img: int, batch: int, reps: int = 3) -> float:
    from video_transformers.lit import VideoClassifier

    model = VideoClassifier(
        backbone=backbone, num_classes=12, num_frames=num_frames, img_size=img, backbone_kwargs=kwargs
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch_ = {"video": torch.randn(batch, 3, num_frames, img, img), "label": torch.randint(0, 12, (batch,))}
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        loss = model.training_step(batch_, 0)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=12, help="clips timed per recipe")
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--out", default="runs/bench_data.json")
    args = p.parse_args()
    torch.set_num_threads(1)  # one loader worker's share of the CPU
    results: dict = {"torch_threads": 1, "recipes_320p": {}, "embedded": {}, "loader_vs_step": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_videos(root, args.videos)
        print(f"made {args.videos} 10 s 320x426 videos in {time.perf_counter() - t:.1f}s")
        dms = {}
        for recipe, extra in RECIPES.items():
            cfg = yaml.safe_load((REPO / "configs/data/recipes" / f"{recipe}.yaml").read_text())["data"]
            cfg.update(
                dataset="csv", root=str(root), crop_size=224, eval_short_side=224, num_workers=0, batch_size=4, **extra
            )
            cfg.setdefault("train_short_side", [256, 320])
            dm = VideoDataModule(**cfg)
            dm.setup("fit")
            dms[recipe] = dm
            rate = clips_per_second(dm._datasets["train"], args.clips)
            results["recipes_320p"][recipe] = {
                "sampling": dm.sampling.describe(),
                "frames": dm.num_frames,
                "clips_per_s_per_worker": round(rate, 2),
            }
            print(f"{recipe:12s} {dm.sampling.describe():12s} {dm.num_frames:3d} frames  {rate:6.2f} clips/s/worker")

        cfg = yaml.safe_load((REPO / "configs/vivit_factorised.yaml").read_text())
        emb_root = synthetic.build(Path(tmp) / "embedded", splits={"train": 4, "val": 1, "test": 1})
        for cache in (False, True):
            data = {**cfg["data"], "root": str(emb_root), "num_workers": 0, "cache_videos": cache}
            dm = VideoDataModule(**data)
            dm.setup("fit")
            train = dm._datasets["train"]
            if cache:  # steady state: every video decoded once already (the first epoch fills the cache)
                for i in range(len(train)):
                    train[i]
            rate = clips_per_second(train, 4 * args.clips)
            results["embedded"][f"cache_videos={cache}"] = round(rate, 1)
            print(f"embedded (40 px, 8 frames) cache_videos={cache}: {rate:7.1f} clips/s/worker")
            dms[f"embedded_cache={cache}"] = dm

        # loader with 2 workers vs the training step of the model it feeds
        tiny = cfg["model"]["backbone_kwargs"]
        step = step_time(cfg["model"]["backbone"], tiny, 8, 32, batch=16)
        dm = dms["embedded_cache=True"]
        dm.hparams.batch_size = 16
        rate = loader_rate(dm, 8)
        results["loader_vs_step"]["embedded_vivit_tiny_b16"] = {
            "loader_clips_per_s_2_workers": round(rate, 1),
            "step_s": round(step, 4),
            "model_clips_per_s": round(16 / step, 1),
        }
        print(
            f"embedded, 2 workers: {rate:.1f} clips/s; ViViT tiny (vivit_factorised.yaml) step at batch 16:"
            f" {step * 1000:.0f} ms = {16 / step:.1f} clips/s"
        )
        torch.set_num_threads(2)
        step = step_time("timesformer_base_divided_8x224", {}, 8, 224, batch=1, reps=2)
        torch.set_num_threads(1)
        dm = dms["timesformer"]
        dm.hparams.batch_size = 2
        rate = loader_rate(dm, 4)
        results["loader_vs_step"]["timesformer_8x32_320p_b1"] = {
            "loader_clips_per_s_2_workers": round(rate, 2),
            "step_s": round(step, 2),
            "model_clips_per_s": round(1 / step, 2),
        }
        print(
            f"timesformer recipe, 2 workers: {rate:.2f} clips/s; TimeSformer-B 8x224 CPU step at batch 1:"
            f" {step:.2f} s = {1 / step:.2f} clips/s"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
