"""Peak memory and time of ``vt predict`` (4x3 views) on long 720p videos: memory must be bounded by the clip,
not by the video (issue 15, item 3: at most 2 GB for 30 s of 720p; a 10-minute video no more than 30 s of it).

    python benchmarks/bench_decode_memory.py                              # this tree: 30 s, 2 min, 10 min
    python benchmarks/bench_decode_memory.py --tree before=/path/to/old/checkout --tree after=.
    python benchmarks/bench_decode_memory.py --seconds 30 120 --views 4x3 --max-gb 12

The videos are made with the ``ffmpeg`` binary (``testsrc2``, 1280x720 at 30 fps, libx264 with its default
GOP of 250 frames) in a temporary folder. The checkpoint is a ``vt fit`` checkpoint of a small ViViT-FE at
the usual evaluation size (8 frames, one every 4th at 30 fps, crop 224, short side 256), one training step on
a tiny embedded dataset, so that decoding dominates the measurement. Each (tree, video) runs ``vt predict`` in a
fresh subprocess with ``PYTHONPATH`` set to the tree; peak RSS is the child's ``ru_maxrss`` (``os.wait4``). A
child gets an address-space limit of ``--max-gb`` (default: 80% of the memory available now), so an old code
path that would exhaust the machine fails with an out-of-memory line in the table instead of waking the
kernel's OOM killer.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = """
import sys
from video_transformers.commands.predict import main
sys.exit(main(sys.argv[1:]))
"""


def make_video(path: Path, seconds: int) -> Path:
    if not path.exists():  # written under a temporary name: an interrupted run leaves no partial video
        tmp = path.with_name(f".partial.{path.name}")
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}"]
        subprocess.run([*cmd, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(tmp)], check=True)
        tmp.rename(path)
    return path


def make_checkpoint(folder: Path) -> Path:
    """A one-step ``vt fit`` checkpoint of a small ViViT-FE at 224 px (weights do not matter here)."""
    import lightning as L

    from video_transformers.data import VideoDataModule, synthetic
    from video_transformers.lit import VideoClassifier

    path = folder / "vivit_small_224.ckpt"
    if path.exists():
        return path
    root = synthetic.build(folder / "embedded", splits={"train": 1, "val": 1, "test": 1})
    data = dict(num_frames=8, sampling_rate=4, fps=30.0, crop_size=224, train_short_side=(224, 256))
    dm = VideoDataModule(root=str(root), num_workers=0, batch_size=2, eval_short_side=256, **data)
    backbone = dict(patch_size=16, tubelet_size=2, embed_dim=192, spatial_depth=4, temporal_depth=2, num_heads=3)
    model = VideoClassifier(
        backbone="vivit_base_factorised_encoder_16x2",
        backbone_kwargs=backbone,
        num_frames=8,
        img_size=224,
        num_classes=len(synthetic.CLASS_NAMES),
        class_names=list(synthetic.CLASS_NAMES),
    )
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, dm)
    trainer.save_checkpoint(path)
    return path


def measure(tree: Path, ckpt: Path, video: Path, views: str, max_bytes: int) -> tuple[str, float, str]:
    """``(peak RSS in GB or 'out of memory', seconds, exit status note)`` of one ``vt predict`` subprocess."""
    env = {**os.environ, "PYTHONPATH": str(tree), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-c", CHILD, "--ckpt_path", str(ckpt), "--paths", str(video), "--views", views]
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))  # noqa: E731
    start = time.perf_counter()
    # cwd: the tree itself, since ``python -c`` puts the working directory first on sys.path
    proc = subprocess.Popen(args, env=env, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code == 0 and f"loaded {ckpt}" not in err:
        return "no output", seconds, err.strip()[-160:]
    peak_gb = usage.ru_maxrss / 2**20  # KB -> GB
    if code != 0:
        oom = any(m in err for m in ("MemoryError", "an't allocate", "annot allocate", "bad_alloc")) or code == -9
        what = f"out of memory (> {max_bytes / 2**30:.0f} GB address space)" if oom else f"failed (exit {code})"
        return what, seconds, err.strip().splitlines()[-1][:160] if err.strip() else ""
    return f"{peak_gb:.2f} GB", seconds, ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, nargs="+", default=[30, 120, 600], help="video lengths")
    p.add_argument("--tree", action="append", help="NAME=PATH of a checkout to measure (default: after=this one)")
    p.add_argument("--views", default="4x3")
    p.add_argument("--max-gb", type=float, help="address-space limit per child (default: 80%% of available now)")
    p.add_argument("--workdir", type=Path, help="keep videos and the checkpoint here (default: a temp folder)")
    args = p.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("bench_decode_memory: needs the ffmpeg binary (apt-get install ffmpeg)")
    trees = [t.split("=", 1) for t in (args.tree or [f"after={REPO}"])]
    if args.max_gb is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        max_bytes = int(0.8 * available)
    else:
        max_bytes = int(args.max_gb * 2**30)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="vt-bench-decode-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(work)
    print(f"vt predict --views {args.views}, 1280x720 at 30 fps (libx264), limit {max_bytes / 2**30:.1f} GB per run")
    print(f"| video | {' | '.join(f'{name}: peak RSS | {name}: time' for name, _ in trees)} |")
    print("|---|" + "---|---|" * len(trees))
    for seconds in args.seconds:
        video = make_video(work / f"720p_{seconds}s.mp4", seconds)
        cells, notes = [], []
        for name, tree in trees:
            peak, took, note = measure(Path(tree).resolve(), ckpt, video, args.views, max_bytes)
            cells += [peak, f"{took:.0f} s"]
            if note:
                notes.append(f"{name}: {note}")
        length = f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"
        print(f"| {length} | {' | '.join(cells)} |" + (f"  <!-- {'; '.join(notes)} -->" if notes else ""), flush=True)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
