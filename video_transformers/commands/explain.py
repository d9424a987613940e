"""``vt explain``: attention rollout of a trained model on one video, as a PNG grid and an animated GIF.

    vt explain --ckpt_path runs/vivit_factorised/version_0/checkpoints/best.ckpt --video clip.mp4 --out explain/ \
               [--class move_right] [--start 0.5]

The clip is the one ``vt predict --views 1x1`` scores: the data module's evaluation pipeline with the
checkpoint's sampler (its single evaluation clip: from the start for time windows and ``8x32`` strides, as
the official samplers do, the segment centres for ``u8``) and a centre crop; or, with ``--start``, the time
window of one clip duration from that second. The output says which clip and the time of each frame.
Maps follow each variant's factorisation (see :mod:`video_transformers.inference.rollout`): each frame
shows the spatial rollout of its temporal index, weighted by that index's temporal share, on one colour
scale. Rollout is class-agnostic (it reads attention, not gradients): ``--class`` only picks the class whose
probability is reported (default: the top-1). Writes ``attention.png``, ``attention.gif``, ``attention.json``
and ``attention.npz`` (``spatial``, ``temporal``, ``joint``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from video_transformers.data.errors import VideoDataError
from video_transformers.data.sampling import time_slots
from video_transformers.inference.clips import view_dataset
from video_transformers.inference.loading import LoadedModel, load_model
from video_transformers.inference.render import denormalize, render_attention, upsample_map
from video_transformers.inference.rollout import Rollout, explain
from video_transformers.pretrained import PretrainedError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt explain", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt_path", required=True, help="a vt fit .ckpt, or any source from_pretrained reads")
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--class", dest="class_name", help="class whose probability is reported (default: top-1)")
    p.add_argument("--start", type=float, help="clip start in seconds (default: vt predict's single view)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--short-video", "--short_video", dest="short_video", choices=["pad", "error"], default="pad")
    p.add_argument("--trust_checkpoint", action="store_true")
    return p


def load_clip(
    lm: LoadedModel, path: Path, start: float | None, short_video: str
) -> tuple[torch.Tensor, list[float], str]:
    """One centre-cropped normalised clip ``(C, T, S, S)``, the time of each frame, and which clip it is."""
    dataset = view_dataset(path, lm.spec, clips=1, crops=1, short_video=short_video)
    info = dataset.source.infos[0]
    if start is None:
        slots = dataset.clip_slots(0, 0)
        clip = dataset[0]["video"]  # exactly vt predict --views 1x1's view
        what = f"vt predict's single view ({dataset.sampler.sampling.describe()} sampling, clip 1 of 1, centre crop)"
    else:
        slots = time_slots(start, lm.spec.clip_duration, info.fps, lm.spec.num_frames)
        clip = dataset.transform(dataset.source.frames(0, slots, dataset.transform.resize_frame))
        what = f"the {lm.spec.clip_duration:g}s window from --start {start:g}s (centre crop)"
    times = [min(max(s, 0), info.frames - 1) / info.fps for s in slots]
    return clip, times, what


def frame_maps(result: Rollout, num_frames: int, size: int) -> np.ndarray:
    """``(T, S, S)`` per-frame heat: each frame gets its temporal index's joint map, upsampled."""
    joint = result.joint.repeat_interleave(result.frames_per_index, dim=0)[:num_frames]
    return np.stack([upsample_map(m, (size, size)) for m in joint])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        lm = load_model(args.ckpt_path, device=args.device, trust=args.trust_checkpoint)
        if args.class_name is not None and args.class_name not in lm.class_names:
            raise ValueError(f"--class {args.class_name!r} is not one of the model's classes: {lm.class_names}")
        clip, times, which = load_clip(lm, args.video, args.start, args.short_video)
        result, logits = explain(lm.model, clip[None].to(lm.device))
    except (PretrainedError, VideoDataError, ValueError, RuntimeError) as e:
        print(f"vt explain: {e}", file=sys.stderr)
        return 2
    probs = logits.softmax(-1)[0]
    top = int(probs.argmax())
    cls = lm.class_names.index(args.class_name) if args.class_name else top
    spec = lm.spec
    frames = denormalize(clip, spec.mean, spec.std)
    maps = frame_maps(result, spec.num_frames, spec.crop_size)
    index_of = [i // result.frames_per_index for i in range(spec.num_frames)]
    captions = [f"{times[i]:.2f}s  w={float(result.temporal[k]):.2f}" for i, k in enumerate(index_of)]
    title = (
        f"{args.video.name}: {result.layout} rollout | {lm.class_names[cls]} p={float(probs[cls]):.3f}"
        f" (top-1 {lm.class_names[top]} {float(probs[top]):.3f})"
    )
    png, gif = render_attention(frames, maps, args.out, captions=captions, title=title)
    npz = args.out / "attention.npz"
    np.savez(npz, spatial=result.spatial.numpy(), temporal=result.temporal.numpy(), joint=result.joint.numpy())
    summary = {
        "video": str(args.video),
        "clip": which,
        "frame_times": [round(t, 4) for t in times],
        "start": times[0],
        "layout": result.layout,
        "class": lm.class_names[cls],
        "probability": float(probs[cls]),
        "top1": lm.class_names[top],
        "temporal": [round(float(v), 4) for v in result.temporal],
    }
    (args.out / "attention.json").write_text(json.dumps(summary, indent=1))
    print(f"{args.video}: {result.layout}; {lm.class_names[cls]} p={float(probs[cls]):.3f}")
    print(f"clip: {which}; frames at {' '.join(f'{t:.2f}' for t in times)} s")
    print(f"temporal weights: {' '.join(f'{float(v):.2f}' for v in result.temporal)}")
    print(f"wrote {png}, {gif}, {npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
