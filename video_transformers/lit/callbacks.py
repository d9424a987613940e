"""Experiment tracking and long-run callbacks for ``vt``.

* :class:`WandbLogger`: Lightning's W&B logger that goes offline by itself when no API key is configured
  and says at the end which folder ``wandb sync`` uploads.
* :class:`LogConfig`: LightningCLI's config saver that also sends the whole resolved config to every logger.
* :class:`TrainingMonitor`: gradient norm, throughput (clips/s) and peak memory while training.
* :class:`EvaluationReport`: per-video confusion matrix, per-class accuracy and time-reversed-pair accuracy
  after validation and test, logged to the logger and saved as PNG/CSV/JSON next to the checkpoints.
* :class:`ResumeState`: RNG states in the checkpoint, so a resumed run draws the same data order and
  augmentations as an uninterrupted one.
* :class:`PreemptionCheckpoint`: on SIGUSR1, stop after the current step and write ``last.ckpt`` so
  ``vt fit --ckpt_path last`` resumes (SIGTERM/SIGINT: ``lit/interrupt.py``'s ``GracefulInterrupt``).
"""

from __future__ import annotations

import csv
import json
import logging
import netrc
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from video_transformers.lit.test_report import TestReport

log = logging.getLogger(__name__)


# -- tracking -------------------------------------------------------------------------------------------
def wandb_has_credentials() -> bool:
    """``WANDB_API_KEY`` is set or ``~/.netrc`` (``$NETRC``) has an entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with ``offline=None`` meaning: offline unless W&B credentials exist
    (or ``WANDB_MODE`` says otherwise). At the end it logs the run folder to ``wandb sync``."""

    def __init__(
        self,
        *,
        offline: bool | None = None,
        project: str = "video-transformers",
        save_dir: str = ".",
        dir: str | None = None,  # noqa: A002 (wandb's name)
        **kwargs: Any,
    ) -> None:
        if offline is None:
            mode = os.environ.get("WANDB_MODE")
            offline = mode in ("offline", "dryrun") if mode else not wandb_has_credentials()
        if offline:
            os.environ.setdefault("WANDB_MODE", "offline")
        # wandb-core is one service per process and resolves relative folders against ITS working directory
        # (the first run's): a later run started from another directory would write its files nowhere.
        save_dir = str(Path(save_dir).resolve())
        dir = None if dir is None else str(Path(dir).resolve())
        super().__init__(offline=offline, project=project, save_dir=save_dir, dir=dir, **kwargs)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        run = self._experiment
        if run is None or not getattr(run, "dir", None):
            return
        folder = Path(run.dir).parent.resolve()  # .../wandb/offline-run-<time>-<id>/files -> the run folder
        # Finish the run so its folder is complete before we point at it; a later use of this logger (vt test
        # after fit in one process) starts the run again with the same id (resume="allow").
        run.finish()
        self._experiment = None
        if self._offline:
            rank_zero_info(f"W&B offline run saved to {folder}; upload it with: wandb sync {folder}")


class LogConfig(SaveConfigCallback):
    """Save ``config.yaml`` as LightningCLI does, and log the full resolved config to every logger."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        flat = _flatten(json.loads(config))
        for logger in trainer.loggers:
            if isinstance(logger, _LightningWandbLogger):
                logger.experiment.config.update({"config": json.loads(config)}, allow_val_change=True)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("config", "```yaml\n" + self.parser.dump(self.config) + "\n```")
            else:
                logger.log_hyperparams({f"config/{k}": v for k, v in flat.items()})


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, key + ".")
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def output_dir(trainer: L.Trainer, stage: str) -> Path:
    """Where a run's report files go: next to the tested checkpoint, else the checkpoint folder."""
    if stage == "test" and trainer.ckpt_path:
        return Path(trainer.ckpt_path).parent
    cb = trainer.checkpoint_callback
    if cb is not None and getattr(cb, "dirpath", None):
        return Path(cb.dirpath)
    return Path(trainer.default_root_dir)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated accelerator memory, or this process's peak resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


