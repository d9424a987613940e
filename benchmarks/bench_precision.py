"""bf16 autocast against fp32 on a trained model: per-video top-1 agreement on the embedded test set (4x3 views,
softmax mean, as ``vt test``), accuracy under each precision, and the forward time of all views.

    python benchmarks/bench_precision.py [--ckpt_path runs/vivit_factorised/version_0/checkpoints/best.ckpt]
        [--views 4x3]

The default checkpoint is the one ``make demo`` trains (the newest ``runs/vivit_factorised/version_*/checkpoints/
best.ckpt``); without it the script says so and exits 0 (``make bench``
runs it after the model benchmark). Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt_path", default=None, help="default: the newest make demo run's best.ckpt")
    p.add_argument("--views", default="4x3", help="CLIPSxCROPS per video")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over all views per precision (median)")
    p.add_argument("--out", default=str(REPO / "runs/bench_precision.json"))
    args = p.parse_args(argv)
    if args.ckpt_path is None:
        from video_transformers.lit.runs import newest_checkpoint

        args.ckpt_path = str(
            newest_checkpoint(REPO / "runs", "vivit_factorised", "best.ckpt") or "runs/vivit_factorised"
        )
    if not Path(args.ckpt_path).is_file():
        print(f"bench_precision: {args.ckpt_path} not found; run `make demo` first (skipped)", file=sys.stderr)
        return 0
    from video_transformers.data import synthetic
    from video_transformers.data.annotations import read_csv
    from video_transformers.inference import load_model, view_clips

    clips, crops = (int(v) for v in args.views.lower().split("x"))
    lm = load_model(args.ckpt_path, device="cpu")
    root = synthetic.build()
    rows = read_csv(root / "test.csv", root, lm.class_names)
    labels = torch.tensor([r.label for r in rows])
    views = torch.stack([view_clips(r.path, lm.spec, clips=clips, crops=crops)[0] for r in rows])
    flat = views.flatten(0, 1)  # all videos' views in one batch

    def scores(bf16: bool) -> tuple[torch.Tensor, float]:
        times = []
        for _ in range(args.repeats + 1):  # the first pass warms up
            t0 = time.perf_counter()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = lm.model(flat).float()
            times.append(time.perf_counter() - t0)
        probs = logits.softmax(-1).view(len(rows), clips * crops, -1).mean(1)
        return probs, statistics.median(times[1:])

    p32, t32 = scores(False)
    p16, t16 = scores(True)
    pred32, pred16 = p32.argmax(-1), p16.argmax(-1)
    result = {
        "checkpoint": args.ckpt_path,
        "videos": len(rows),
        "views_per_video": clips * crops,
        "top1_fp32": (pred32 == labels).float().mean().item(),
        "top1_bf16": (pred16 == labels).float().mean().item(),
        "top1_agreement": (pred32 == pred16).float().mean().item(),
        "max_abs_prob_diff": (p32 - p16).abs().max().item(),
        "seconds_fp32": t32,
        "seconds_bf16": t16,
        "bf16_speedup": t32 / t16,
        "threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
