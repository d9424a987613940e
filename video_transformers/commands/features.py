"""``vt features``: embeddings of videos from a trained model, per view or pooled per video, in shards.

    vt features --ckpt_path runs/vivit_factorised/checkpoints/best.ckpt --paths videos/ --out feats/
    vt features --ckpt_path best.ckpt --config configs/vivit_factorised.yaml --split train --views 1x1 --out feats/train
                [--layer pre_logits|features|<block index>|<module name>] [--token cls|mean] [--pool none|mean|max]
                [--shard_size 500] [--batch_size 32] [--format safetensors|npy] [--trainer.devices 2 ...]

The model comes from ``--ckpt_path`` (anything ``vt predict`` reads). With ``--paths`` the files are cut into
views with the checkpoint's own clip settings, as ``vt predict`` does; otherwise the data module of ``--config``
/ ``--data.*`` gives the listing and the clip settings, and ``--split`` picks its train, val or test split,
cut into views as ``vt test`` cuts its test split (same sampler, transform and check pass). ``--trainer.*`` flags
(devices, strategy, precision) run Lightning's predict loop on several GPUs or in bf16.

``--out`` gets ``features.json`` (the settings), one ``shard_<k>.safetensors`` (or ``.npy``) and
``shard_<k>.csv`` per ``--shard_size`` videos, and ``index.csv`` (``shard, row, video, path, label, view, start,
end``) when all shards are written. A run that stops (SIGTERM, a crash, a kill) is resumed by the same command:
finished shards are skipped, and every file comes out byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from video_transformers.data.annotations import VideoRecord
from video_transformers.data.dataset import ClipSource, MultiViewDataset
from video_transformers.data.errors import VideoDataError, data_errors_for_users
from video_transformers.inference.clips import check_video, expand_paths
from video_transformers.inference.features import resolve_layer
from video_transformers.inference.loading import ClipSpec, LoadedModel, load_model
from video_transformers.lit.features import FORMATS, FeatureExtractor, FeatureWriter
from video_transformers.lit.multiview import parse_views
from video_transformers.lit.shards import INDEX, FeatureData, FeatureSet, finished_shards, merge_index
from video_transformers.pretrained import PretrainedError
from video_transformers.utils.provenance import file_sha256

log = logging.getLogger(__name__)

# Trainer arguments that matter for inference; the rest of a training config's trainer section is ignored.
TRAINER_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "deterministic", "benchmark")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vt features",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        epilog="Also: --config FILE, --data.* (the data module), --trainer.* (devices, strategy, precision).",
    )
    p.add_argument("--ckpt_path", required=True, help="a vt fit .ckpt, or any source from_pretrained reads")
    p.add_argument("--paths", nargs="+", help="video files, folders (searched recursively), globs")
    p.add_argument("--split", "--data.split", dest="split", default="test", choices=("train", "val", "test"))
    p.add_argument(
        "--views", help="CLIPSxCROPS per video (default: data.test_clips x data.test_crops; 4x3 with --paths)"
    )
    p.add_argument("--layer", default="pre_logits", help="pre_logits, features, a block index, or a module name")
    p.add_argument("--token", choices=("cls", "mean"), help="token layers: CLS token or mean token")
    p.add_argument("--pool", default="none", choices=("none", "mean", "max"), help="one row per view, or per video")
    p.add_argument("--out", type=Path, required=True, help="output folder (a new one, or one to resume)")
    p.add_argument("--shard_size", type=int, default=500, help="videos per shard")
    p.add_argument("--batch_size", type=int, help="views per forward pass (default: data.eval_batch_size or 32)")
    p.add_argument("--format", default="safetensors", choices=sorted(FORMATS))
    p.add_argument("--short-video", "--short_video", dest="short_video", choices=["pad", "error"], default="pad")
    p.add_argument("--sampling_rate", type=int, help="--paths: override the checkpoint's sampling rate")
    p.add_argument("--fps", type=float, help="--paths: override the checkpoint's target fps")
    p.add_argument("--trust_checkpoint", action="store_true", help="allow full unpickling of the checkpoint")
    return p


def parse_config(rest: list[str]) -> Any:  # noqa: ANN401 (jsonargparse Namespace)
    """``--config`` / ``--data.*`` / ``--trainer.*`` / ``--model.*`` parsed as ``vt test`` parses them, without
    instantiating anything (the model comes from ``--ckpt_path``)."""
    from video_transformers.cli import read_config

    with warnings.catch_warnings():  # "args and sys.argv both given": ours are the rest of sys.argv
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter")
        return read_config(rest)


def paths_set(args: argparse.Namespace, spec: ClipSpec, views: tuple[int, int]) -> FeatureSet:
    """The listed files as one unlabelled multi-view dataset cut with the checkpoint's clip settings."""
    files, problems = expand_paths(args.paths)
    records, infos, left_out = [], [], [msg for _, msg in problems]
    sampler = spec.sampler()
    for path in files:
        try:
            info = check_video(path)
        except VideoDataError as e:
            left_out.append(str(e))
            continue
        short = sampler.too_short(info)
        if short and args.short_video == "error":
            left_out.append(f"{path}: {short}")
            continue
        if short:
            log.warning("%s: %s; its clips repeat the last frame", path, short)
        records.append(VideoRecord(path, -1, str(path)))
        infos.append(info)
    for msg in left_out:
        log.warning("left out: %s", msg)
    if not records:
        raise VideoDataError(f"no usable videos in {' '.join(args.paths)}")
    dataset = MultiViewDataset(
        ClipSource(records, infos, spec.clip_duration),
        num_frames=spec.num_frames,
        num_clips=views[0],
        num_crops=views[1],
        transform=spec.eval_transform(),
        sampling=sampler.sampling,
    )
    return FeatureSet(dataset, [], left_out, {"clip": spec.to_dict()})