class TrainingMonitor(Callback):
    """Logs ``train/grad_norm`` (global 2-norm before clipping and the optimizer step), ``train/clips_per_s``
    (clips per wall-clock second over all ranks, data loading included) and ``train/peak_mem_mb``; writes
    ``train_summary.json`` next to the checkpoints at the end of training.

    Args:
        skip_steps: first steps of each epoch left out of the throughput summary (loader start-up, warm-up).
    """

    def __init__(self, *, skip_steps: int = 2) -> None:
        self.skip_steps = skip_steps
        self._last = time.perf_counter()
        self._step_in_epoch = 0
        self._rates: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not called when a run resumes from a checkpoint saved inside an epoch: on_train_start covers that.
        self._last, self._step_in_epoch = time.perf_counter(), 0

    on_train_start = on_train_epoch_start

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        norms = [p.grad.detach().float().norm() for p in pl_module.parameters() if p.grad is not None]
        if norms:
            pl_module.log("train/grad_norm", torch.stack(norms).norm(), on_step=True, on_epoch=False)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        clips = len(batch["label"]) * trainer.world_size
        rate = clips / max(now - self._last, 1e-9)
        self._last = now
        self._step_in_epoch += 1
        if self._step_in_epoch > self.skip_steps:
            self._rates.append(rate)
        pl_module.log("train/clips_per_s", rate, on_step=True, on_epoch=False, rank_zero_only=True)
        pl_module.log(
            "train/peak_mem_mb", peak_memory_mb(pl_module.device), on_step=True, on_epoch=False, rank_zero_only=True
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        summary = {
            "clips_per_s": float(np.median(self._rates)) if self._rates else None,
            "peak_mem_mb": peak_memory_mb(pl_module.device),
            "steps": trainer.global_step,
            "world_size": trainer.world_size,
        }
        path = output_dir(trainer, "fit") / "train_summary.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n")


# -- evaluation report ------------------------------------------------------------------------------------
def default_pairs(class_names: list[str]) -> list[tuple[str, str]]:
    """The embedded dataset's time-reversed class pairs, when these are its classes."""
    from video_transformers.data.synthetic import PAIRS

    return [p for p in PAIRS if p[0] in class_names and p[1] in class_names]


def evaluation_summary(
    scores: torch.Tensor, labels: torch.Tensor, class_names: list[str], pairs: list[tuple[str, str]]
) -> dict[str, Any]:
    """Confusion matrix (rows: true class, columns: predicted), per-class accuracy, and on the videos of
    time-reversed pairs: top-1 (``pair_acc1``) and the direction accuracy (``direction_acc``: the pair's
    member with the higher score is the true one; 50% for a model blind to the order of frames)."""
    c = len(class_names)
    pred = scores.argmax(-1)
    cm = torch.bincount(labels * c + pred, minlength=c * c).reshape(c, c)
    support = cm.sum(1)
    per_class = [(cm[i, i] / support[i]).item() if support[i] else float("nan") for i in range(c)]
    out: dict[str, Any] = {
        "videos": len(labels),
        "acc1": (pred == labels).float().mean().item(),
        "confusion_matrix": cm.tolist(),
        "per_class": {
            name: {"acc1": a, "videos": int(n)} for name, a, n in zip(class_names, per_class, support, strict=True)
        },
    }
    if pairs:
        index = {n: i for i, n in enumerate(class_names)}
        partner = {index[a]: index[b] for a, b in pairs} | {index[b]: index[a] for a, b in pairs}
        mask = torch.tensor([int(y) in partner for y in labels], dtype=torch.bool)
        if mask.any():
            y = labels[mask]
            other = torch.tensor([partner[int(v)] for v in y])
            s = scores[mask]
            out["pair_acc1"] = (pred[mask] == y).float().mean().item()
            out["direction_acc"] = (s.gather(1, y[:, None]) > s.gather(1, other[:, None])).float().mean().item()
    return out


