"""After validation and test: the per-video confusion matrix, per-class accuracy and time-reversed-pair
accuracy, logged to the logger and saved as PNG/CSV/JSON next to the checkpoints."""

from __future__ import annotations

import csv
import json
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info

from video_transformers.lit.runs import output_dir


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
        pairs: class pairs that differ only in the direction of time; default: the ones the data module's
            dataset declares with its classes (``class_pairs``; the embedded dataset's five pairs).
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
        pairs = self.pairs if self.pairs is not None else getattr(trainer.datamodule, "class_pairs", None) or []
        pairs = [(a, b) for a, b in pairs if a in names and b in names]
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
        import matplotlib.pyplot as plt

        plt.close(fig)
        if "direction_acc" in summary:
            rank_zero_info(
                f"{stage}: top-1 on time-reversed pairs {100 * summary['pair_acc1']:.1f}%, direction"
                f" {100 * summary['direction_acc']:.1f}% (chance 50%); report in {out}"
            )