def data_set(data_args: dict[str, Any], split: str, trainer: L.Trainer | None) -> FeatureSet:
    """The data module's ``split``, cut into views as ``vt test`` cuts its test split (its check pass, sampler
    and evaluation transform; the model's normalisation when ``data.mean`` / ``data.std`` are unset)."""
    from video_transformers.data import VideoDataModule

    args = dict(data_args)
    args["test_split"] = args.get(f"{split}_split", split)  # train, or the annotation split of val / test
    dm = VideoDataModule(**args)
    if getattr(dm, "shards", None) is not None:
        raise ValueError(
            "vt features reads videos from files (data.source: files); data.source: stream is not supported"
        )
    dm.trainer = trainer
    if trainer is not None:  # the model's normalisation unless data.mean / data.std are set, as in vt test
        dm.set_normalisation(*trainer.lightning_module.input_normalisation)
    dm.prepare_data()
    scan_problems: list[str] = []
    dm.setup("test")
    dataset = dm.test_dataloader().dataset
    scan = getattr(dm, "scans", {}).get("test")
    if scan is not None:
        scan_problems = scan.blocking()
    h = dm.hparams
    clip = {k: h[k] for k in ("sampling", "num_frames", "sampling_rate", "fps", "crop_size", "eval_short_side")}
    clip |= {"mean": list(h.mean), "std": list(h.std), "decoder": getattr(dm, "decoder", h.decoder)}
    settings = {"clip": clip, "dataset": {"name": h.dataset, "root": str(dm.root), "split": split}}
    return FeatureSet(dataset, list(dm.class_names), scan_problems, settings)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with data_errors_for_users(argv, prog="vt features"):
        args, rest = build_parser().parse_known_args(argv)
        try:
            return run(args, rest)
        except SIGTERMException:
            return _interrupted(args)
        except (PretrainedError, ValueError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and "CUDA" in str(e) and "available" not in str(e):
                raise
            print(f"vt features: {e}", file=sys.stderr)
            return 2


def _settings(
    args: argparse.Namespace,
    lm: LoadedModel,
    layer: Any,  # noqa: ANN401 (inference.features.Layer)
    views: tuple[int, int],
    batch_size: int,
    trainer_args: dict[str, Any],
) -> dict[str, Any]:
    """What the shards were made with; a resumed run must match it (lit/shards.py)."""
    source = Path(args.ckpt_path)
    return {
        "checkpoint": str(source.resolve()) if source.exists() else str(args.ckpt_path),
        "checkpoint_sha256": file_sha256(source) if source.is_file() else None,
        "model": getattr(lm.model, "model_name", "") or type(lm.model).__name__,
        "layer": layer.name,
        "token": layer.token,
        "pool": args.pool,
        "views": f"{views[0]}x{views[1]}",
        "batch_size": batch_size,
        "format": args.format,
        "precision": str(trainer_args.get("precision", "32-true")),
    }


def _print_summary(args: argparse.Namespace, plan: Any, layer: Any, data: FeatureData) -> None:  # noqa: ANN401
    rows = plan.num_videos * (1 if args.pool != "none" else plan.views)
    views = f"{plan.views} view{'s' * (plan.views > 1)}"
    per_video = f"{args.pool} of {views}" if args.pool != "none" else views
    print(
        f"wrote {rows:,} embeddings ({plan.num_videos:,} videos x {per_video}; {layer.describe()}) in "
        f"{plan.num_shards} shard{'s' * (plan.num_shards > 1)} to {args.out}/ ({len(data.done)} already done);"
        f" index: {args.out / INDEX}"
    )
    if data.data.left_out:
        print(f"{len(data.data.left_out)} listed videos were left out (see the warnings above)")


def run(args: argparse.Namespace, rest: list[str]) -> int:
    config = parse_config(rest)
    lm: LoadedModel = load_model(
        args.ckpt_path, device="cpu", sampling_rate=args.sampling_rate, fps=args.fps, trust=args.trust_checkpoint
    )
    layer = resolve_layer(lm.model, args.layer, args.token)
    data_args = config.data.as_dict()
    if args.paths:
        views = parse_views(args.views or "4x3")

        def make(trainer: L.Trainer | None) -> FeatureSet:
            return paths_set(args, lm.spec, views)
    else:
        views = parse_views(args.views or (data_args["test_clips"], data_args["test_crops"]))
        data_args["test_clips"], data_args["test_crops"] = views

        def make(trainer: L.Trainer | None) -> FeatureSet:
            return data_set(data_args, args.split, trainer)

    batch_size = args.batch_size or (None if args.paths else data_args.get("eval_batch_size")) or 32
    trainer_args = {k: config.trainer[k] for k in TRAINER_KEYS if config.trainer.get(k) is not None}
    if not isinstance(trainer_args.get("strategy", "auto"), str):
        raise ValueError("--trainer.strategy: vt features takes a strategy by name (auto, ddp, ...)")
    settings = _settings(args, lm, layer, views, batch_size, trainer_args)
    writer = FeatureWriter(pool=args.pool, fmt=args.format)
    data = FeatureData(
        make,
        out=args.out,
        settings=settings,
        shard_size=args.shard_size,
        batch_size=batch_size,
        suffix=FORMATS[args.format],
        num_workers=0 if args.paths else int(data_args.get("num_workers", 0)),
        timeout=0.0 if args.paths else float(data_args.get("loader_timeout", 0.0)),
    )
    trainer = L.Trainer(
        **trainer_args,
        logger=False,
        callbacks=[writer],
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=args.out,
    )
    with warnings.catch_warnings():  # batches are dataset items: the writer reads indices from the batch itself
        warnings.filterwarnings("ignore", message=".*infer the batch indices")
        warnings.filterwarnings("ignore", message=".*across ranks is zero")  # every shard already written
        trainer.predict(FeatureExtractor(lm.model, layer), datamodule=data, return_predictions=False)
    plan = data.plan
    done = finished_shards(args.out, plan, FORMATS[args.format])
    if len(done) < plan.num_shards:  # another rank is still writing; the last one to finish writes the index
        return 0
    merge_index(args.out, plan)
    _print_summary(args, plan, layer, data)
    return 0


def _interrupted(args: argparse.Namespace) -> int:
    done = sorted(args.out.glob("shard_*.csv")) if args.out.is_dir() else []
    print(
        f"vt features: interrupted by SIGTERM; {len(done)} shards are written to {args.out}/: rerun the same command"
        " to resume",
        file=sys.stderr,
    )
    return 143


if __name__ == "__main__":
    sys.exit(main())
