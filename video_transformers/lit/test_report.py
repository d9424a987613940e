"""``test_report.json``: what a ``vt test`` number was measured on, written beside ``test_predictions.csv``.

It holds the metrics; the views (clips x crops) and their aggregation; the sampler and its parameters, crop
size, short side, normalisation, decoder and precision; the dataset manifest (videos listed, found, usable,
evaluated, every one left out with the reason, the sha256 of each annotation file read and of the evaluated
listing); the checkpoint's sha256, training step and epoch; package versions and the git commit. The same
fields go to W&B as the run summary (the file itself is saved with the run). ``vt compare`` diffs two reports;
the model card of ``vt export --format hf`` shows one.
"""

from __future__ import annotations

import datetime
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from video_transformers.lit.multiview import evaluated_videos
from video_transformers.utils.provenance import file_sha256, git_state, package_versions, text_sha256

log = logging.getLogger(__name__)

REPORT = "test_report.json"
VERSION = 1
# check-pass kinds (data/errors.py KINDS) grouped as the report counts them
NOT_FOUND = ("missing", "broken_link")
UNREADABLE = ("unsupported", "unreadable", "truncated", "zero_frames", "audio_only")


def checkpoint_facts(path: str | Path | None) -> dict[str, Any] | None:
    """sha256, training step and epoch of the tested checkpoint (read memory-mapped, weights only)."""
    if not path or not Path(path).is_file():
        return None
    path = Path(path)
    facts: dict[str, Any] = {"path": str(path.resolve()), "sha256": file_sha256(path), "bytes": path.stat().st_size}
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 (the report says why the step is unknown instead of failing the test run)
        facts["unreadable"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return facts
    for key in ("global_step", "epoch"):
        if isinstance(ckpt.get(key), int):
            facts[key] = ckpt[key]
    for name, state in (ckpt.get("callbacks") or {}).items():
        if str(name).startswith("ModelCheckpoint") and isinstance(state, dict) and state.get("monitor"):
            score = state.get("best_model_score")
            if score is not None:
                facts[f"best {state['monitor']}"] = round(float(score), 6)
    return facts


def manifest(dm: Any, split: str, evaluated: list[str], skipped_at_run_time: list[str]) -> dict[str, Any]:  # noqa: ANN401
    """Videos listed, found, usable and evaluated in ``split``, every one left out with the reason, and the sha256
    of the annotation files and of the evaluated listing."""
    scan = getattr(dm, "scans", {}).get(split)
    out: dict[str, Any] = {"split": split, "annotation_split": dm.annotation_split(split)}
    problems = {k: list(v) for k, v in scan.problems.items() if k != "ignored"} if scan is not None else {}
    count = {k: len(v) for k, v in problems.items()}
    listed = scan.listed - len(scan.problems.get("ignored", [])) if scan is not None else len(evaluated)
    out |= {
        "listed": listed,
        "found": listed - sum(count.get(k, 0) for k in (*NOT_FOUND, "annotation")),
        "unreadable": sum(count.get(k, 0) for k in UNREADABLE),
        "too_short": count.get("too_short", 0),
        "duplicate": count.get("duplicate", 0),
        "bad_rows": count.get("annotation", 0),
        "usable": len(scan.records) if scan is not None else len(evaluated),
        "skipped_at_run_time": len(skipped_at_run_time),
        "evaluated": len(evaluated),
        "missing": listed - len(evaluated),
        "problems_by_kind": count,
        "left_out": [m for msgs in problems.values() for m in msgs]
        + [f"{p}: failed to decode at run time" for p in skipped_at_run_time],
        "annotation_files": dict(scan.annotation_files) if scan is not None else {},
        "evaluated_sha256": text_sha256("".join(f"{p}\n" for p in sorted(evaluated))),
    }
    ignored = scan.problems.get("ignored", []) if scan is not None else []
    if ignored:
        out["not_videos_ignored"] = len(ignored)
    return out


def build_report(trainer: L.Trainer, pl_module: L.LightningModule, predictions: Path | None) -> dict[str, Any]:
    """The report of the test run that just ended (see the module docstring)."""
    dm = trainer.datamodule
    h = dm.hparams
    split = "test"
    ids = pl_module.last_video_ids.get(split, torch.empty(0, dtype=torch.long))
    evaluated = evaluated_videos(trainer, ids)
    skipped = [p for cb in trainer.callbacks for s, _, ps in getattr(cb, "history", []) if s == split for p in ps]
    model = pl_module.model
    metrics = {
        k: round(float(v), 8)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(f"{split}/") and v.numel() == 1
    }
    report: dict[str, Any] = {
        "report_version": VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv),  # this process's command line
        "metrics": metrics,
        "views": {
            "clips": h.test_clips,
            "crops": h.test_crops,
            "per_video": h.test_clips * h.test_crops,
            "aggregate": pl_module.hparams.get("aggregate"),
        },
        "sampler": {
            "sampling": h.sampling,
            "describe": dm.sampling.describe(),
            "num_frames": h.num_frames,
            "sampling_rate": h.sampling_rate,
            "fps": h.fps,
            "clip_duration_s": round(dm.clip_duration, 6),
        },
        "input": {
            "crop_size": h.crop_size,
            "eval_short_side": h.eval_short_side,
            "mean": list(h.mean) if h.mean is not None else None,
            "std": list(h.std) if h.std is not None else None,
            "decoder": getattr(dm, "decoder", h.decoder),  # the one in use (a CUDA decoder may fall back to CPU)
            "source": h.get("source", "files"),
        },
        "precision": str(trainer.precision),
        "devices": {"accelerator": type(trainer.accelerator).__name__, "world_size": trainer.world_size},
        "model": {
            "name": getattr(model, "model_name", "") or type(model).__name__,
            "num_classes": getattr(model, "num_classes", None),
            "params": sum(p.numel() for p in model.parameters()),
        },
        "dataset": {"name": h.dataset, "root": str(dm.root), "classes": dm.num_classes},
        "manifest": manifest(dm, split, evaluated, skipped),
        "checkpoint": checkpoint_facts(trainer.ckpt_path),
        "software": {**package_versions(), "git": git_state()},
        "predictions": predictions.name if predictions is not None else None,
    }
    return report


