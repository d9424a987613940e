"""Training throughput, gradient norm and peak memory, logged while training and summarised at its end."""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from video_transformers.lit.runs import output_dir


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