def plot_confusion_matrix(cm: list[list[int]], class_names: list[str], title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if len(class_names) <= 30:
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        int(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    fig.tight_layout()
    return fig


class EvaluationReport(Callback):
    """After validation and test: the per-video confusion matrix and per-class accuracy.

    Reads the per-video ``(scores, labels)`` that :class:`VideoClassifier` aggregated over all views and
    ranks (``last_aggregated``). Logs ``{stage}/pair_acc1`` and ``{stage}/direction_acc`` when the classes
    include time-reversed pairs, the matrix as an image and the per-class table to W&B / TensorBoard, and
    always writes ``{stage}_confusion_matrix.png``, ``{stage}_per_class.csv`` and ``{stage}_summary.json``
    next to the checkpoints (the test files next to the tested checkpoint).

    Args:
        pairs: class pairs that differ only in the direction of time; default: the embedded dataset's.
    """

    def __init__(self, *, pairs: list[tuple[str, str]] | None = None) -> None:
        self.pairs = pairs

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._report(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module, "test")

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        result = getattr(pl_module, "last_aggregated", {}).get(stage)
        if result is None or not trainer.is_global_zero:
            return
        scores, labels = result
        names = list(pl_module.hparams.get("class_names") or [str(i) for i in range(scores.shape[1])])
        pairs = self.pairs if self.pairs is not None else default_pairs(names)
        summary = evaluation_summary(scores, labels, names, pairs)
        summary |= {"stage": stage, "epoch": trainer.current_epoch, "global_step": trainer.global_step}
        out = output_dir(trainer, stage)
        out.mkdir(parents=True, exist_ok=True)
        rows = [[n, v["videos"], v["acc1"]] for n, v in summary["per_class"].items()]
        with open(out / f"{stage}_per_class.csv", "w", newline="") as f:
            csv.writer(f).writerows([["class", "videos", "acc1"], *rows])
        (out / f"{stage}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        title = (
            f"{stage} epoch {trainer.current_epoch}: top-1 {100 * summary['acc1']:.1f}% ({summary['videos']} videos)"
        )
        fig = plot_confusion_matrix(summary["confusion_matrix"], names, title)
        png = out / f"{stage}_confusion_matrix.png"
        fig.savefig(png, dpi=100)
        scalars = {f"{stage}/{k}": summary[k] for k in ("pair_acc1", "direction_acc") if k in summary}
        for logger in trainer.loggers:
            if scalars:
                logger.log_metrics(scalars, step=trainer.global_step)
            if isinstance(logger, _LightningWandbLogger):
                logger.log_image(key=f"{stage}/confusion_matrix", images=[str(png)], step=trainer.global_step)
                logger.log_table(
                    key=f"{stage}/per_class", columns=["class", "videos", "acc1"], data=rows, step=trainer.global_step
                )
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"{stage}/confusion_matrix", fig, global_step=trainer.global_step)
                table = "| class | videos | top-1 |\n|---|---|---|\n" + "\n".join(
                    f"| {n} | {v} | {100 * a:.1f}% |" for n, v, a in rows
                )
                logger.experiment.add_text(f"{stage}/per_class", table, global_step=trainer.global_step)
            elif isinstance(logger, CSVLogger):
                pass  # scalars above; the PNG/CSV beside the checkpoints are the CSV logger's images
        import matplotlib.pyplot as plt

        plt.close(fig)
        if "direction_acc" in summary:
            rank_zero_info(
                f"{stage}: top-1 on time-reversed pairs {100 * summary['pair_acc1']:.1f}%, direction"
                f" {100 * summary['direction_acc']:.1f}% (chance 50%); report in {out}"
            )


# -- reproducible, resumable runs -------------------------------------------------------------------------
class ResumeState(Callback):
    """Stores Python/NumPy/torch RNG states in each checkpoint and restores them on resume.

    Lightning restores weights, optimizer, scheduler, loops and epoch; the shuffling order and the random
    clips/crops/drop-path of the following epochs come from the global RNGs, which it does not save. The
    states are restored on load and again after the sanity check (whose loader draws a seed), so an
    epoch-boundary resume draws exactly what an uninterrupted run draws.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # Plain types and tensors only, so the checkpoint still loads with torch.load(weights_only=True).
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]
        return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict
        self._apply()

    def _apply(self) -> None:
        if self._pending is not None:
            random.setstate(self._pending["python"])
            name, keys, pos, has_gauss, gauss = self._pending["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            torch.set_rng_state(self._pending["torch"])

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = None


class PreemptionCheckpoint(Callback):
    """Graceful stop on SIGUSR1 (cluster preemption notice, e.g. SLURM ``--signal=USR1@90``): finish the current
    step, save ``last.ckpt`` in the checkpoint folder (``vt fit --ckpt_path last`` resumes from it) and end
    ``fit``. SIGTERM/SIGINT are :class:`video_transformers.lit.interrupt.GracefulInterrupt`'s (installed by
    ``vt fit``); when Lightning's SLURM auto-requeue already owns SIGUSR1, its handler is left in place."""

    def __init__(self, *, filename: str = "last") -> None:
        self.filename = filename
        self._usr1 = False
        self._previous: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not hasattr(signal, "SIGUSR1"):
            return
        current = signal.getsignal(signal.SIGUSR1)
        if current in (signal.SIG_DFL, signal.SIG_IGN, None):  # do not take over SLURM's requeue handler
            self._previous = current
            signal.signal(signal.SIGUSR1, self._on_usr1)

    def _on_usr1(self, signum: int, frame: Any) -> None:
        self._usr1 = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._usr1:
            rank_zero_info("SIGUSR1: stopping after this step and saving a checkpoint")
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._usr1:
            self._save(trainer)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous is not None or self._usr1:
            signal.signal(signal.SIGUSR1, self._previous if self._previous is not None else signal.SIG_DFL)
            self._previous, self._usr1 = None, False

    def _save(self, trainer: L.Trainer) -> None:
        path = output_dir(trainer, "fit") / f"{self.filename}.ckpt"
        trainer.save_checkpoint(path)  # collective: every rank calls it, rank 0 writes
        rank_zero_info(f"checkpoint saved to {path}; resume with --ckpt_path last")


# Callbacks every ``vt`` run gets (LightningCLI "forced callbacks": ``--monitor.skip_steps 5`` etc.).
TRACKING_CALLBACKS: dict[str, type[Callback]] = {
    "monitor": TrainingMonitor,
    "report": EvaluationReport,
    "resume_state": ResumeState,
    "preemption": PreemptionCheckpoint,
    "test_report": TestReport,  # lit/test_report.py: test_report.json beside test_predictions.csv
}