def summary_line(report: dict[str, Any], path: Path) -> str:
    """``evaluated 19,796 of 19,881 listed videos (85 missing, list in test_report.json)``."""
    m = report["manifest"]
    missing = f"{m['missing']:,} missing, list in {path}" if m["missing"] else f"none missing; report in {path}"
    return f"evaluated {m['evaluated']:,} of {m['listed']:,} listed videos ({missing})"


def for_tracking(report: dict[str, Any], max_list: int = 20) -> dict[str, Any]:
    """The report with long lists cut to their length (W&B summaries are for numbers and short values)."""
    out: dict[str, Any] = {}
    for k, v in report.items():
        if isinstance(v, dict):
            out[k] = for_tracking(v, max_list)
        elif isinstance(v, list) and len(v) > max_list:
            out[k] = f"{len(v)} entries (see {REPORT})"
        else:
            out[k] = v
    return out


class TestReport(Callback):
    """Writes ``test_report.json`` beside ``test_predictions.csv`` when ``vt test`` ends, prints the one-line
    summary of what was evaluated, and puts the same fields in the W&B run summary."""

    __test__ = False  # not a pytest class

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not hasattr(pl_module, "last_video_ids") or "test" not in pl_module.last_video_ids:
            return
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # a broadcast under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        predictions = folder / "test_predictions.csv"
        report = build_report(trainer, pl_module, predictions if predictions.is_file() else None)
        path = folder / REPORT
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{REPORT}.tmp")
        tmp.write_text(json.dumps(report, indent=1) + "\n")
        tmp.replace(path)
        rank_zero_info(summary_line(report, path))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                run.summary.update({"test_report": for_tracking(report)})
                run.save(str(path), base_path=str(folder), policy="now")


__all__ = ["REPORT", "TestReport", "build_report", "checkpoint_facts", "manifest", "summary_line"]
